//! The owner's console over HTTP against the real server: sign-in and its cookie, the
//! security headers, CSRF refusals that change nothing, another tenant's objects as 404, a
//! revoked key ending its sessions at once, and a claim decided from its review link — each
//! change checked through the API.

// Test helpers outside #[test] functions: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::console::{Browser, Page, destination_slug, register_orchestrator, submit_claim};
use support::{Api, Database, Server, TempDir, Tenant, tenant};

fn assert_hardened(page: &Page) {
    let policy = page.header("content-security-policy");
    assert!(policy.contains("default-src 'none'"), "{policy}");
    assert!(
        !policy.contains("script-src"),
        "no script may run: {policy}"
    );
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert_eq!(page.header("x-frame-options"), "DENY");
    assert_eq!(page.header("referrer-policy"), "no-referrer");
    assert_eq!(page.header("cache-control"), "no-store");
    assert!(!page.body.contains("<script"), "{}", page.body);
}

/// A client ID of the tenant's destination with the default permissions; its id.
async fn client_id(api: &Api, tenant: &Tenant, orchestrator: &str) -> String {
    let issued = api
        .post(
            "/v1/client-ids",
            &tenant.destination_key,
            json!({"orchestrator": orchestrator}),
        )
        .await;
    assert_eq!(issued.status, 201, "{}", issued.body);
    issued.body["id"].as_str().unwrap().to_owned()
}

async fn permissions(api: &Api, key: &str, client_id: &str) -> Vec<Value> {
    let client = api.get(&format!("/v1/client-ids/{client_id}"), key).await;
    assert_eq!(client.status, 200, "{}", client.body);
    client.body["permissions"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_is_a_strict_cookie_and_ends_at_sign_out() {
    let data = TempDir::new();
    let server = Server::start(&data.0, &Database::Sqlite).await;
    let api = server.api();
    let tenant = tenant(&api).await;
    let (_, orchestrator_key) = register_orchestrator(&api).await;
    let mut browser = Browser::new(&server.base);

    // No session: every page sends the browser to sign in, and back afterwards.
    let unsigned = browser.get("/console/claims").await;
    assert_eq!(unsigned.status, 303);
    assert_eq!(
        unsigned.location(),
        "/console/login?next=%2Fconsole%2Fclaims"
    );
    let form = browser.get(unsigned.location()).await;
    assert_eq!(form.status, 200);
    assert_hardened(&form);
    assert!(form.body.contains("name=\"key\""));

    // Wrong keys: no session.
    let wrong = browser
        .post("/console/login", &[("key", "mnd_dest_not-a-key")])
        .await;
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    assert!(wrong.body.contains("a valid credential is required"));
    let orchestrator = browser
        .post("/console/login", &[("key", orchestrator_key.as_str())])
        .await;
    assert_eq!(orchestrator.status, 403, "{}", orchestrator.body);
    assert!(browser.cookies.is_empty(), "{:?}", browser.cookies);

    // The destination key: a session cookie only the console gets, never a script.
    let signed_in = browser
        .post(
            "/console/login",
            &[
                ("key", tenant.destination_key.as_str()),
                ("next", "/console/client-ids"),
            ],
        )
        .await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    assert_eq!(signed_in.location(), "/console/client-ids");
    let cookie = signed_in
        .set_cookies()
        .into_iter()
        .find(|line| line.starts_with("mandate_session="))
        .unwrap();
    let attributes: Vec<&str> = cookie.split("; ").skip(1).collect();
    assert_eq!(
        attributes,
        [
            "Path=/console",
            "Max-Age=43200",
            "HttpOnly",
            "SameSite=Strict"
        ],
        "plain http: no Secure; {cookie}"
    );
    let token = browser.cookies["mandate_session"].clone();
    assert!(token.len() >= 64, "{token}");

    let page = browser.get("/console/client-ids").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_hardened(&page);
    assert!(
        page.body.contains("Signed in."),
        "the flash says what happened"
    );
    assert!(!page.body.contains(&tenant.destination_key));
    assert!(!page.body.contains(&token));
    let again = browser.get("/console/client-ids").await;
    assert!(!again.body.contains("Signed in."), "a flash shows once");

    // Signing out ends the session: the old cookie no longer opens a page.
    let csrf = page.csrf_token();
    let out = browser
        .post("/console/logout", &[("csrf_token", csrf.as_str())])
        .await;
    assert_eq!((out.status, out.location()), (303, "/console/login"));
    assert!(!browser.cookies.contains_key("mandate_session"));
    browser.cookies.insert("mandate_session".into(), token);
    let after = browser.get("/console/claims").await;
    assert_eq!(after.status, 303);
    assert!(after.location().starts_with("/console/login"));
}

#[tokio::test(flavor = "multi_thread")]
async fn forms_without_their_sessions_csrf_token_change_nothing() {
    let data = TempDir::new();
    let server = Server::start(&data.0, &Database::Sqlite).await;
    let api = server.api();
    let tenant = tenant(&api).await;
    let (orchestrator, _) = register_orchestrator(&api).await;
    let client = client_id(&api, &tenant, &orchestrator).await;
    let before = permissions(&api, &tenant.destination_key, &client).await;
    assert!(before.contains(&json!("create:outgoing")), "{before:?}");

    let mut mine = Browser::new(&server.base);
    mine.sign_in(&tenant.destination_key).await;
    let mut other = Browser::new(&server.base);
    other.sign_in(&tenant.destination_key).await;
    let foreign = other.csrf_token().await;
    let withdraw = format!("/console/client-ids/{client}/withdraw");
    for fields in [
        vec![("permission", "create:outgoing")],
        vec![
            ("permission", "create:outgoing"),
            ("csrf_token", foreign.as_str()),
        ],
        vec![
            ("permission", "create:outgoing"),
            ("csrf_token", "0".repeat(64).as_str()),
        ],
    ] {
        let refused = mine.post(&withdraw, &fields).await;
        assert_eq!(refused.status, 403, "{fields:?}: {}", refused.body);
        assert_hardened(&refused);
    }
    let revoke = format!("/console/client-ids/{client}/revoke");
    let refused = mine.post(&revoke, &[("confirm", "yes")]).await;
    assert_eq!(refused.status, 403);
    assert_eq!(
        permissions(&api, &tenant.destination_key, &client).await,
        before,
        "nothing changed"
    );
    let state = api
        .get(&format!("/v1/client-ids/{client}"), &tenant.destination_key)
        .await;
    assert_eq!(state.body["status"], "active");

    // With its own session's token the same form does what it says.
    let csrf = mine.csrf_token().await;
    let done = mine
        .post(
            &withdraw,
            &[
                ("permission", "create:outgoing"),
                ("csrf_token", csrf.as_str()),
            ],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.location(), format!("/console/client-ids/{client}"));
    let after = permissions(&api, &tenant.destination_key, &client).await;
    assert!(!after.contains(&json!("create:outgoing")), "{after:?}");
    let shown = mine.get(done.location()).await;
    assert!(
        shown.body.contains("Withdrew create:outgoing"),
        "{}",
        shown.body
    );

    // A revocation without its confirmation step is refused, in the API's wording.
    let unconfirmed = mine.post(&revoke, &[("csrf_token", csrf.as_str())]).await;
    assert_eq!(unconfirmed.status, 303);
    let shown = mine.get(unconfirmed.location()).await;
    assert!(
        shown.body.contains("confirm the revocation"),
        "{}",
        shown.body
    );
    let state = api
        .get(&format!("/v1/client-ids/{client}"), &tenant.destination_key)
        .await;
    assert_eq!(state.body["status"], "active");
}

#[tokio::test(flavor = "multi_thread")]
async fn another_destinations_objects_are_not_found() {
    let data = TempDir::new();
    let server = Server::start(&data.0, &Database::Sqlite).await;
    let api = server.api();
    let mine = tenant(&api).await;
    let theirs = tenant(&api).await;
    let (service, orchestrator_key) = register_orchestrator(&api).await;
    let their_client = client_id(&api, &theirs, &service).await;
    let namespace = destination_slug(&api, &theirs.destination_key, &theirs.destination_id).await;
    let their_claim = submit_claim(&api, &orchestrator_key, &service, &namespace).await;
    let endpoint = api
        .post(
            "/v1/webhook-endpoints",
            &theirs.destination_key,
            json!({"url": "https://93.184.216.34/hook"}),
        )
        .await;
    assert_eq!(endpoint.status, 201, "{}", endpoint.body);
    let their_endpoint = endpoint.body["id"].as_str().unwrap().to_owned();

    let request = |key: String| {
        let api = &api;
        async move {
            let created = api
                .post(
                    "/v1/requests",
                    &key,
                    json!({"direction": "incoming", "amount": "42.50", "currency": "EUR"}),
                )
                .await;
            assert_eq!(created.status, 201, "{}", created.body);
            created.body["id"].as_str().unwrap().to_owned()
        }
    };
    let my_request = request(mine.destination_key.clone()).await;
    let their_request = request(theirs.destination_key.clone()).await;

    let mut browser = Browser::new(&server.base);
    browser.sign_in(&mine.destination_key).await;
    let csrf = browser.csrf_token().await;
    let requests = browser.get("/console/requests").await;
    assert_eq!(requests.status, 200, "{}", requests.body);
    assert!(requests.body.contains(&my_request), "{}", requests.body);
    assert!(!requests.body.contains(&their_request));
    let paid = browser
        .get("/console/requests?direction=&status=paid")
        .await;
    assert!(!paid.body.contains(&my_request), "the API's filters apply");
    let detail = browser
        .get(&format!("/console/requests/{my_request}"))
        .await;
    assert_eq!(detail.status, 200, "{}", detail.body);
    assert!(detail.body.contains("42.50"), "{}", detail.body);
    for path in [
        format!("/console/requests/{their_request}"),
        format!("/console/claims/{their_claim}"),
        format!("/console/client-ids/{their_client}"),
        format!("/console/client-ids/{their_client}/revoke"),
        format!("/console/webhooks/{their_endpoint}"),
    ] {
        let page = browser.get(&path).await;
        assert_eq!(page.status, 404, "{path}: {}", page.body);
    }
    for (path, fields) in [
        (
            format!("/console/claims/{their_claim}/approve"),
            vec![("permissions", "create:incoming")],
        ),
        (format!("/console/claims/{their_claim}/reject"), vec![]),
        (
            format!("/console/client-ids/{their_client}/withdraw"),
            vec![("permission", "create:outgoing")],
        ),
        (
            format!("/console/client-ids/{their_client}/revoke"),
            vec![("confirm", "yes")],
        ),
    ] {
        let mut fields = fields;
        fields.push(("csrf_token", csrf.as_str()));
        let refused = browser.post(&path, &fields).await;
        assert_eq!(refused.status, 404, "{path}: {}", refused.body);
    }
    let claim = api
        .get(
            &format!("/v1/claims/{their_claim}"),
            &theirs.destination_key,
        )
        .await;
    assert_eq!(claim.body["status"], "pending");
    let client = api
        .get(
            &format!("/v1/client-ids/{their_client}"),
            &theirs.destination_key,
        )
        .await;
    assert_eq!(client.body["status"], "active");
    assert_eq!(client.body["permissions"].as_array().unwrap().len(), 2);
    // Nor does a list show them.
    let claims = browser.get("/console/claims").await;
    assert!(!claims.body.contains(&their_claim));
    let clients = browser.get("/console/client-ids").await;
    assert!(!clients.body.contains(&their_client));
}

#[tokio::test(flavor = "multi_thread")]
async fn revoking_the_key_ends_its_sessions_at_once() {
    let data = TempDir::new();
    let server = Server::start(&data.0, &Database::Sqlite).await;
    let api = server.api();
    let tenant = tenant(&api).await;
    let second = api
        .post(
            &format!("/v1/destinations/{}/keys", tenant.destination_id),
            &tenant.platform_key,
            json!({}),
        )
        .await;
    assert_eq!(second.status, 201, "{}", second.body);
    let key = second.body["key"].as_str().unwrap();
    let key_id = second.body["id"].as_str().unwrap();

    let mut browser = Browser::new(&server.base);
    browser.sign_in(key).await;
    assert_eq!(browser.get("/console/claims").await.status, 200);
    let revoked = api
        .send(
            "DELETE",
            &format!("/v1/destinations/{}/keys/{key_id}", tenant.destination_id),
            Some(&tenant.platform_key),
            None,
            &[],
        )
        .await;
    assert!(revoked.status < 300, "{}", revoked.body);
    let next = browser.get("/console/claims").await;
    assert_eq!(next.status, 303);
    assert!(
        next.location().starts_with("/console/login"),
        "{}",
        next.location()
    );
    assert!(!browser.cookies.contains_key("mandate_session"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claim_is_approved_narrower_from_its_review_link() {
    let data = TempDir::new();
    let server = Server::start(&data.0, &Database::Sqlite).await;
    let api = server.api();
    let tenant = tenant(&api).await;
    let (service, orchestrator_key) = register_orchestrator(&api).await;
    let namespace = destination_slug(&api, &tenant.destination_key, &tenant.destination_id).await;
    let claim = submit_claim(&api, &orchestrator_key, &service, &namespace).await;

    // The owner's notification links to the decision.
    let events = api
        .get("/v1/events?type=claim.submitted", &tenant.destination_key)
        .await;
    assert_eq!(events.status, 200, "{}", events.body);
    let review_url = events.body["data"][0]["data"]["object"]["review_url"]
        .as_str()
        .unwrap_or_else(|| panic!("no review_url: {}", events.body))
        .to_owned();
    assert_eq!(review_url, server.url(&format!("/console/claims/{claim}")));

    let mut browser = Browser::new(&server.base);
    let path = review_url.strip_prefix(&server.base).unwrap();
    let to_login = browser.get(path).await;
    assert_eq!(to_login.status, 303);
    let form = browser.get(to_login.location()).await;
    let next = format!("name=\"next\" value=\"{path}\"");
    assert!(form.body.contains(&next), "{}", form.body);
    let signed_in = browser
        .post(
            "/console/login",
            &[("key", tenant.destination_key.as_str()), ("next", path)],
        )
        .await;
    assert_eq!(signed_in.location(), path);
    let page = browser.get(path).await;
    assert_eq!(page.status, 200, "{}", page.body);
    for shown in [
        "Invoice agent",
        "SHA256:",
        "203.0.113.7",
        &service,
        "create:outgoing",
        "0 of ",
    ] {
        assert!(page.body.contains(shown), "{shown}: {}", page.body);
    }

    // A wider set than requested is refused in the API's wording, and changes nothing.
    let csrf = page.csrf_token();
    let approve = format!("{path}/approve");
    let wider = browser
        .post(
            &approve,
            &[
                ("permissions", "customers:write"),
                ("csrf_token", csrf.as_str()),
            ],
        )
        .await;
    assert_eq!(wider.status, 303);
    let refused = browser.get(path).await;
    assert!(
        refused
            .body
            .contains("must be a subset of the permissions the claim requests"),
        "{}",
        refused.body
    );
    let state = api
        .get(&format!("/v1/claims/{claim}"), &tenant.destination_key)
        .await;
    assert_eq!(state.body["status"], "pending");

    let approved = browser
        .post(
            &approve,
            &[
                ("permissions", "create:incoming"),
                ("expires_at", "2099-01-31T18:00"),
                ("csrf_token", csrf.as_str()),
            ],
        )
        .await;
    assert_eq!(approved.status, 303, "{}", approved.body);
    let state = api
        .get(&format!("/v1/claims/{claim}"), &tenant.destination_key)
        .await;
    assert_eq!(state.body["status"], "approved", "{}", state.body);
    assert_eq!(state.body["permissions"], json!(["create:incoming"]));
    assert_eq!(state.body["expires_at"], "2099-01-31T18:00:00Z");
    let shown = browser.get(path).await;
    assert!(
        shown.body.contains("Approved Invoice agent"),
        "{}",
        shown.body
    );
    assert!(shown.body.contains("1 of "), "{}", shown.body);

    // The approval reaches the ledger (appended by housekeeping), which verifies.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let ledger = browser.get("/console/ledger").await;
        assert_eq!(ledger.status, 200, "{}", ledger.body);
        if ledger.body.contains(&claim) {
            assert!(
                ledger.body.contains("The chain verifies"),
                "{}",
                ledger.body
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the approval is not in the ledger: {}",
            ledger.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_sign_ins_are_throttled_per_address() {
    let data = TempDir::new();
    let mut command = support::mandate_command(&data.0, &Database::Sqlite);
    command
        .env("MANDATE__RATE_LIMIT__FAILED_AUTH_PER_MINUTE", "1")
        .env("MANDATE__RATE_LIMIT__FAILED_AUTH_BURST", "2");
    let server = Server::start_with(command, &data.0).await;
    let api = server.api();
    let tenant = tenant(&api).await;
    let mut browser = Browser::new(&server.base);
    for _ in 0..2 {
        let wrong = browser
            .post("/console/login", &[("key", "mnd_dest_guessed-key")])
            .await;
        assert_eq!(wrong.status, 401, "{}", wrong.body);
    }
    // Past its failures the address is refused before the key is even read: the right key too.
    let throttled = browser
        .post(
            "/console/login",
            &[("key", tenant.destination_key.as_str())],
        )
        .await;
    assert_eq!(throttled.status, 429, "{}", throttled.body);
    assert!(throttled.header("retry-after").parse::<u64>().unwrap() > 0);
    assert!(browser.cookies.is_empty());
    // The API shares the address's throttle.
    let api_call = api.get("/v1/claims", &tenant.destination_key).await;
    assert_eq!(api_call.status, 429, "{}", api_call.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_platform_picks_the_destination_of_a_client_id() {
    let data = TempDir::new();
    let server = Server::start(&data.0, &Database::Sqlite).await;
    let api = server.api();
    let tenant = tenant(&api).await;
    let (orchestrator, _) = register_orchestrator(&api).await;
    let mut browser = Browser::new(&server.base);
    browser.sign_in(&tenant.platform_key).await;
    let list = browser.get("/console/client-ids").await;
    assert_eq!(list.status, 200, "{}", list.body);
    let option = format!("<option value=\"{}\">", tenant.destination_id);
    assert!(list.body.contains(&option), "{}", list.body);
    let csrf = list.csrf_token();

    // Without a destination the API's refusal, in its words.
    let unnamed = browser
        .post(
            "/console/client-ids",
            &[
                ("orchestrator", orchestrator.as_str()),
                ("csrf_token", csrf.as_str()),
            ],
        )
        .await;
    assert_eq!(unnamed.status, 303);
    let refused = browser.get(unnamed.location()).await;
    assert!(
        refused.body.contains("X-Destination-Id is required"),
        "{}",
        refused.body
    );

    let issued = browser
        .post(
            "/console/client-ids",
            &[
                ("destination_id", tenant.destination_id.as_str()),
                ("orchestrator", orchestrator.as_str()),
                ("label", "Billing <runner>"),
                ("permissions", "create:incoming"),
                ("csrf_token", csrf.as_str()),
            ],
        )
        .await;
    assert_eq!(issued.status, 303, "{}", issued.body);
    let client = issued
        .location()
        .strip_prefix("/console/client-ids/")
        .unwrap()
        .to_owned();
    let shown = browser.get(issued.location()).await;
    assert!(
        shown.body.contains("Billing &lt;runner&gt;"),
        "escaped: {}",
        shown.body
    );
    let stored = api
        .get(&format!("/v1/client-ids/{client}"), &tenant.destination_key)
        .await;
    assert_eq!(stored.status, 200, "{}", stored.body);
    assert_eq!(
        stored.body["destination_id"],
        tenant.destination_id.as_str()
    );
    assert_eq!(stored.body["permissions"], json!(["create:incoming"]));
    assert_eq!(stored.body["label"], "Billing <runner>");
}

/// A redirect that carries a value shown once carries it sealed: not in its URL, not in clear
/// in its cookie.
fn assert_sealed(redirect: &Page, secret_marker: &str) {
    assert_eq!(redirect.status, 303, "{}", redirect.body);
    assert!(
        !redirect.location().contains(secret_marker),
        "{}",
        redirect.location()
    );
    for cookie in redirect.set_cookies() {
        assert!(!cookie.contains(secret_marker), "in clear: {cookie}");
    }
}

fn webhook_server(data: &TempDir) -> std::process::Command {
    let mut command = support::mandate_command(&data.0, &Database::Sqlite);
    command
        .env("MANDATE__WEBHOOKS__ALLOW_HTTP", "true")
        .env("MANDATE__WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true");
    command
}

#[tokio::test(flavor = "multi_thread")]
async fn webhook_endpoints_are_added_rotated_and_tested_with_secrets_shown_once() {
    use mandate_webhooks::WebhookSecret;
    use support::receiver::Receiver;

    let data = TempDir::new();
    let server = Server::start_with(webhook_server(&data), &data.0).await;
    let api = server.api();
    let mine = tenant(&api).await;
    let theirs = tenant(&api).await;
    let receiver = Receiver::start(&[]).await;
    let their_endpoint = api
        .post(
            "/v1/webhook-endpoints",
            &theirs.destination_key,
            json!({"url": receiver.url}),
        )
        .await;
    assert_eq!(their_endpoint.status, 201, "{}", their_endpoint.body);
    let their_endpoint = their_endpoint.body["id"].as_str().unwrap().to_owned();

    let mut browser = Browser::new(&server.base);
    browser.sign_in(&mine.destination_key).await;
    let list = browser.get("/console/webhooks").await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(list.body.contains("name=\"url\""), "{}", list.body);
    let csrf = list.csrf_token();

    // Without the session's token nothing is registered.
    let fields = [
        ("url", receiver.url.as_str()),
        ("event_types", "payment_request.* webhook.test"),
        ("description", "Books <main>"),
    ];
    let refused = browser.post("/console/webhooks", &fields).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let endpoints = api
        .get("/v1/webhook-endpoints", &mine.destination_key)
        .await;
    assert_eq!(endpoints.body["data"], json!([]), "{}", endpoints.body);

    // A refusal in the API's wording.
    let api_refusal = api
        .post(
            "/v1/webhook-endpoints",
            &mine.destination_key,
            json!({"url": receiver.url, "event_types": ["no.such"]}),
        )
        .await;
    assert_eq!(api_refusal.status, 400, "{}", api_refusal.body);
    let wording = api_refusal.body["error"]["message"].as_str().unwrap();
    let unknown = browser
        .post(
            "/console/webhooks",
            &[
                ("url", receiver.url.as_str()),
                ("event_types", "no.such"),
                ("csrf_token", csrf.as_str()),
            ],
        )
        .await;
    assert_eq!(unknown.location(), "/console/webhooks");
    let shown = browser.get("/console/webhooks").await;
    assert!(shown.body.contains(wording), "{wording}: {}", shown.body);

    // Registered: the secret on the next page only, and the one that signs.
    let mut with_csrf = fields.to_vec();
    with_csrf.push(("csrf_token", csrf.as_str()));
    let added = browser.post("/console/webhooks", &with_csrf).await;
    assert_sealed(&added, "whsec_");
    let endpoint = added
        .location()
        .strip_prefix("/console/webhooks/")
        .unwrap()
        .to_owned();
    let page = browser.get(added.location()).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let secret = page
        .revealed()
        .unwrap_or_else(|| panic!("no secret shown: {}", page.body));
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert!(page.body.contains("Books &lt;main&gt;"), "{}", page.body);
    let again = browser.get(added.location()).await;
    assert_eq!(again.revealed(), None, "a secret shows once");
    assert!(!again.body.contains(&secret));
    let stored = api
        .get(
            &format!("/v1/webhook-endpoints/{endpoint}"),
            &mine.destination_key,
        )
        .await;
    assert_eq!(stored.status, 200, "{}", stored.body);
    assert_eq!(
        stored.body["event_types"],
        json!(["payment_request.*", "webhook.test"])
    );
    assert_eq!(stored.body["url"], receiver.url.as_str());

    // Rotated: a new secret, shown once; the old one signs alongside for the grace period.
    let csrf = page.csrf_token();
    let rotate = format!("/console/webhooks/{endpoint}/rotate-secret");
    let refused = browser.post(&rotate, &[]).await;
    assert_eq!(refused.status, 403);
    let rotated = browser
        .post(&rotate, &[("csrf_token", csrf.as_str())])
        .await;
    assert_sealed(&rotated, "whsec_");
    assert_eq!(rotated.location(), format!("/console/webhooks/{endpoint}"));
    let page = browser.get(rotated.location()).await;
    let new_secret = page
        .revealed()
        .unwrap_or_else(|| panic!("no secret: {}", page.body));
    assert!(new_secret.starts_with("whsec_") && new_secret != secret);

    // A test event, to this endpoint only, signed with both secrets.
    let test = format!("/console/webhooks/{endpoint}/test");
    assert_eq!(browser.post(&test, &[]).await.status, 403);
    let tested = browser.post(&test, &[("csrf_token", csrf.as_str())]).await;
    assert_eq!(tested.status, 303, "{}", tested.body);
    let page = browser.get(tested.location()).await;
    assert!(
        page.body.contains("Sent a webhook.test event"),
        "{}",
        page.body
    );
    receiver
        .wait_for(
            std::time::Duration::from_secs(20),
            "the test event",
            |received| received.iter().any(|r| r.body.contains("webhook.test")),
        )
        .await;
    let delivered = receiver
        .received()
        .into_iter()
        .find(|r| r.body.contains("webhook.test"))
        .unwrap();
    let timestamp: i64 = delivered.timestamp.parse().unwrap();
    for secret in [&secret, &new_secret] {
        let expected = WebhookSecret::parse(secret).unwrap().sign(
            &delivered.webhook_id,
            timestamp,
            delivered.body.as_bytes(),
        );
        assert!(
            delivered.signature.split(' ').any(|part| part == expected),
            "not signed with {secret}: {}",
            delivered.signature
        );
    }
    let deliveries = api
        .get(
            &format!("/v1/webhook-endpoints/{endpoint}/deliveries"),
            &mine.destination_key,
        )
        .await;
    assert_eq!(deliveries.body["data"].as_array().unwrap().len(), 1);

    // Another destination's endpoint is not found, and stays as it was.
    for action in ["rotate-secret", "test"] {
        let path = format!("/console/webhooks/{their_endpoint}/{action}");
        let refused = browser.post(&path, &[("csrf_token", csrf.as_str())]).await;
        assert_eq!(refused.status, 404, "{path}: {}", refused.body);
    }
    let theirs_now = api
        .get(
            &format!("/v1/webhook-endpoints/{their_endpoint}/deliveries"),
            &theirs.destination_key,
        )
        .await;
    assert_eq!(theirs_now.body["data"], json!([]), "{}", theirs_now.body);
    let listed = browser.get("/console/webhooks").await;
    assert!(listed.body.contains(&endpoint));
    assert!(!listed.body.contains(&their_endpoint));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_page_shows_its_payments_and_events_and_takes_new_ones() {
    let data = TempDir::new();
    let server = Server::start(&data.0, &Database::Sqlite).await;
    let api = server.api();
    let mine = tenant(&api).await;
    let theirs = tenant(&api).await;
    let create = |key: String| {
        let api = &api;
        async move {
            let created = api
                .post(
                    "/v1/requests",
                    &key,
                    json!({"direction": "incoming", "amount": "42.50", "currency": "EUR"}),
                )
                .await;
            assert_eq!(created.status, 201, "{}", created.body);
            created.body["id"].as_str().unwrap().to_owned()
        }
    };
    let request = create(mine.destination_key.clone()).await;
    let their_request = create(theirs.destination_key.clone()).await;
    let path = format!("/console/requests/{request}");

    let mut browser = Browser::new(&server.base);
    browser.sign_in(&mine.destination_key).await;
    let page = browser.get(&path).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("payment_request.created"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("No payment recorded yet."),
        "{}",
        page.body
    );
    let csrf = page.csrf_token();
    let payments = format!("{path}/payments");
    let links = format!("{path}/payment-links");

    // Without the session's token nothing is recorded or linked.
    let refused = browser
        .post(&payments, &[("amount", "20.00"), ("reference", "bank-1")])
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(browser.post(&links, &[]).await.status, 403);
    let api_view = api
        .get(&format!("/v1/requests/{request}"), &mine.destination_key)
        .await;
    assert_eq!(api_view.body["amount_paid"], "0.00", "{}", api_view.body);

    // A wrong amount is refused in the API's words.
    let api_refusal = api
        .post(
            &format!("/v1/requests/{request}/payments"),
            &mine.destination_key,
            json!({"amount": "20,00", "reference": "bank-1"}),
        )
        .await;
    assert_eq!(api_refusal.status, 400, "{}", api_refusal.body);
    let wording = api_refusal.body["error"]["message"].as_str().unwrap();
    let wrong = browser
        .post(
            &payments,
            &[
                ("amount", "20,00"),
                ("reference", "bank-1"),
                ("csrf_token", csrf.as_str()),
            ],
        )
        .await;
    assert_eq!(wrong.location(), path);
    let shown = browser.get(&path).await;
    assert!(shown.body.contains(wording), "{wording}: {}", shown.body);

    // A payment: through the API's use case, on the page with its event.
    let recorded = browser
        .post(
            &payments,
            &[
                ("amount", "20.25"),
                ("reference", "bank-ref-1"),
                ("paid_at", "2026-01-31T18:00"),
                ("csrf_token", csrf.as_str()),
            ],
        )
        .await;
    assert_eq!((recorded.status, recorded.location()), (303, path.as_str()));
    let api_view = api
        .get(&format!("/v1/requests/{request}"), &mine.destination_key)
        .await;
    assert_eq!(api_view.body["amount_paid"], "20.25", "{}", api_view.body);
    assert_eq!(api_view.body["status"], "partially_paid");
    let page = browser.get(&path).await;
    for shown in [
        "Recorded payment pay_",
        "bank-ref-1",
        "20.25 EUR",
        "payment_request.partially_paid",
        "2026-01-31T18:00:00Z",
    ] {
        assert!(page.body.contains(shown), "{shown}: {}", page.body);
    }

    // A payment link: the address on the next page only, and it opens the payer's page.
    let linked = browser
        .post(
            &links,
            &[
                ("expires_in_seconds", "86400"),
                ("csrf_token", csrf.as_str()),
            ],
        )
        .await;
    assert_sealed(&linked, "/pay/");
    let page = browser.get(&path).await;
    let url = page
        .revealed()
        .unwrap_or_else(|| panic!("no link: {}", page.body));
    let payer_path = url.strip_prefix(&server.base).unwrap();
    assert!(payer_path.starts_with("/pay/"), "{url}");
    // The destination has no payment address yet: the page says so beside the link, as the
    // API's answer warns.
    assert!(
        page.body.contains(
            "Warning: NO_PAYMENT_ADDRESS: the destination has no payment_address: the page asks \
             the payer to contact the destination instead"
        ),
        "{}",
        page.body
    );
    assert_eq!(
        browser.get(&path).await.revealed(),
        None,
        "a link shows once"
    );
    let patched = api
        .send(
            "PATCH",
            &format!("/v1/destinations/{}", mine.destination_id),
            Some(&mine.destination_key),
            Some(json!({"payment_address": "eip155:8453:0x52908400098527886E0F7030069857D2E4169EE7"})),
            &[],
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    let linked = browser.post(&links, &[("csrf_token", csrf.as_str())]).await;
    assert_eq!(linked.status, 303, "{}", linked.body);
    let page = browser.get(&path).await;
    assert!(page.revealed().is_some(), "{}", page.body);
    assert!(!page.body.contains("NO_PAYMENT_ADDRESS"), "{}", page.body);
    let payer = api.client.get(&url).send().await.unwrap();
    assert_eq!(payer.status(), 200);
    assert!(payer.text().await.unwrap().contains("42.50"));
    let too_long = browser
        .post(
            &links,
            &[
                ("expires_in_seconds", "2592001"),
                ("csrf_token", csrf.as_str()),
            ],
        )
        .await;
    assert_eq!(too_long.status, 303);
    let shown = browser.get(&path).await;
    assert!(
        shown.body.contains("must be between 1 and 2592000"),
        "{}",
        shown.body
    );

    // Another destination's request is not found, and takes nothing.
    let their_path = format!("/console/requests/{their_request}");
    for (action, fields) in [
        ("payments", vec![("amount", "1"), ("reference", "x-1")]),
        ("payment-links", vec![]),
    ] {
        let mut fields = fields;
        fields.push(("csrf_token", csrf.as_str()));
        let refused = browser
            .post(&format!("{their_path}/{action}"), &fields)
            .await;
        assert_eq!(refused.status, 404, "{action}: {}", refused.body);
    }
    let theirs_now = api
        .get(
            &format!("/v1/requests/{their_request}"),
            &theirs.destination_key,
        )
        .await;
    assert_eq!(
        theirs_now.body["amount_paid"], "0.00",
        "{}",
        theirs_now.body
    );
    let their_events = api
        .get("/v1/events?type=payment_request.*", &theirs.destination_key)
        .await;
    assert_eq!(
        their_events.body["data"].as_array().unwrap().len(),
        1,
        "{}",
        their_events.body
    );
}
