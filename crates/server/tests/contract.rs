//! The integration contract over real HTTP: refusals that name the field, header or
//! permission at fault, 405 with `Allow`, the OAuth authorization-server metadata, the
//! operator's look-ups and the event feed's `type` filter.

// Test helpers outside #[test] functions: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use base64::Engine;
use mandate_domain::principal::PrincipalKind;
use mandate_http::pipeline::Admits;
use mandate_http::routes::ROUTES;
use mandate_signatures::AgentSigner;
use serde_json::{Value, json};
use support::{
    ADMIN_TOKEN, Api, Database, FreshDatabase, Reply, Server, TempDir, Tenant, ids, tenant,
};

/// The public URL the servers of this file are configured with: not the address they listen on.
const PUBLIC_URL: &str = "https://pay.example.com";

async fn start(data: &TempDir, database: &Database) -> Server {
    let mut command = support::mandate_command(&data.0, database);
    command.env("MANDATE__SERVER__PUBLIC_URL", PUBLIC_URL);
    Server::start_with(command, &data.0).await
}

fn assert_field(reply: &Reply, field: &str, what: &str) {
    assert_eq!(
        (reply.status, reply.code()),
        (400, "INVALID_REQUEST"),
        "{what}: {}",
        reply.body
    );
    assert_eq!(
        reply.body["error"]["details"]["field"], field,
        "{what}: {}",
        reply.body
    );
}

async fn orchestrator(api: &Api, slug: &str, name: &str) -> (String, String) {
    let created = api
        .post(
            "/v1/admin/orchestrators",
            ADMIN_TOKEN,
            json!({"slug": slug, "name": name}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    (
        created.body["orchestrator"]["id"]
            .as_str()
            .unwrap()
            .to_owned(),
        created.body["api_key"].as_str().unwrap().to_owned(),
    )
}

async fn client_id(api: &Api, tenant: &Tenant, orchestrator_slug: &str) -> String {
    let issued = api
        .post(
            "/v1/client-ids",
            &tenant.destination_key,
            json!({"orchestrator": orchestrator_slug}),
        )
        .await;
    assert_eq!(issued.status, 201, "{}", issued.body);
    issued.body["id"].as_str().unwrap().to_owned()
}

async fn create_request(api: &Api, key: &str, headers: &[(&str, &str)], direction: &str) -> Reply {
    api.send(
        "POST",
        "/v1/requests",
        Some(key),
        Some(json!({"direction": direction, "amount": "10", "currency": "USD"})),
        headers,
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_and_query_strings_name_the_field_at_fault() {
    let data = TempDir::new();
    let server = start(&data, &Database::Sqlite).await;
    let api = server.api();
    let tenant = tenant(&api).await;
    let platform = tenant.platform_key.as_str();
    let acting = [("x-destination-id", tenant.destination_id.as_str())];
    let post_request = |body: Value| {
        let api = &api;
        async move {
            api.send("POST", "/v1/requests", Some(platform), Some(body), &acting)
                .await
        }
    };

    // A number where a decimal string belongs: the field and the type it must have.
    let float =
        post_request(json!({"direction": "incoming", "amount": 42.5, "currency": "USD"})).await;
    assert_field(&float, "amount", "a float amount");
    assert_eq!(float.body["error"]["details"]["expected"], "a string");
    let message = float.body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("amount: ") && !message.contains("line 1"),
        "{message}"
    );
    // Nested fields as paths; unknown and missing fields by name.
    let nested = post_request(json!({
        "direction": "incoming", "amount": "1", "currency": "USD", "metadata": {"order": 7}
    }))
    .await;
    assert_field(&nested, "metadata.order", "a number in metadata");
    let unknown = post_request(
        json!({"direction": "incoming", "amount": "1", "currency": "USD", "colour": "red"}),
    )
    .await;
    assert_field(&unknown, "colour", "an unknown field");
    let missing = post_request(json!({"direction": "incoming", "currency": "USD"})).await;
    assert_field(&missing, "amount", "a missing field");
    let listed = api
        .post(
            "/v1/webhook-endpoints",
            platform,
            json!({"url": "https://hooks.example.com/in", "event_types": ["payment_request.*", 3]}),
        )
        .await;
    assert_field(&listed, "event_types[1]", "a number in a list");
    // Malformed JSON is not about a field.
    let malformed = api
        .client
        .post(server.url("/v1/destinations"))
        .bearer_auth(platform)
        .header("content-type", "application/json")
        .body("{\"slug\":")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);

    // A body that may be left out is still read when sent: a wrong one is not ignored.
    let request = create_request(&api, platform, &acting, "incoming").await;
    assert_eq!(request.status, 201, "{}", request.body);
    let request_id = request.body["id"].as_str().unwrap();
    let link = api
        .post(
            &format!("/v1/requests/{request_id}/payment-links"),
            platform,
            json!({"expires_in_seconds": "soon"}),
        )
        .await;
    assert_field(
        &link,
        "expires_in_seconds",
        "a payment link's lifetime as text",
    );

    // Query strings the same, without the parser's words.
    let limit = api.get("/v1/requests?limit=abc", platform).await;
    assert_field(&limit, "limit", "a limit that is no number");
    let message = limit.body["error"]["message"].as_str().unwrap();
    assert!(!message.contains("digit"), "{message}");
    assert_field(
        &api.get("/v1/requests?colour=red", platform).await,
        "colour",
        "an unknown query parameter",
    );
    assert_field(
        &api.get("/v1/requests?limit=1&limit=2", platform).await,
        "limit",
        "a repeated query parameter",
    );

    // Every route of the table that reads a body: an unknown field is named.
    let (_, orchestrator_key) = orchestrator(&api, "lookup-bodies", "Bodies").await;
    for route in ROUTES {
        let Admits::Kinds(kinds) = route.admits else {
            continue; // public routes and the agent-signed claim submission
        };
        if !matches!(route.method, "POST" | "PATCH") {
            continue;
        }
        let (key, headers): (&str, &[(&str, &str)]) = if kinds.contains(&PrincipalKind::Admin) {
            (ADMIN_TOKEN, &[])
        } else if kinds.contains(&PrincipalKind::Platform) {
            (platform, &acting)
        } else {
            (&orchestrator_key, &[])
        };
        let path = route
            .path
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    "x"
                } else {
                    segment
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let reply = api
            .send(
                route.method,
                &path,
                Some(key),
                Some(json!({"zz_unknown": 1})),
                headers,
            )
            .await;
        assert_field(
            &reply,
            "zz_unknown",
            &format!("{} {}", route.method, route.path),
        );
    }

    // Every list: an unknown parameter and a limit of the wrong type are named.
    for path in [
        "/v1/admin/organizations",
        "/v1/admin/orchestrators",
        "/v1/destinations",
        "/v1/client-ids",
        "/v1/requests",
        "/v1/claims",
        "/v1/ledger",
        "/v1/customers",
        "/v1/webhook-endpoints",
        "/v1/webhook-endpoints/we_x/deliveries",
        "/v1/events",
    ] {
        let key = if path.starts_with("/v1/admin") {
            ADMIN_TOKEN
        } else {
            platform
        };
        assert_field(
            &api.get(&format!("{path}?zz_unknown=1"), key).await,
            "zz_unknown",
            path,
        );
        assert_field(
            &api.get(&format!("{path}?limit=many"), key).await,
            "limit",
            path,
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_method_on_a_known_path_is_405_with_allow() {
    let data = TempDir::new();
    let server = start(&data, &Database::Sqlite).await;
    let api = server.api();
    for (method, path, allow) in [
        ("PUT", "/v1/requests", "POST, GET"),
        (
            "DELETE",
            "/v1/requests/req_01J0000000000000000000000",
            "GET",
        ),
        ("GET", "/v1/oauth/token", "POST"),
        ("POST", "/v1/events", "GET"),
        ("PATCH", "/v1/admin/organizations", "POST, GET"),
    ] {
        let reply = api.send(method, path, None, None, &[]).await;
        assert_eq!(
            (reply.status, reply.code()),
            (405, "METHOD_NOT_ALLOWED"),
            "{method} {path}: {}",
            reply.body
        );
        assert_eq!(
            reply
                .headers
                .get("allow")
                .and_then(|value| value.to_str().ok()),
            Some(allow),
            "{method} {path}"
        );
        assert!(
            reply.body["error"]["request_id"]
                .as_str()
                .is_some_and(|id| !id.is_empty())
        );
    }
    let unknown = api.send("PUT", "/v1/nothing-here", None, None, &[]).await;
    assert_eq!((unknown.status, unknown.code()), (404, "NOT_FOUND"));
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_name_the_header_or_the_missing_permission() {
    let data = TempDir::new();
    let server = start(&data, &Database::Sqlite).await;
    let api = server.api();
    let tenant = tenant(&api).await;
    let (_, orchestrator_key) = orchestrator(&api, "permissions-runner", "Runner").await;

    // An orchestrator key alone on a client route: told how to act as a client ID.
    let bare = create_request(&api, &orchestrator_key, &[], "incoming").await;
    assert_eq!(
        (bare.status, bare.code()),
        (403, "FORBIDDEN"),
        "{}",
        bare.body
    );
    let message = bare.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("X-Client-Id: cli_") && message.contains("access token"),
        "{message}"
    );
    assert_eq!(bare.body["error"]["details"]["header"], "X-Client-Id");

    // A client ID with the default permissions (create:incoming, create:outgoing).
    let client = client_id(&api, &tenant, "permissions-runner").await;
    let as_client = [("x-client-id", client.as_str())];
    let created = create_request(&api, &orchestrator_key, &as_client, "incoming").await;
    assert_eq!(created.status, 201, "{}", created.body);
    let request_id = created.body["id"].as_str().unwrap().to_owned();
    let expect_permission = |reply: Reply, permission: &str| {
        assert_eq!(
            (reply.status, reply.code()),
            (403, "FORBIDDEN"),
            "{permission}: {}",
            reply.body
        );
        assert_eq!(
            reply.body["error"]["details"]["permission"], permission,
            "{}",
            reply.body
        );
        let message = reply.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(permission), "{message}");
    };
    let send = |method: &'static str, path: String, body: Option<Value>| {
        let api = &api;
        let key = orchestrator_key.clone();
        let client = client.clone();
        async move {
            api.send(method, &path, Some(&key), body, &[("x-client-id", &client)])
                .await
        }
    };
    expect_permission(
        send(
            "POST",
            format!("/v1/requests/{request_id}/payments"),
            Some(json!({"amount": "10", "reference": "0xfeed"})),
        )
        .await,
        "payments:report",
    );
    expect_permission(
        send("GET", "/v1/customers".into(), None).await,
        "customers:read",
    );
    expect_permission(
        send("POST", "/v1/customers".into(), Some(json!({"name": "Ada"}))).await,
        "customers:write",
    );
    let withdrawn = api
        .send(
            "DELETE",
            &format!("/v1/client-ids/{client}/permissions/create:incoming"),
            Some(&tenant.destination_key),
            None,
            &[],
        )
        .await;
    assert_eq!(withdrawn.status, 200, "{}", withdrawn.body);
    expect_permission(
        create_request(&api, &orchestrator_key, &as_client, "incoming").await,
        "create:incoming",
    );
    expect_permission(
        send(
            "POST",
            format!("/v1/requests/{request_id}/payment-links"),
            Some(json!({})),
        )
        .await,
        "create:incoming",
    );
    expect_permission(
        send("POST", format!("/v1/requests/{request_id}/cancel"), None).await,
        "create:incoming",
    );
    // Nothing of the refusals changed the request.
    let unchanged = api
        .get(
            &format!("/v1/requests/{request_id}"),
            &tenant.destination_key,
        )
        .await;
    assert_eq!(
        (
            unchanged.body["status"].as_str(),
            unchanged.body["amount_paid"].as_str()
        ),
        (Some("open"), Some("0"))
    );
}

/// `POST /v1/claims` signed over `signed_url` and sent to the server.
async fn submit_claim(
    server: &Server,
    orchestrator_key: &str,
    agent: &AgentSigner,
    signed_url: &str,
    body: &Value,
) -> Reply {
    let bytes = serde_json::to_vec(body).unwrap();
    let nonce = format!("sig-{}", support::random_hex(12));
    let created = chrono::Utc::now().timestamp();
    let signed = agent
        .sign("POST", signed_url, &[], &bytes, created, &nonce)
        .unwrap();
    let mut request = server
        .api()
        .client
        .post(server.url("/v1/claims"))
        .bearer_auth(orchestrator_key)
        .header("content-type", "application/json")
        .body(bytes);
    for (name, value) in signed.pairs() {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap();
    Reply {
        status,
        body,
        headers,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn claim_refusals_name_the_body_nonce_and_the_expected_authority() {
    let data = TempDir::new();
    let server = start(&data, &Database::Sqlite).await;
    let api = server.api();
    let tenant = tenant(&api).await;
    let (_, orchestrator_key) = orchestrator(&api, "claims-runner", "Runner").await;
    let namespace = api
        .get(
            &format!("/v1/destinations/{}", tenant.destination_id),
            &tenant.destination_key,
        )
        .await
        .body["slug"]
        .as_str()
        .unwrap()
        .to_owned();
    let agent = AgentSigner::generate();
    let body = json!({
        "namespace": namespace,
        "public_key": agent.key_id().to_owned(),
        "service": "claims-runner",
        "ip_address": "203.0.113.7",
        "nonce": format!("claim-{}", support::random_hex(12)),
        "agent_id": "bot-1",
        "agent_name": "Invoice agent",
    });

    // Signed for the address the agent called, not the public URL: the server says which.
    let called = server.url("/v1/claims");
    let elsewhere = submit_claim(&server, &orchestrator_key, &agent, &called, &body).await;
    assert_eq!(
        (elsewhere.status, elsewhere.code()),
        (401, "SIGNATURE_INVALID"),
        "{}",
        elsewhere.body
    );
    let message = elsewhere.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("covers @target-uri {called}"))
            && message.contains("pay.example.com"),
        "{message}"
    );
    let details = &elsewhere.body["error"]["details"];
    assert_eq!(details["expected_authority"], "pay.example.com");
    assert_eq!(
        details["expected_target_uri"],
        "https://pay.example.com/v1/claims"
    );

    // Signed for the public URL: accepted; the same body nonce again under a new signature
    // is named as the claim's field.
    let public = format!("{PUBLIC_URL}/v1/claims");
    let accepted = submit_claim(&server, &orchestrator_key, &agent, &public, &body).await;
    assert_eq!(accepted.status, 201, "{}", accepted.body);
    let replayed = submit_claim(&server, &orchestrator_key, &agent, &public, &body).await;
    assert_eq!(
        (replayed.status, replayed.code()),
        (409, "CONFLICT"),
        "{}",
        replayed.body
    );
    assert_eq!(replayed.body["error"]["details"]["field"], "nonce");
    let message = replayed.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("nonce field"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_oauth_metadata_describes_the_token_endpoint_from_the_public_url() {
    let data = TempDir::new();
    let server = start(&data, &Database::Sqlite).await;
    let api = server.api();
    let metadata = api
        .send(
            "GET",
            "/.well-known/oauth-authorization-server",
            None,
            None,
            &[],
        )
        .await;
    assert_eq!(metadata.status, 200, "{}", metadata.body);
    assert_eq!(metadata.body["issuer"], PUBLIC_URL);
    assert_eq!(
        metadata.body["token_endpoint"],
        format!("{PUBLIC_URL}/v1/oauth/token")
    );
    assert_eq!(
        metadata.body["jwks_uri"],
        format!("{PUBLIC_URL}/.well-known/jwks.json")
    );
    assert_eq!(
        metadata.body["grant_types_supported"],
        json!(["client_credentials"])
    );
    assert_eq!(
        metadata.body["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post"])
    );
    assert_eq!(
        metadata.body["scopes_supported"],
        json!([
            "create:incoming",
            "create:outgoing",
            "read:incoming",
            "read:outgoing",
            "customers:read",
            "customers:write",
            "payments:report"
        ])
    );

    // A token's `iss` is the metadata's issuer.
    let tenant = tenant(&api).await;
    let (_, orchestrator_key) = orchestrator(&api, "oauth-runner", "Runner").await;
    let client = client_id(&api, &tenant, "oauth-runner").await;
    let token = api
        .send(
            "POST",
            "/v1/oauth/token",
            None,
            Some(json!({
                "grant_type": "client_credentials",
                "client_id": client,
                "client_secret": orchestrator_key,
            })),
            &[],
        )
        .await;
    assert_eq!(token.status, 200, "{}", token.body);
    let payload = token.body["access_token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["iss"], metadata.body["issuer"]);
    assert_eq!(claims["aud"], "mandate");
    assert_eq!(token.body["expires_in"], 900);
}

async fn operator_lookups(api: &Api) {
    let name = format!("Lookup {}", support::random_hex(4));
    let mut organizations = Vec::new();
    for _ in 0..3 {
        let created = api
            .post(
                "/v1/admin/organizations",
                ADMIN_TOKEN,
                json!({"name": name}),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.body);
        organizations.push(
            created.body["organization"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    organizations.reverse();
    let path = format!("/v1/admin/organizations?name={}", name.replace(' ', "%20"));
    let named = api.get(&path, ADMIN_TOKEN).await;
    assert_eq!(named.status, 200, "{}", named.body);
    assert_eq!(named.body["object"], "list");
    assert_eq!(ids(&named.body), organizations);
    assert!(named.body["data"][0].get("platform_key").is_none());
    let first = api.get(&format!("{path}&limit=2"), ADMIN_TOKEN).await;
    assert_eq!(ids(&first.body), organizations[..2]);
    assert_eq!(first.body["has_more"], true);
    let cursor = first.body["next_cursor"].as_str().unwrap();
    let rest = api
        .get(
            &format!("{path}&limit=2&starting_after={cursor}"),
            ADMIN_TOKEN,
        )
        .await;
    assert_eq!(ids(&rest.body), organizations[2..]);
    assert_eq!(rest.body["has_more"], false);
    let everyone = api
        .get("/v1/admin/organizations?limit=100", ADMIN_TOKEN)
        .await;
    assert!(ids(&everyone.body).starts_with(&organizations));

    let slug = format!("lookup-{}", support::random_hex(4));
    let (id, platform_less_key) = orchestrator(api, &slug, "Lookup runner").await;
    let by_slug = api
        .get(&format!("/v1/admin/orchestrators?slug={slug}"), ADMIN_TOKEN)
        .await;
    assert_eq!(by_slug.status, 200, "{}", by_slug.body);
    assert_eq!(ids(&by_slug.body), vec![id.clone()]);
    assert_eq!(by_slug.body["data"][0]["slug"], slug.as_str());
    assert!(by_slug.body["data"][0].get("api_key").is_none());
    let by_name = api
        .get("/v1/admin/orchestrators?name=Lookup%20runner", ADMIN_TOKEN)
        .await;
    assert_eq!(ids(&by_name.body)[0], id);
    let nobody = api
        .get("/v1/admin/orchestrators?slug=nobody-here", ADMIN_TOKEN)
        .await;
    assert_eq!(ids(&nobody.body), Vec::<String>::new());
    assert_field(
        &api.get("/v1/admin/orchestrators?slug=Not%20A%20Slug", ADMIN_TOKEN)
            .await,
        "slug",
        "a malformed slug",
    );

    // The operator's token only.
    let tenant = tenant(api).await;
    for (path, key) in [
        ("/v1/admin/organizations", tenant.platform_key.as_str()),
        ("/v1/admin/orchestrators", platform_less_key.as_str()),
    ] {
        let refused = api.get(path, key).await;
        assert_eq!(
            (refused.status, refused.code()),
            (403, "FORBIDDEN"),
            "{path}"
        );
        let anonymous = api.send("GET", path, None, None, &[]).await;
        assert_eq!(anonymous.status, 401, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_look_up_organizations_and_orchestrators_on_sqlite() {
    let data = TempDir::new();
    let server = start(&data, &Database::Sqlite).await;
    operator_lookups(&server.api()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_look_up_organizations_and_orchestrators_on_postgres() {
    let database = FreshDatabase::create().await;
    let data = TempDir::new();
    let server = start(&data, &Database::Postgres(database.url.clone())).await;
    operator_lookups(&server.api()).await;
}

async fn feed_filters(api: &Api) {
    let tenant = tenant(api).await;
    let owner = tenant.destination_key.as_str();
    let created = create_request(api, owner, &[], "incoming").await;
    assert_eq!(created.status, 201, "{}", created.body);
    let request_id = created.body["id"].as_str().unwrap();
    let cancelled = api
        .post(
            &format!("/v1/requests/{request_id}/cancel"),
            owner,
            json!({}),
        )
        .await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    let customer = api
        .post("/v1/customers", owner, json!({"name": "Ada"}))
        .await;
    assert_eq!(customer.status, 201, "{}", customer.body);
    orchestrator(api, &format!("feed-{}", support::random_hex(4)), "Feed").await;
    let types = |reply: &Reply| -> Vec<String> {
        reply.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|event| event["type"].as_str().unwrap().to_owned())
            .collect()
    };
    let family = api.get("/v1/events?type=payment_request.*", owner).await;
    assert_eq!(family.status, 200, "{}", family.body);
    assert_eq!(
        types(&family),
        ["payment_request.cancelled", "payment_request.created"]
    );
    let exact = api.get("/v1/events?type=customer.created", owner).await;
    assert_eq!(types(&exact), ["customer.created"]);
    assert_eq!(
        exact.body["data"][0]["data"]["object"]["id"],
        customer.body["id"]
    );
    // Paged within the filter.
    let first = api
        .get("/v1/events?type=payment_request.*&limit=1", owner)
        .await;
    assert_eq!(types(&first), ["payment_request.cancelled"]);
    let cursor = first.body["next_cursor"].as_str().unwrap();
    let rest = api
        .get(
            &format!("/v1/events?type=payment_request.*&limit=1&starting_after={cursor}"),
            owner,
        )
        .await;
    assert_eq!(types(&rest), ["payment_request.created"]);
    assert_eq!(rest.body["has_more"], false);
    let unfiltered = api.get("/v1/events", owner).await;
    assert_eq!(types(&unfiltered).len(), 3);
    for unknown in [
        "payment_request",
        "payment_request.refunded",
        "nothing.*",
        "*",
    ] {
        assert_field(
            &api.get(&format!("/v1/events?type={unknown}"), owner).await,
            "type",
            unknown,
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_event_feed_filters_by_type_on_sqlite() {
    let data = TempDir::new();
    let server = start(&data, &Database::Sqlite).await;
    feed_filters(&server.api()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_event_feed_filters_by_type_on_postgres() {
    let database = FreshDatabase::create().await;
    let data = TempDir::new();
    let server = start(&data, &Database::Postgres(database.url.clone())).await;
    feed_filters(&server.api()).await;
}
