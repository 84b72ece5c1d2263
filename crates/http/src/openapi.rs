//! The OpenAPI 3.1 document. The handlers describe their own bodies and the statuses they
//! answer; everything the route table and the pipeline decide is added here for every route
//! alike: the operation id, the security requirement, the headers the pipeline reads
//! (`X-Client-Id`, `X-Destination-Id`, `Idempotency-Key`, `X-Request-Id`), the statuses it can
//! answer (with the error envelope), the list parameters, `servers`, and the event catalogue as
//! the `webhooks` section.

use std::sync::{LazyLock, Mutex};

use mandate_domain::events::EventType;
use mandate_domain::ids;
use mandate_domain::principal::PrincipalKind;
use mandate_domain::values::Permission;
use serde_json::{Map, Value, json};
use utoipa::OpenApi;

use crate::pipeline::Admits;
use crate::routes::{Operations, ROUTES, RouteSpec};
use crate::schemas::id_pattern;

/// The security scheme of API keys and access tokens (`Authorization: Bearer`).
const BEARER: &str = "bearerAuth";
/// The security scheme that documents the OAuth 2.0 client-credentials grant.
const OAUTH: &str = "oauth2";
/// The security scheme of an agent's RFC 9421 signature.
const AGENT_SIGNATURE: &str = "agentSignature";

/// The error envelope's schema.
const ENVELOPE: &str = "#/components/schemas/ErrorEnvelope";

/// What a permission allows, as the OAuth scopes describe it.
fn permission_description(permission: Permission) -> &'static str {
    match permission {
        Permission::CreateIncoming => {
            "create incoming payment requests, and cancel them and link them"
        }
        Permission::CreateOutgoing => {
            "create outgoing payment requests, and cancel them and link them"
        }
        Permission::ReadIncoming => "read every incoming payment request of the destination",
        Permission::ReadOutgoing => "read every outgoing payment request of the destination",
        Permission::CustomersRead => "read the organization's customers",
        Permission::CustomersWrite => "create, change and delete customers",
        Permission::PaymentsReport => "report payments against readable requests",
    }
}

/// The document as the server at `public_url` serves it.
pub fn document(public_url: &str) -> Value {
    let mut openapi = Operations::openapi();
    openapi.info.title = "Mandate API".into();
    openapi.info.version = env!("CARGO_PKG_VERSION").into();
    openapi.info.description = Some(
        "Scoped, revocable access to payment destinations for orchestrators and their agents. \
         Each operation's `x-principals` lists the credential kinds it admits; errors share \
         one envelope (`ErrorEnvelope`), except the token endpoint's (RFC 6749)."
            .into(),
    );
    openapi.info.license = None;
    openapi.info.contact = None;
    let mut document = serde_json::to_value(openapi).unwrap_or_default();
    document["servers"] = json!([{ "url": public_url, "description": "this server" }]);
    let components = &mut document["components"];
    components["securitySchemes"] = security_schemes(public_url);
    components["headers"] = json!({
        "X-Request-Id": {
            "description": "The request's id: yours, echoed, when it is at most 128 visible \
                ASCII characters; otherwise a new one. Quote it when reporting a problem.",
            "schema": { "type": "string" }
        },
        "Retry-After": {
            "description": "Seconds to wait before retrying.",
            "schema": { "type": "integer", "minimum": 0 }
        },
        "Idempotent-Replayed": {
            "description": "`true` when this is the stored answer of an earlier call with the \
                same `Idempotency-Key`.",
            "schema": { "type": "string", "enum": ["true"] }
        },
        "WWW-Authenticate": {
            "description": "`Bearer`: the credentials the endpoint takes.",
            "schema": { "type": "string" }
        }
    });
    for route in ROUTES {
        if let Some(operation) = document["paths"]
            .get_mut(route.path)
            .and_then(|item| item.get_mut(route.method.to_ascii_lowercase()))
        {
            describe(route, operation);
        }
    }
    if let Some(schemas) = document["components"]["schemas"].as_object_mut() {
        schemas.values_mut().for_each(name_the_object);
    }
    document["webhooks"] = webhooks();
    document
}

/// The `object` field of a view documented as "Always `x`." is the constant `x`: a client can
/// tell objects apart by it (an event's `data.object`, a list's items).
fn name_the_object(schema: &mut Value) {
    let Some(object) = schema
        .get_mut("properties")
        .and_then(|properties| properties.get_mut("object"))
    else {
        return;
    };
    let constant = object["description"]
        .as_str()
        .and_then(|text| text.strip_prefix("Always `"))
        .and_then(|rest| rest.strip_suffix("`."))
        .map(str::to_owned);
    if let Some(constant) = constant {
        object["enum"] = json!([constant]);
    }
}

fn security_schemes(public_url: &str) -> Value {
    let scopes: Map<String, Value> = Permission::ALL
        .into_iter()
        .map(|permission| {
            (
                permission.as_str().to_owned(),
                Value::from(permission_description(permission)),
            )
        })
        .collect();
    json!({
        BEARER: {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key — `mnd_plat_…` (platform), `mnd_dest_…` (destination), \
                `mnd_orch_…` (orchestrator; with `X-Client-Id: cli_…` it acts as that client \
                ID) —, an access token from `POST /v1/oauth/token` (a client ID), or the \
                operator's admin token."
        },
        OAUTH: {
            "type": "oauth2",
            "description": "The client-credentials grant (RFC 6749 §4.4): `client_id` is the \
                client ID (`cli_…`), `client_secret` an API key of its orchestrator; the \
                token is sent as `Authorization: Bearer`. Scopes are permissions, a subset of \
                the client ID's (all of them by default).",
            "flows": {
                "clientCredentials": {
                    "tokenUrl": format!("{public_url}/v1/oauth/token"),
                    "scopes": scopes
                }
            }
        },
        AGENT_SIGNATURE: {
            "type": "apiKey",
            "in": "header",
            "name": "Signature",
            "description": "An agent's RFC 9421 HTTP message signature with its Ed25519 key, \
                with `Signature-Input` (`keyid` = the agent's `ed25519:…` public key, \
                `created` and `nonce` required, `alg` `ed25519` if sent) covering `@method`, \
                `@target-uri`, `content-digest` when there is a body (RFC 9530, sha-256 or \
                sha-512) and `x-client-id` when sent. An agent sends no `Authorization` and \
                acts as the client ID in `X-Client-Id`; `POST /v1/claims` takes the \
                orchestrator's key and the agent's signature together. See docs/agents.md."
        }
    })
}

/// Who calls through the pipeline, as the operation's security requirements: alternatives,
/// except that a route wanting the agent's signature wants it with the Bearer credential.
fn security(admits: Admits) -> Option<Value> {
    match admits {
        Admits::Public => None,
        Admits::KindsSignedByAgent(_) => Some(json!([{ BEARER: [], AGENT_SIGNATURE: [] }])),
        Admits::Kinds(kinds) if kinds.contains(&PrincipalKind::Client) => Some(json!([
            { BEARER: [] },
            { OAUTH: [] },
            { AGENT_SIGNATURE: [] }
        ])),
        Admits::Kinds(_) => Some(json!([{ BEARER: [] }])),
    }
}

fn header(name: &str, description: &str, schema: Value) -> Value {
    json!({
        "name": name,
        "in": "header",
        "required": false,
        "description": description,
        "schema": schema
    })
}

/// The headers the pipeline reads on `route`.
fn headers(route: &RouteSpec) -> Vec<Value> {
    let mut headers = vec![header(
        "X-Request-Id",
        "Your id for the request (at most 128 visible ASCII characters), echoed in the \
         response and in the error envelope; one is made up when it is missing or unfit.",
        json!({ "type": "string" }),
    )];
    let (Admits::Kinds(kinds) | Admits::KindsSignedByAgent(kinds)) = route.admits else {
        return headers;
    };
    if kinds.contains(&PrincipalKind::Client) {
        headers.push(header(
            "X-Client-Id",
            "The client ID to act as: with an orchestrator's key (`mnd_orch_…`), or with an \
             agent's signature. Not with an access token, which names its client ID itself.",
            json!({ "type": "string", "pattern": id_pattern(ids::ClientId::PREFIX) }),
        ));
    }
    if kinds.contains(&PrincipalKind::Platform) {
        headers.push(header(
            "X-Destination-Id",
            "A platform key acts as this destination's owner (a destination of its \
             organization).",
            json!({ "type": "string", "pattern": id_pattern(ids::DestinationId::PREFIX) }),
        ));
    }
    if route.method == "POST" {
        headers.push(header(
            "Idempotency-Key",
            "Runs the call at most once per credential and key for 48 hours: a retry with \
             the same key gets the first answer again (`Idempotent-Replayed: true`); the same \
             key with another request is 409.",
            json!({ "type": "string", "minLength": 1, "maxLength": 255 }),
        ));
    }
    headers
}

/// The statuses the pipeline and the application's middleware can answer on `route`, with
/// what each means there.
fn pipeline_statuses(route: &RouteSpec) -> Vec<(&'static str, &'static str)> {
    let mut statuses = vec![(
        "415",
        "UNSUPPORTED_MEDIA_TYPE: the request has a `Content-Encoding`; send it unencoded",
    )];
    let takes_body = matches!(route.method, "POST" | "PATCH" | "PUT");
    if takes_body {
        statuses.push(("413", "PAYLOAD_TOO_LARGE: the body is larger than 64 KiB"));
    }
    if route.path.contains('{') {
        statuses.push((
            "404",
            "NOT_FOUND: no such object, or one the caller may not see",
        ));
    }
    if route.admits != Admits::Public {
        statuses.extend([
            (
                "400",
                "INVALID_REQUEST: a malformed parameter, header or body (`details.field`)",
            ),
            (
                "401",
                "UNAUTHENTICATED: a missing, unknown, expired or revoked credential; \
                 SIGNATURE_INVALID: a bad agent signature",
            ),
            (
                "403",
                "FORBIDDEN: a credential this endpoint does not admit (`details.principal`, \
                 `details.admits`), or an action it may not take",
            ),
            (
                "429",
                "RATE_LIMITED: the credential is over its rate, or the address made too many \
                 failed authentication attempts; see `Retry-After`",
            ),
            ("500", "INTERNAL: a bug, logged with the request id"),
            (
                "503",
                "SERVICE_UNAVAILABLE: the database cannot be reached now",
            ),
        ]);
        if route.method == "POST" {
            statuses.push((
                "409",
                "CONFLICT: the `Idempotency-Key` was used with another request, or its first \
                 call is still running (`Retry-After`); or the object's state forbids this",
            ));
        }
    }
    statuses
}

/// The description of a status a handler declared without one.
fn default_description(status: &str) -> &'static str {
    match status {
        "200" => "OK",
        "201" => "Created",
        "400" => "INVALID_REQUEST: a field breaks its rule (`details.field`)",
        "401" => "UNAUTHENTICATED",
        "403" => "FORBIDDEN",
        "404" => "NOT_FOUND",
        "409" => "CONFLICT",
        "410" => "GONE",
        "413" => "PAYLOAD_TOO_LARGE",
        "503" => "SERVICE_UNAVAILABLE",
        _ => "",
    }
}

fn error_response(status: &str, description: &str) -> Value {
    let mut response = json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": ENVELOPE } } }
    });
    if status == "429" || status == "409" {
        response["headers"]["Retry-After"] = json!({ "$ref": "#/components/headers/Retry-After" });
    }
    if status == "401" {
        response["headers"]["WWW-Authenticate"] =
            json!({ "$ref": "#/components/headers/WWW-Authenticate" });
    }
    response
}

/// The schema of `limit`, the same on every list.
fn limit_schema() -> Value {
    json!({ "type": "integer", "minimum": 1, "maximum": 100, "default": 20 })
}

/// Completes one operation with what the route table and the pipeline decide.
fn describe(route: &RouteSpec, operation: &mut Value) {
    operation["operationId"] = Value::from(route.operation_id);
    let principals: Vec<&str> = match route.admits {
        Admits::Public => vec!["public"],
        Admits::Kinds(kinds) | Admits::KindsSignedByAgent(kinds) => {
            kinds.iter().map(|kind| kind.as_str()).collect()
        }
    };
    operation["x-principals"] = json!(principals);
    if matches!(route.admits, Admits::KindsSignedByAgent(_)) {
        operation["x-agent-signature"] = json!("required");
    }
    match security(route.admits) {
        Some(security) => operation["security"] = security,
        None => {
            if let Some(operation) = operation.as_object_mut() {
                operation.remove("security");
            }
        }
    }
    let parameters = operation["parameters"].as_array_mut().map(std::mem::take);
    let mut parameters = parameters.unwrap_or_default();
    for parameter in &mut parameters {
        if parameter["in"] == "path" {
            let name = parameter["name"].as_str().unwrap_or_default();
            if let Some(prefix) = path_id_prefix(route.path, name) {
                parameter["schema"]["pattern"] = Value::from(id_pattern(prefix));
            }
        }
        if parameter["in"] == "query" && parameter["name"] == "limit" {
            parameter["schema"] = limit_schema();
            parameter["description"] = json!("How many items, 1–100 (default 20).");
        }
        if parameter["in"] == "query" && parameter["name"] == "starting_after" {
            parameter["description"] =
                json!("The cursor: `next_cursor` of the previous page (an id of this list).");
        }
    }
    parameters.extend(headers(route));
    operation["parameters"] = Value::Array(parameters);
    let responses = &mut operation["responses"];
    for (status, description) in pipeline_statuses(route) {
        match responses.get_mut(status) {
            None => responses[status] = error_response(status, description),
            // The handler's meaning of the status first, then the pipeline's.
            Some(declared) => {
                let own = declared["description"].as_str().unwrap_or_default();
                let merged = if own.is_empty() {
                    description.to_owned()
                } else {
                    format!("{own}; or {description}")
                };
                declared["description"] = Value::from(merged);
            }
        }
    }
    // Any answer of a keyed call may be a replay, refusals included.
    let keyed = route.method == "POST" && route.admits != Admits::Public;
    if let Some(responses) = responses.as_object_mut() {
        for (status, response) in responses.iter_mut() {
            if response["description"].as_str().is_none_or(str::is_empty) {
                response["description"] = Value::from(default_description(status));
            }
            let is_envelope = response["content"]["application/json"]["schema"]["$ref"] == ENVELOPE;
            if (status == "429" || status == "409") && is_envelope {
                response["headers"]["Retry-After"] =
                    json!({ "$ref": "#/components/headers/Retry-After" });
            }
            response["headers"]["X-Request-Id"] =
                json!({ "$ref": "#/components/headers/X-Request-Id" });
            if keyed {
                response["headers"]["Idempotent-Replayed"] =
                    json!({ "$ref": "#/components/headers/Idempotent-Replayed" });
            }
        }
        sort_by_status(responses);
    }
}

/// The prefix of the ids the path parameter `name` of `path` takes, from the collection it
/// follows (`/v1/requests/{id}` → `req`).
fn path_id_prefix(path: &str, name: &str) -> Option<&'static str> {
    let placeholder = format!("{{{name}}}");
    let segments: Vec<&str> = path.split('/').collect();
    let position = segments
        .iter()
        .position(|segment| *segment == placeholder)?;
    Some(match *segments.get(position.checked_sub(1)?)? {
        "requests" => ids::RequestId::PREFIX,
        "destinations" => ids::DestinationId::PREFIX,
        "client-ids" => ids::ClientId::PREFIX,
        "customers" => ids::CustomerId::PREFIX,
        "claims" => ids::ClaimId::PREFIX,
        "webhook-endpoints" => ids::EndpointId::PREFIX,
        "webhook-deliveries" => ids::DeliveryId::PREFIX,
        "events" => ids::EventId::PREFIX,
        "keys" => ids::KeyId::PREFIX,
        _ => return None,
    })
}

/// Orders responses by status, as readers expect.
fn sort_by_status(responses: &mut Map<String, Value>) {
    let mut entries: Vec<(String, Value)> = std::mem::take(responses).into_iter().collect();
    entries.sort_by(|(a, _), (b, _)| a.cmp(b));
    responses.extend(entries);
}

/// The schema component of the object an event carries.
fn object_schema(event_type: EventType) -> &'static str {
    use mandate_domain::events::EventObject;
    match event_type.object() {
        EventObject::PaymentRequest => "PaymentRequestView",
        EventObject::ClientId => "ClientView",
        EventObject::Customer => "CustomerView",
        EventObject::Claim => "ClaimView",
        EventObject::WebhookEndpoint => "EndpointView",
    }
}

/// The schema of an event of `event_type`, as `GET /v1/events` lists it and webhooks deliver
/// it.
fn event_schema(event_type: EventType) -> Value {
    json!({
        "allOf": [
            { "$ref": "#/components/schemas/EventView" },
            {
                "type": "object",
                "properties": {
                    "type": { "type": "string", "enum": [event_type.as_str()] },
                    "data": {
                        "type": "object",
                        "required": ["object"],
                        "properties": {
                            "object": {
                                "$ref": format!("#/components/schemas/{}", object_schema(event_type))
                            }
                        }
                    }
                }
            }
        ]
    })
}

/// The `webhooks` section: one entry per event type, with the Standard Webhooks headers.
fn webhooks() -> Value {
    let signature_headers = [
        (
            "webhook-id",
            "The event's id (`evt_…`): the same across retries and endpoints; deduplicate on it.",
        ),
        (
            "webhook-timestamp",
            "When this attempt was signed, Unix seconds.",
        ),
        (
            "webhook-signature",
            "`v1,<base64 HMAC-SHA256 of id.timestamp.body>` under the endpoint's secret; two, \
             space-separated, during a secret rotation.",
        ),
    ];
    let parameters: Vec<Value> = signature_headers
        .into_iter()
        .map(|(name, description)| {
            json!({
                "name": name,
                "in": "header",
                "required": true,
                "description": description,
                "schema": { "type": "string" }
            })
        })
        .collect();
    let entries: Map<String, Value> = EventType::ALL
        .into_iter()
        .map(|event_type| {
            let subscribers: Vec<&str> = event_type
                .subscribers()
                .iter()
                .map(|kind| kind.as_str())
                .collect();
            let entry = json!({
                "post": {
                    "operationId": format!("{}Webhook", camel_case(event_type.as_str())),
                    "summary": event_type.as_str(),
                    "description": format!(
                        "{} Subscribers: {}. Signed per Standard Webhooks; answer 2xx within \
                         15 s.",
                        event_type.description(),
                        subscribers.join(", ")
                    ),
                    "tags": ["webhooks"],
                    "x-subscribers": subscribers,
                    "parameters": parameters,
                    "requestBody": {
                        "required": true,
                        "content": { "application/json": { "schema": event_schema(event_type) } }
                    },
                    "responses": {
                        "2XX": { "description": "Received; any other answer is retried" },
                        "410": { "description": "Disables the endpoint" }
                    }
                }
            });
            (event_type.as_str().to_owned(), entry)
        })
        .collect();
    Value::Object(entries)
}

/// `payment_request.partially_paid` → `paymentRequestPartiallyPaid`.
fn camel_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for character in name.chars() {
        if character == '.' || character == '_' {
            upper = true;
        } else if upper {
            out.extend(character.to_uppercase());
            upper = false;
        } else {
            out.push(character);
        }
    }
    out
}

/// `schema` with every `$ref` into the document's components replaced by the component,
/// so that it stands alone (`GET /v1/event-types`).
fn resolve(schema: &Value, components: &Value) -> Value {
    match schema {
        Value::Object(object) => {
            if let Some(name) = object
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|reference| reference.strip_prefix("#/components/schemas/"))
            {
                return resolve(&components[name], components);
            }
            Value::Object(
                object
                    .iter()
                    .map(|(key, value)| (key.clone(), resolve(value, components)))
                    .collect(),
            )
        }
        Value::Array(items) => {
            Value::Array(items.iter().map(|item| resolve(item, components)).collect())
        }
        other => other.clone(),
    }
}

/// The JSON schema of `data.object` of events of `event_type`, standing alone.
pub fn object_json_schema(event_type: EventType) -> Value {
    let components = &DOCUMENTED["components"]["schemas"];
    let mut schema = resolve(&components[object_schema(event_type)], components);
    schema["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
    schema
}

/// The public URL the committed document (docs/openapi.json) is rendered for: the server's
/// default.
const DOCUMENTED_URL: &str = "http://127.0.0.1:8080";

/// The document for the default public URL, for what does not depend on it.
static DOCUMENTED: LazyLock<Value> = LazyLock::new(|| document(DOCUMENTED_URL));

/// utoipa keeps an operation's extensions in a `HashMap`, whose order changes from one run to
/// the next; going through `serde_json::Value` (sorted maps) makes the text reproducible.
fn render(public_url: &str) -> String {
    serde_json::to_string_pretty(&document(public_url))
        .unwrap_or_else(|error| format!("{{\"error\":\"{error}\"}}"))
}

/// The last document rendered, with its public URL: a server renders it once.
static RENDERED: Mutex<Option<(String, std::sync::Arc<str>)>> = Mutex::new(None);

/// The document as pretty JSON, for the server at `public_url`.
pub fn json(public_url: &str) -> std::sync::Arc<str> {
    let mut rendered = RENDERED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((url, text)) = rendered.as_ref() {
        if url == public_url {
            return text.clone();
        }
    }
    let text: std::sync::Arc<str> = render(public_url).into();
    *rendered = Some((public_url.to_owned(), text.clone()));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_renders_to_the_same_text_every_time() {
        let first = render(DOCUMENTED_URL);
        for _ in 0..20 {
            assert_eq!(render(DOCUMENTED_URL), first);
        }
    }

    #[test]
    fn every_id_in_a_path_has_its_pattern() {
        for route in ROUTES {
            for name in route.path.split('/').filter_map(|segment| {
                segment
                    .strip_prefix('{')
                    .and_then(|rest| rest.strip_suffix('}'))
            }) {
                let expected = !matches!(name, "token" | "permission");
                assert_eq!(
                    path_id_prefix(route.path, name).is_some(),
                    expected,
                    "{} {}: {{{name}}}",
                    route.method,
                    route.path
                );
            }
        }
        assert_eq!(
            path_id_prefix("/v1/requests/{id}/payments", "id"),
            Some("req")
        );
        assert_eq!(
            path_id_prefix("/v1/destinations/{id}/keys/{key_id}", "key_id"),
            Some("key")
        );
    }

    #[test]
    fn event_names_become_camel_case() {
        assert_eq!(
            camel_case("payment_request.partially_paid"),
            "paymentRequestPartiallyPaid"
        );
        assert_eq!(camel_case("webhook.test"), "webhookTest");
    }

    #[test]
    fn event_object_schemas_stand_alone() {
        for event_type in EventType::ALL {
            let schema = object_json_schema(event_type);
            assert_eq!(schema["type"], "object", "{}", event_type.as_str());
            assert!(
                !schema.to_string().contains("$ref"),
                "{}",
                event_type.as_str()
            );
        }
    }
}
