// Type-checked (`tsc --strict --noEmit`) against the types `openapi-typescript` generates from
// the served `/openapi.json` (`./schema.d.ts`, written beside a copy of this file in a
// temporary directory), by `crates/server/tests/generated_clients.rs`. It is never run: it proves that a team using the
// generated types can create, read and list payment requests and obtain a token, and that the
// types refuse what the server refuses.

import createClient from "openapi-fetch";
import type { components, paths } from "./schema";

type Schemas = components["schemas"];

const api = createClient<paths>({ baseUrl: "https://pay.example.com" });

// The token endpoint: one request schema for both encodings, and its own error body.
type TokenForm =
  paths["/v1/oauth/token"]["post"]["requestBody"]["content"]["application/x-www-form-urlencoded"];
type TokenJson = paths["/v1/oauth/token"]["post"]["requestBody"]["content"]["application/json"];
const sameTokenSchema: TokenForm = {} as TokenJson;
const tokenForm: TokenForm = {
  grant_type: "client_credentials",
  client_id: "cli_01JD8X5Q8W6F3G4H5J6K7M8N9P",
  client_secret: "mnd_orch_example",
  scope: "create:incoming read:incoming",
};
// @ts-expect-error: client_credentials is the only grant
const passwordGrant: TokenForm = { grant_type: "password" };
type OAuthError = Schemas["OAuthErrorBody"]["error"];
const refused: OAuthError = "invalid_client";

async function token(): Promise<string> {
  const { data, error } = await api.POST("/v1/oauth/token", {
    body: tokenForm,
    bodySerializer: (body) => new URLSearchParams(body as Record<string, string>),
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
  });
  if (error) {
    // 400/401 answer RFC 6749's body, the rest the error envelope.
    const code: string = "error_description" in error ? error.error : error.error.code;
    throw new Error(code);
  }
  const tokenType: "Bearer" = data.token_type;
  const seconds: number = data.expires_in;
  return `${tokenType} ${data.access_token} ${seconds}`;
}

// Creating a request takes the request's body, not another operation's.
const body: Schemas["CreateRequest"] = {
  direction: "incoming",
  amount: "42.50",
  currency: "USDC-base",
  reference: "INV-2026-0042",
  metadata: { order: "A-1" },
};
// @ts-expect-error: direction is incoming or outgoing
const sideways: Schemas["CreateRequest"] = { direction: "sideways", amount: "1", currency: "USD" };
// @ts-expect-error: the client-ID body is not a payment request's
const clientBody: Schemas["CreateRequest"] = { orchestrator: "acme-agents" };

async function journey(): Promise<Schemas["PaymentRequestStatus"]> {
  const created = await api.POST("/v1/requests", {
    body,
    params: {
      header: {
        "Idempotency-Key": "order-A-1",
        "X-Client-Id": "cli_01JD8X5Q8W6F3G4H5J6K7M8N9P",
      },
    },
  });
  if (created.error) {
    const envelope: Schemas["ErrorEnvelope"] = created.error;
    throw new Error(`${envelope.error.code}: ${envelope.error.message}`);
  }
  const request: Schemas["PaymentRequestView"] = created.data;
  const id: string = request.id;

  const fetched = await api.GET("/v1/requests/{id}", { params: { path: { id } } });
  if (fetched.error) throw new Error(fetched.error.error.code);
  // A request, never a claim.
  const amountPaid: string = fetched.data.amount_paid;
  // @ts-expect-error: a payment request has no claim fields
  const namespace: string = fetched.data.namespace;

  const page = await api.GET("/v1/requests", {
    params: { query: { status: "open", direction: "incoming", limit: 100 } },
  });
  if (page.error) throw new Error(page.error.error.code);
  const list: Schemas["PaymentRequestList"] = page.data;
  const ids: string[] = list.data.map((item) => item.id);
  const next: string | null = list.next_cursor;
  // @ts-expect-error: status filters take the request statuses only
  await api.GET("/v1/requests", { params: { query: { status: "settled" } } });

  const reported = await api.POST("/v1/requests/{id}/payments", {
    params: { path: { id } },
    body: { amount: "42.5", reference: "0xabc" },
  });
  if (reported.error) throw new Error(reported.error.error.code);
  const after: Schemas["PaymentRequestView"] = reported.data.payment_request;
  void [sameTokenSchema, passwordGrant, refused, sideways, clientBody, amountPaid, namespace];
  void [ids, next];
  return after.status;
}

void token();
void journey();
