//! Payment requests, their payments and payment links.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use mandate_domain::ids::{DestinationId, RequestId};
use mandate_domain::payments::{Direction, RequestStatus};
use mandate_domain::ports::{PageRequest, RequestFilter};
use mandate_domain::usecases::{NewRequest, PaymentPageError};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorEnvelope};
use crate::input::{EmptyBody, Json, OptionalJson, Query, filter_value, list_params, path_id};
use crate::pipeline::{Authenticated, ReadRequest};
use crate::schemas;
use crate::state::State;
use crate::views::{
    ListBody, PaymentLinkCreated, PaymentLinkWarning, PaymentRecorded, PaymentRequestList,
    PaymentRequestView,
};

/// Body of `POST /v1/requests`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// `incoming` or `outgoing`.
    #[schema(value_type = schemas::Direction)]
    pub direction: String,
    /// Decimal string `^\d{1,20}(\.\d{1,18})?$`, > 0.
    #[schema(value_type = schemas::Amount)]
    pub amount: String,
    /// `^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$`, e.g. `USD`, `USDC-base`.
    #[schema(value_type = schemas::Currency)]
    pub currency: String,
    /// ≤ 128 characters.
    pub reference: Option<String>,
    /// ≤ 1000 characters.
    pub description: Option<String>,
    /// RFC 3339.
    pub due_at: Option<DateTime<Utc>>,
    /// RFC 3339, in the future; the request expires then if not completed.
    pub expires_at: Option<DateTime<Utc>>,
    /// ≤ 20 pairs; keys ≤ 40, values ≤ 500 characters.
    pub metadata: Option<BTreeMap<String, String>>,
    /// A customer of the organization's shared pool (`cus_…`).
    #[schema(value_type = Option<schemas::CustomerId>)]
    pub customer_id: Option<String>,
}

list_params! {
    /// Filters of `GET /v1/requests`.
    pub struct RequestListParams {
        /// `incoming` or `outgoing`.
        #[param(value_type = Option<schemas::Direction>)]
        pub direction: Option<String>,
        /// `open`, `partially_paid`, `paid`, `cancelled` or `expired`.
        #[param(value_type = Option<schemas::PaymentRequestStatus>)]
        pub status: Option<String>,
        /// Only this customer's requests.
        #[param(value_type = Option<schemas::CustomerId>)]
        pub customer_id: Option<String>,
        /// Only this destination's requests (a platform listing its organization).
        #[param(value_type = Option<schemas::DestinationId>)]
        pub destination_id: Option<String>,
    }
}

/// Body of `POST /v1/requests/{id}/payment-links`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePaymentLink {
    /// 1–2592000, default 604800 (7 days).
    pub expires_in_seconds: Option<i64>,
}

/// Body of `POST /v1/requests/{id}/payments`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportPayment {
    /// Decimal string, > 0.
    #[schema(value_type = schemas::Amount)]
    pub amount: String,
    /// The settlement's reference (a transaction hash, a bank reference), ≤ 256 characters.
    pub reference: String,
    /// When the money moved; default now.
    pub paid_at: Option<DateTime<Utc>>,
}

fn request_id(text: &str) -> Result<RequestId, ApiError> {
    path_id(text, RequestId::parse)
}

/// Creates a payment request for the caller's destination (a client's own; a platform key
/// names it with `X-Destination-Id`).
#[utoipa::path(post, path = "/v1/requests", tag = "requests", request_body = CreateRequest,
    responses((status = 201, body = PaymentRequestView)))]
pub async fn create(
    state: State,
    Authenticated(principal): Authenticated,
    body: Json<CreateRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let input = NewRequest {
        direction: body.direction,
        amount: body.amount,
        currency: body.currency,
        reference: body.reference,
        description: body.description,
        due_at: body.due_at,
        expires_at: body.expires_at,
        metadata: body.metadata,
        customer_id: body.customer_id,
    };
    let request = state
        .mandate
        .create_request(&principal, input, mandate_domain::now())
        .await?;
    Ok(HttpResponse::Created().json(&request))
}

/// Lists the requests the caller may read, newest first.
#[utoipa::path(get, path = "/v1/requests", tag = "requests", params(RequestListParams),
    responses((status = 200, body = PaymentRequestList)))]
pub async fn list(
    state: State,
    Authenticated(principal): Authenticated,
    params: Query<RequestListParams>,
) -> Result<HttpResponse, ApiError> {
    let (filter, page) = params.into_inner().query()?;
    let requests = state
        .mandate
        .list_requests(&principal, &filter, &page, mandate_domain::now())
        .await?;
    Ok(HttpResponse::Ok().json(ListBody::new(requests, |request| request.id.to_string())))
}

impl RequestListParams {
    /// The filter and the page these parameters ask for (the console's list reads them too).
    pub(crate) fn query(self) -> Result<(RequestFilter, PageRequest), ApiError> {
        let direction = filter_value(
            self.direction.as_deref(),
            "direction",
            "direction must be incoming or outgoing",
            Direction::parse,
        )?;
        let status = filter_value(
            self.status.as_deref(),
            "status",
            "unknown status",
            RequestStatus::parse,
        )?;
        let destination_id = filter_value(
            self.destination_id.as_deref(),
            "destination_id",
            "not a destination id",
            |text| DestinationId::parse(text).ok(),
        )?;
        let page = self.page(RequestId::parse)?;
        let filter = RequestFilter {
            direction,
            status,
            destination_id,
            customer_id: self.customer_id,
        };
        Ok((filter, page))
    }
}

/// Reads one request (the pipeline read it with the credential).
#[utoipa::path(get, path = "/v1/requests/{id}", tag = "requests",
    params(("id" = String, Path, description = "req_…")),
    responses((status = 200, body = PaymentRequestView)))]
pub async fn get(
    state: State,
    Authenticated(principal): Authenticated,
    id: web::Path<String>,
    ReadRequest(found): ReadRequest,
) -> Result<HttpResponse, ApiError> {
    request_id(&id)?;
    let request = state
        .mandate
        .request_read(&principal, found, mandate_domain::now())
        .await?;
    Ok(HttpResponse::Ok().json(&request))
}

/// Cancels an open or partially paid request (409 otherwise).
#[utoipa::path(post, path = "/v1/requests/{id}/cancel", tag = "requests",
    params(("id" = String, Path, description = "req_…")),
    responses((status = 200, body = PaymentRequestView),
        (status = 409, body = ErrorEnvelope)))]
pub async fn cancel(
    state: State,
    Authenticated(principal): Authenticated,
    id: web::Path<String>,
    _body: EmptyBody,
) -> Result<HttpResponse, ApiError> {
    let request = state
        .mandate
        .cancel_request(&principal, &request_id(&id)?, mandate_domain::now())
        .await?;
    Ok(HttpResponse::Ok().json(&request))
}

/// What a payer could not do through the link of `token` as it stands, read back as the payer
/// will see it: the answer to its creation (in the API and the console) warns of it.
pub(crate) async fn payment_link_warnings(
    state: &State,
    token: &str,
) -> Result<Vec<PaymentLinkWarning>, ApiError> {
    match state
        .mandate
        .payment_page(token, mandate_domain::now())
        .await
    {
        Ok(page) if page.destination.payment_address.is_none() => {
            Ok(vec![PaymentLinkWarning::NO_PAYMENT_ADDRESS])
        }
        // A lifetime so short the link is already gone: no page is left to warn about.
        Ok(_) | Err(PaymentPageError::NotFound | PaymentPageError::Gone) => Ok(Vec::new()),
        Err(PaymentPageError::Store(error)) => Err(error.into()),
    }
}

/// Creates a public, expiring payment link for the request.
#[utoipa::path(post, path = "/v1/requests/{id}/payment-links", tag = "requests",
    request_body(content = CreatePaymentLink, description = "may be empty"),
    params(("id" = String, Path, description = "req_…")),
    responses((status = 201, body = PaymentLinkCreated)))]
pub async fn create_payment_link(
    state: State,
    Authenticated(principal): Authenticated,
    id: web::Path<String>,
    OptionalJson(body): OptionalJson<CreatePaymentLink>,
) -> Result<HttpResponse, ApiError> {
    let expires_in = body.expires_in_seconds;
    let (link, token) = state
        .mandate
        .create_payment_link(
            &principal,
            &request_id(&id)?,
            expires_in,
            mandate_domain::now(),
        )
        .await?;
    let warnings = payment_link_warnings(&state, &token).await?;
    Ok(HttpResponse::Created().json(PaymentLinkCreated {
        id: link.id.to_string(),
        object: "payment_link",
        url: payment_link_url(&state, &token),
        expires_at: link.expires_at,
        warnings,
    }))
}

/// The payer's address of a payment link: its token on the public URL.
pub(crate) fn payment_link_url(state: &State, token: &str) -> String {
    format!("{}/pay/{token}", state.public_url)
}

/// Reports a payment against the request: partial, full or over.
#[utoipa::path(post, path = "/v1/requests/{id}/payments", tag = "requests", request_body = ReportPayment,
    params(("id" = String, Path, description = "req_…")),
    responses((status = 201, body = PaymentRecorded),
        (status = 400, description = "bad input, or a total past the largest amount_paid", body = ErrorEnvelope),
        (status = 409, description = "cancelled or expired", body = ErrorEnvelope)))]
pub async fn report_payment(
    state: State,
    Authenticated(principal): Authenticated,
    id: web::Path<String>,
    body: Json<ReportPayment>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let (payment, request) = state
        .mandate
        .report_payment(
            &principal,
            &request_id(&id)?,
            &body.amount,
            &body.reference,
            body.paid_at,
            mandate_domain::now(),
        )
        .await?;
    Ok(HttpResponse::Created().json(PaymentRecorded {
        payment,
        payment_request: request,
    }))
}
