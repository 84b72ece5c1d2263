//! The authentication matrix, generated from the route table: every operation of the served
//! OpenAPI document is called with every kind of credential, and each answer is checked
//! against the operation's `x-principals` (which the route table produces), and its status
//! against the operation's declared `responses`. A new route is covered the moment it is added
//! to the table.

// Test helpers outside #[test] functions: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use support::{ADMIN_TOKEN, Api, Database, Reply, Server, TempDir, random_hex};

/// The principal kinds the pipeline knows, by their names in the API.
const KINDS: [&str; 5] = ["admin", "platform", "destination", "orchestrator", "client"];

/// An id of the right shape that names nothing (a ULID of time zero).
const NOBODY: &str = "00000000000000000000000000";

/// One way of calling an operation: a credential, with the headers that go with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Admin,
    Platform,
    PlatformForDestination,
    Destination,
    Orchestrator,
    ClientByHeader,
    ClientByToken,
    Anonymous,
    MalformedBearer,
    MalformedBasic,
}

impl Caller {
    const ALL: [Caller; 10] = [
        Caller::Admin,
        Caller::Platform,
        Caller::PlatformForDestination,
        Caller::Destination,
        Caller::Orchestrator,
        Caller::ClientByHeader,
        Caller::ClientByToken,
        Caller::Anonymous,
        Caller::MalformedBearer,
        Caller::MalformedBasic,
    ];

    fn label(self) -> &'static str {
        match self {
            Caller::Admin => "admin",
            Caller::Platform => "platform",
            Caller::PlatformForDestination => "platform+X-Destination-Id",
            Caller::Destination => "destination",
            Caller::Orchestrator => "orchestrator",
            Caller::ClientByHeader => "client (X-Client-Id)",
            Caller::ClientByToken => "client (access token)",
            Caller::Anonymous => "none",
            Caller::MalformedBearer => "malformed (Bearer)",
            Caller::MalformedBasic => "malformed (Basic)",
        }
    }

    /// The principal kind the pipeline resolves this credential to; `None` when it must not
    /// resolve at all.
    fn kind(self) -> Option<&'static str> {
        match self {
            Caller::Admin => Some("admin"),
            Caller::Platform | Caller::PlatformForDestination => Some("platform"),
            Caller::Destination => Some("destination"),
            Caller::Orchestrator => Some("orchestrator"),
            Caller::ClientByHeader | Caller::ClientByToken => Some("client"),
            Caller::Anonymous | Caller::MalformedBearer | Caller::MalformedBasic => None,
        }
    }
}

/// Who an operation admits, as its `x-principals` says.
#[derive(Debug, Clone)]
enum Admission {
    Public,
    Kinds(Vec<String>),
    /// These kinds, on a request an agent has also signed (`x-agent-signature: required`):
    /// the matrix sends no signature, so an admitted caller gets 401 `SIGNATURE_INVALID`.
    KindsSignedByAgent(Vec<String>),
}

impl Admission {
    fn of(operation: &Value) -> Result<Self, String> {
        let listed: Vec<String> = operation["x-principals"]
            .as_array()
            .ok_or("no x-principals list")?
            .iter()
            .map(|kind| kind.as_str().map(str::to_owned).ok_or("a non-string kind"))
            .collect::<Result<_, _>>()?;
        if listed == ["public"] {
            return Ok(Admission::Public);
        }
        if listed.is_empty() {
            return Err("an empty x-principals list".into());
        }
        if let Some(unknown) = listed.iter().find(|kind| !KINDS.contains(&kind.as_str())) {
            return Err(format!(
                "unknown principal kind {unknown:?} in x-principals"
            ));
        }
        if operation["x-agent-signature"] == "required" {
            return Ok(Admission::KindsSignedByAgent(listed));
        }
        Ok(Admission::Kinds(listed))
    }

    fn admits(&self, caller: Caller) -> bool {
        match (self, caller.kind()) {
            (Admission::Public, _) => true,
            (Admission::Kinds(kinds) | Admission::KindsSignedByAgent(kinds), Some(kind)) => {
                kinds.iter().any(|admitted| admitted == kind)
            }
            (Admission::Kinds(_) | Admission::KindsSignedByAgent(_), None) => false,
        }
    }
}

/// Whose key a `{key_id}` names, from the path it appears in.
#[derive(Debug, Clone, Copy)]
enum KeyOwner {
    Organization,
    Destination,
    Orchestrator,
}

/// What a path parameter is replaced with.
#[derive(Debug, Clone, Copy)]
enum Resource {
    Destination,
    Client,
    /// A second client ID, for operations that end one: the fixture's own must outlive them.
    ThrowawayClient,
    Request,
    /// A customer of the fixture's organization, created for the operation.
    Customer,
    /// A key created for the operation, never the one the fixture calls with.
    ThrowawayKey(KeyOwner),
    LinkToken,
    Permission,
    /// A well-formed id that names nothing, with this prefix.
    Unknown(&'static str),
}

/// The prefix of the ids a collection segment holds, for resources the fixture does not own.
fn prefix_of(collection: &str) -> &'static str {
    match collection {
        "organizations" | "organization" => "org",
        "orchestrators" | "orchestrator" => "orc",
        "destinations" => "dst",
        "client-ids" => "cli",
        "keys" => "key",
        "requests" => "req",
        "payments" => "pay",
        "payment-links" => "plink",
        "customers" => "cus",
        "claims" => "clm",
        "webhook-endpoints" => "we",
        "webhook-deliveries" => "dlv",
        "deliveries" => "dlv",
        "events" => "evt",
        _ => "unk",
    }
}

/// The resource the parameter at `segments[index]` of a `method` path names.
fn resource_for(method: &str, segments: &[&str], index: usize) -> Resource {
    let name = segments[index]
        .trim_start_matches('{')
        .trim_end_matches('}');
    let collection = index.checked_sub(1).map_or("", |before| segments[before]);
    match (name, collection) {
        ("token", _) => Resource::LinkToken,
        ("permission", _) => Resource::Permission,
        (_, "keys") => match segments.get(1).copied() {
            Some("organization") => Resource::ThrowawayKey(KeyOwner::Organization),
            Some("destinations") => Resource::ThrowawayKey(KeyOwner::Destination),
            Some("orchestrator") => Resource::ThrowawayKey(KeyOwner::Orchestrator),
            _ => Resource::Unknown("key"),
        },
        (_, "destinations") => Resource::Destination,
        (_, "client-ids") => {
            let ends_it = segments.last() == Some(&"revoke")
                || (method == "DELETE" && index + 1 == segments.len());
            if ends_it {
                Resource::ThrowawayClient
            } else {
                Resource::Client
            }
        }
        (_, "requests") => Resource::Request,
        (_, "customers") => Resource::Customer,
        (_, collection) => Resource::Unknown(prefix_of(collection)),
    }
}

/// Everything one operation's row of the matrix needs, fresh for each operation so that
/// what one operation changes cannot decide another's answers.
struct Fixture<'a> {
    api: &'a Api,
    platform_key: String,
    destination_id: String,
    destination_key: String,
    orchestrator_slug: String,
    orchestrator_key: String,
    client_id: String,
    access_token: String,
    request_id: String,
    link_token: String,
}

fn created_id(reply: &Reply, what: &str) -> String {
    assert_eq!(reply.status, 201, "creating {what}: {}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

impl<'a> Fixture<'a> {
    async fn new(api: &'a Api) -> Self {
        let tenant = support::tenant(api).await;
        let orchestrator_slug = format!("orc-{}", random_hex(6));
        let orchestrator = api
            .post(
                "/v1/admin/orchestrators",
                ADMIN_TOKEN,
                json!({"slug": orchestrator_slug, "name": "Matrix"}),
            )
            .await;
        assert_eq!(orchestrator.status, 201, "{}", orchestrator.body);
        let orchestrator_key = orchestrator.body["api_key"].as_str().unwrap().to_owned();
        let issued = api
            .post(
                "/v1/client-ids",
                &tenant.destination_key,
                json!({"orchestrator": orchestrator_slug}),
            )
            .await;
        let client_id = created_id(&issued, "a client ID");
        let access_token = access_token(api, &client_id, &orchestrator_key).await;
        let as_client = [("x-client-id", client_id.as_str())];
        let request = api
            .send(
                "POST",
                "/v1/requests",
                Some(&orchestrator_key),
                Some(json!({"direction": "incoming", "amount": "12.5", "currency": "USD"})),
                &as_client,
            )
            .await;
        let request_id = created_id(&request, "a payment request");
        let link = api
            .send(
                "POST",
                &format!("/v1/requests/{request_id}/payment-links"),
                Some(&orchestrator_key),
                Some(json!({})),
                &as_client,
            )
            .await;
        assert_eq!(link.status, 201, "creating a payment link: {}", link.body);
        let url = link.body["url"].as_str().unwrap();
        let link_token = url.rsplit_once("/pay/").unwrap().1.to_owned();
        Self {
            api,
            platform_key: tenant.platform_key,
            destination_id: tenant.destination_id,
            destination_key: tenant.destination_key,
            orchestrator_slug,
            orchestrator_key,
            client_id,
            access_token,
            request_id,
            link_token,
        }
    }

    /// The value for one path parameter, creating a throwaway object when it needs one.
    async fn value(&self, resource: Resource) -> String {
        match resource {
            Resource::Destination => self.destination_id.clone(),
            Resource::Client => self.client_id.clone(),
            Resource::Request => self.request_id.clone(),
            Resource::LinkToken => self.link_token.clone(),
            Resource::Permission => "read:incoming".to_owned(),
            Resource::Unknown(prefix) => format!("{prefix}_{NOBODY}"),
            Resource::Customer => {
                let email = format!("matrix-{}@example.com", random_hex(4));
                let created = self
                    .api
                    .post(
                        "/v1/customers",
                        &self.destination_key,
                        json!({"email": email, "name": "Matrix"}),
                    )
                    .await;
                created_id(&created, "a customer")
            }
            Resource::ThrowawayClient => {
                let issued = self
                    .api
                    .post(
                        "/v1/client-ids",
                        &self.destination_key,
                        json!({"orchestrator": self.orchestrator_slug, "label": "throwaway"}),
                    )
                    .await;
                created_id(&issued, "a throwaway client ID")
            }
            Resource::ThrowawayKey(owner) => {
                let (path, key) = match owner {
                    KeyOwner::Organization => {
                        ("/v1/organization/keys".to_owned(), &self.platform_key)
                    }
                    KeyOwner::Destination => (
                        format!("/v1/destinations/{}/keys", self.destination_id),
                        &self.platform_key,
                    ),
                    KeyOwner::Orchestrator => {
                        ("/v1/orchestrator/keys".to_owned(), &self.orchestrator_key)
                    }
                };
                let issued = self.api.post(&path, key, json!({})).await;
                created_id(&issued, "a throwaway key")
            }
        }
    }

    /// The path with every parameter replaced.
    async fn concrete_path(&self, method: &str, template: &str) -> String {
        let segments: Vec<&str> = template.split('/').skip(1).collect();
        let mut path = String::new();
        for (index, segment) in segments.iter().enumerate() {
            path.push('/');
            if segment.starts_with('{') && segment.ends_with('}') {
                path.push_str(&self.value(resource_for(method, &segments, index)).await);
            } else {
                path.push_str(segment);
            }
        }
        path
    }

    /// The bearer credential and the extra headers a caller sends.
    fn credential(&self, caller: Caller) -> (Option<String>, Vec<(&'static str, String)>) {
        match caller {
            Caller::Admin => (Some(ADMIN_TOKEN.to_owned()), vec![]),
            Caller::Platform => (Some(self.platform_key.clone()), vec![]),
            Caller::PlatformForDestination => (
                Some(self.platform_key.clone()),
                vec![("x-destination-id", self.destination_id.clone())],
            ),
            Caller::Destination => (Some(self.destination_key.clone()), vec![]),
            Caller::Orchestrator => (Some(self.orchestrator_key.clone()), vec![]),
            Caller::ClientByHeader => (
                Some(self.orchestrator_key.clone()),
                vec![("x-client-id", self.client_id.clone())],
            ),
            Caller::ClientByToken => (Some(self.access_token.clone()), vec![]),
            Caller::Anonymous => (None, vec![]),
            Caller::MalformedBearer => (Some("mnd_plat_not-a-real-key".to_owned()), vec![]),
            Caller::MalformedBasic => (
                None,
                vec![(
                    "authorization",
                    format!("Basic {}", STANDARD.encode("nobody:not-a-real-key")),
                )],
            ),
        }
    }
}

async fn access_token(api: &Api, client_id: &str, orchestrator_key: &str) -> String {
    let reply = api
        .client
        .post(format!("{}/v1/oauth/token", api.base()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", orchestrator_key),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200, "issuing an access token");
    let body: Value = reply.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

/// The pipeline's step-4 refusal: a 403 naming the refused principal kind.
fn refused_kind(reply: &Reply) -> Option<&str> {
    if reply.status != 403 {
        return None;
    }
    reply.body["error"]["details"]["principal"].as_str()
}

/// The token endpoint authenticating a client itself (RFC 6749 §5.2), which it does with
/// any HTTP Basic credential it is sent; not the pipeline's refusal.
fn oauth_client_refusal(reply: &Reply) -> bool {
    reply.status == 401 && reply.body["error"].as_str() == Some("invalid_client")
}

fn describe(reply: &Reply) -> String {
    let error = &reply.body["error"];
    // The token endpoint's errors carry their code as a string, the envelope's in an object.
    let Some(code) = error.as_str().or(error["code"].as_str()) else {
        return reply.status.to_string();
    };
    let mut text = format!("{} {code}", reply.status);
    let details = &error["details"];
    if let Some(kind) = details["principal"].as_str() {
        text.push_str(&format!(
            " (details.principal={kind}, details.admits={})",
            details["admits"]
        ));
    }
    text
}

/// `None` when the reply is what `admission` requires for `caller`, else what was expected.
fn mismatch(admission: &Admission, caller: Caller, reply: &Reply) -> Option<String> {
    if reply.status >= 500 {
        return Some("never a 5xx".to_owned());
    }
    match (admission, caller.kind()) {
        (Admission::Public, _) => {
            let unauthenticated = reply.status == 401 && !oauth_client_refusal(reply);
            (unauthenticated || refused_kind(reply).is_some())
                .then(|| "a public route: no 401, no step-4 403".to_owned())
        }
        (Admission::Kinds(_) | Admission::KindsSignedByAgent(_), None) => {
            let refused = reply.status == 401 && reply.code() == "UNAUTHENTICATED";
            (!refused).then(|| "401 UNAUTHENTICATED".to_owned())
        }
        (Admission::KindsSignedByAgent(_), Some(kind)) if admission.admits(caller) => {
            let refused = reply.status == 401 && reply.code() == "SIGNATURE_INVALID";
            (!refused).then(|| format!("admitted ({kind}) but unsigned: 401 SIGNATURE_INVALID"))
        }
        (Admission::Kinds(_), Some(kind)) if admission.admits(caller) => {
            let refused = reply.status == 401 || refused_kind(reply).is_some();
            refused.then(|| format!("admitted ({kind}): not 401, no step-4 403"))
        }
        (Admission::Kinds(kinds) | Admission::KindsSignedByAgent(kinds), Some(kind)) => {
            let details = &reply.body["error"]["details"];
            let named_admits: Option<Vec<&str>> = details["admits"]
                .as_array()
                .map(|list| list.iter().filter_map(Value::as_str).collect());
            let right = reply.status == 403
                && reply.code() == "FORBIDDEN"
                && refused_kind(reply) == Some(kind)
                && named_admits
                    .as_deref()
                    .is_some_and(|named| named == kinds.as_slice());
            (!right).then(|| {
                format!("403 FORBIDDEN with details.principal={kind}, details.admits={kinds:?}")
            })
        }
    }
}

/// One operation's row: not-admitted kinds first, then the unauthenticated, then the
/// admitted ones, so that an admitted call's side effects cannot change a refusal.
async fn row(
    api: &Api,
    method: &str,
    template: &str,
    operation: &Value,
    failures: &mut Vec<String>,
) -> usize {
    let admission = match Admission::of(operation) {
        Ok(admission) => admission,
        Err(problem) => {
            failures.push(format!("{method:<6} {template:<46} {problem}"));
            return 0;
        }
    };
    let admission = &admission;
    let fixture = Fixture::new(api).await;
    let path = fixture.concrete_path(method, template).await;
    let mut callers = Caller::ALL.to_vec();
    callers.sort_by_key(|caller| match (caller.kind(), admission.admits(*caller)) {
        (Some(_), false) => 0,
        (None, _) => 1,
        (Some(_), true) => 2,
    });
    let body = matches!(method, "POST" | "PATCH" | "PUT").then(|| json!({}));
    for caller in &callers {
        let (token, extra) = fixture.credential(*caller);
        let headers: Vec<(&str, &str)> = extra
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        let reply = api
            .send(method, &path, token.as_deref(), body.clone(), &headers)
            .await;
        if let Some(expected) = mismatch(admission, *caller, &reply) {
            failures.push(format!(
                "{method:<6} {template:<46} {:<26} → got {}, expected {expected}",
                caller.label(),
                describe(&reply),
            ));
        }
        if operation["responses"]
            .get(reply.status.to_string())
            .is_none()
        {
            failures.push(format!(
                "{method:<6} {template:<46} {:<26} → got {}, which the operation's responses \
                 do not declare",
                caller.label(),
                describe(&reply),
            ));
        }
    }
    callers.len()
}

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

#[tokio::test(flavor = "multi_thread")]
async fn every_operation_admits_exactly_its_principal_kinds() {
    let data = TempDir::new();
    let mut command = support::mandate_command(&data.0, &Database::Sqlite);
    command.env("MANDATE__RATE_LIMIT__PER_SECOND", "0");
    let server = Server::start_with(command, &data.0).await;
    let api = server.api();

    let document = api.send("GET", "/openapi.json", None, None, &[]).await;
    assert_eq!(document.status, 200);
    let paths = document.body["paths"].as_object().unwrap();
    let operations: Vec<(String, String, &Value)> = paths
        .iter()
        .flat_map(|(path, item)| {
            METHODS.iter().filter_map(move |method| {
                item.get(*method)
                    .map(|operation| (method.to_uppercase(), path.clone(), operation))
            })
        })
        .collect();
    assert!(!operations.is_empty(), "the document lists no operations");

    let mut failures = Vec::new();
    let mut checked_operations = 0;
    let mut cells = 0;
    for (method, path, operation) in &operations {
        let checked = row(&api, method, path, operation, &mut failures).await;
        cells += checked;
        checked_operations += usize::from(checked > 0);
    }

    println!(
        "auth matrix: {checked_operations} operations × {} principal kinds = {cells} cells checked",
        Caller::ALL.len()
    );
    println!(
        "principal kinds: {}",
        Caller::ALL.map(Caller::label).join(", ")
    );
    assert!(
        failures.is_empty(),
        "{} of {cells} cells answered wrongly:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(
        checked_operations,
        operations.len(),
        "every operation of the document is checked"
    );
    assert_eq!(cells, operations.len() * Caller::ALL.len());
}

/// The console's routes take no API credential: each one but the sign-in form refuses a
/// request without a live session — no cookie, a forged one, or any Bearer credential — by
/// sending the browser to sign in, before its handler runs.
#[tokio::test(flavor = "multi_thread")]
async fn every_console_route_refuses_without_a_session() {
    use mandate_http::console::{Access, LOGIN_PATH, ROUTES};
    let data = TempDir::new();
    let server = Server::start(&data.0, &Database::Sqlite).await;
    let api = server.api();
    let tenant = support::tenant(&api).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let forged = format!("mandate_session={}", random_hex(32));
    let mut cells = 0;
    let mut failures = Vec::new();
    for route in ROUTES {
        let path = route.path.replace("{id}", NOBODY);
        let method = reqwest::Method::from_bytes(route.method.as_bytes()).unwrap();
        let attempts: [(&str, Option<(&str, String)>); 5] = [
            ("none", None),
            ("forged session", Some(("cookie", forged.clone()))),
            (
                "admin token",
                Some(("authorization", format!("Bearer {ADMIN_TOKEN}"))),
            ),
            (
                "platform key",
                Some(("authorization", format!("Bearer {}", tenant.platform_key))),
            ),
            (
                "destination key",
                Some((
                    "authorization",
                    format!("Bearer {}", tenant.destination_key),
                )),
            ),
        ];
        for (label, header) in attempts {
            let mut request = client.request(method.clone(), server.url(&path));
            if method == reqwest::Method::POST {
                request = request.form(&[("csrf_token", "x"), ("permission", "create:incoming")]);
            }
            if let Some((name, value)) = header {
                request = request.header(name, value);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let location = response
                .headers()
                .get("location")
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            cells += 1;
            let refused = status == 303 && location.starts_with(LOGIN_PATH);
            let expected = route.access != Access::Public;
            if refused != expected {
                failures.push(format!(
                    "{} {} with {label}: {status} {location}",
                    route.method, route.path
                ));
            }
        }
    }
    println!(
        "console matrix: {} routes, {cells} cells checked",
        ROUTES.len()
    );
    assert!(failures.is_empty(), "{failures:#?}");
}
