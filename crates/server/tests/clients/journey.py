"""A payment request's journey through the Python client that `openapi-python-client`
generates from the served `/openapi.json`, against the real server; run by
`crates/server/tests/generated_clients.rs`, which sets up the tenant and passes it in the
environment. Every call goes through the generated client, and every answer must be one the
document declares (`raise_on_unexpected_status`): a token, a request created with an
`Idempotency-Key` (and the same key replayed), read, listed, given a payment link, paid as
its destination's owner reports, and `paid` for the client.
"""

import os
import sys
import uuid

from mandate_api_client import AuthenticatedClient, Client
from mandate_api_client.api.oauth import create_access_token
from mandate_api_client.api.payment_links import get_payment_page
from mandate_api_client.api.requests import (
    create_payment_link,
    create_payment_request,
    get_payment_request,
    list_payment_requests,
    report_payment,
)
from mandate_api_client.models import (
    CreatePaymentLink,
    CreateRequest,
    Direction,
    GrantType,
    PaymentLinkCreated,
    PaymentPageView,
    PaymentRecorded,
    PaymentRequestList,
    PaymentRequestStatus,
    PaymentRequestView,
    ReportPayment,
    TokenRequest,
    TokenResponse,
)

BASE = os.environ["MANDATE_URL"]
CLIENT_ID = os.environ["MANDATE_CLIENT_ID"]
ORCHESTRATOR_KEY = os.environ["MANDATE_ORCHESTRATOR_KEY"]
DESTINATION_KEY = os.environ["MANDATE_DESTINATION_KEY"]


def step(name, response, status, model):
    """The parsed answer of a step that must answer `status` with a `model`."""
    if response.status_code != status or not isinstance(response.parsed, model):
        sys.exit(
            f"{name}: expected {status} {model.__name__}, got {response.status_code}: "
            f"{response.content[:500]!r}"
        )
    print(f"{name}: {response.status_code}")
    return response.parsed


def main():
    public = Client(base_url=BASE, raise_on_unexpected_status=True)
    token = step(
        "token",
        create_access_token.sync_detailed(
            client=public,
            body=TokenRequest(
                grant_type=GrantType.CLIENT_CREDENTIALS,
                client_id=CLIENT_ID,
                client_secret=ORCHESTRATOR_KEY,
            ),
        ),
        200,
        TokenResponse,
    )
    assert "create:incoming" in token.scope.split(), token.scope
    client = AuthenticatedClient(
        base_url=BASE, token=token.access_token, raise_on_unexpected_status=True
    )
    key = f"journey-{uuid.uuid4()}"
    body = CreateRequest(
        direction=Direction.INCOMING,
        amount="42.50",
        currency="USDC-base",
        reference="INV-2026-0042",
    )
    created = step(
        "create",
        create_payment_request.sync_detailed(client=client, body=body, idempotency_key=key),
        201,
        PaymentRequestView,
    )
    assert created.amount == "42.50", created.amount
    assert created.status == PaymentRequestStatus.OPEN, created.status
    replayed = create_payment_request.sync_detailed(
        client=client, body=body, idempotency_key=key
    )
    assert step("create again, same key", replayed, 201, PaymentRequestView).id == created.id
    assert replayed.headers.get("idempotent-replayed") == "true", replayed.headers

    fetched = step(
        "get",
        get_payment_request.sync_detailed(created.id, client=client),
        200,
        PaymentRequestView,
    )
    assert fetched.id == created.id and fetched.currency == "USDC-base"

    page = step(
        "list",
        list_payment_requests.sync_detailed(
            client=client, status=PaymentRequestStatus.OPEN, limit=100
        ),
        200,
        PaymentRequestList,
    )
    assert created.id in [item.id for item in page.data], page

    link = step(
        "payment link",
        create_payment_link.sync_detailed(
            created.id, client=client, body=CreatePaymentLink(expires_in_seconds=3600)
        ),
        201,
        PaymentLinkCreated,
    )
    link_token = link.url.rsplit("/pay/", 1)[1]
    shown = step(
        "payment page",
        get_payment_page.sync_detailed(
            link_token, client=Client(
                base_url=BASE,
                raise_on_unexpected_status=True,
                headers={"Accept": "application/json"},
            )
        ),
        200,
        PaymentPageView,
    )
    assert shown.amount == "42.50" and shown.currency == "USDC-base", shown

    owner = AuthenticatedClient(
        base_url=BASE, token=DESTINATION_KEY, raise_on_unexpected_status=True
    )
    recorded = step(
        "report payment (owner)",
        report_payment.sync_detailed(
            created.id,
            client=owner,
            body=ReportPayment(amount="42.5", reference="0x5f2a9c"),
            idempotency_key=f"payment-{uuid.uuid4()}",
        ),
        201,
        PaymentRecorded,
    )
    assert recorded.payment_request.status == PaymentRequestStatus.PAID, recorded

    paid = step(
        "get after payment",
        get_payment_request.sync_detailed(created.id, client=client),
        200,
        PaymentRequestView,
    )
    assert paid.status == PaymentRequestStatus.PAID, paid.status
    assert paid.amount_paid == "42.50", paid.amount_paid
    print("journey: paid")


if __name__ == "__main__":
    main()
