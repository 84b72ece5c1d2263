//! OAuth 2.0 client credentials end to end: an orchestrator exchanges its key and a client ID
//! for an access token (form, JSON or HTTP Basic), acts with it, and loses exactly what the
//! destination owner takes away on the very next request; anyone can check a token's
//! signature against the published JWKS.

// Test helpers outside #[test] functions: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use support::{ADMIN_TOKEN, Api, Database, FreshDatabase, Reply, Server, TempDir, Tenant, tenant};

const TOKEN_PATH: &str = "/v1/oauth/token";
const FORM: &str = "application/x-www-form-urlencoded";

/// A destination, an orchestrator and the client ID the destination issued to it.
struct Fixture {
    // Declared first so the server stops before its data directory is removed.
    server: Server,
    _data: TempDir,
    api: Api,
    tenant: Tenant,
    orchestrator_key: String,
    client_id: String,
}

async fn orchestrator(api: &Api) -> (String, String) {
    let slug = format!("agents-{}", support::random_hex(4));
    let created = api
        .post(
            "/v1/admin/orchestrators",
            ADMIN_TOKEN,
            json!({"slug": slug, "name": "Agents"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    (slug, created.body["api_key"].as_str().unwrap().to_owned())
}

async fn issue_client_id(api: &Api, destination_key: &str, slug: &str) -> String {
    let created = api
        .post(
            "/v1/client-ids",
            destination_key,
            json!({"orchestrator": slug}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("cli_"), "{id}");
    id
}

async fn fixture() -> Fixture {
    let data = TempDir::new();
    let server = Server::start(&data.0, &Database::Sqlite).await;
    fixture_on(server, data).await
}

async fn fixture_on(server: Server, data: TempDir) -> Fixture {
    let api = server.api();
    let tenant = tenant(&api).await;
    let (slug, orchestrator_key) = orchestrator(&api).await;
    let client_id = issue_client_id(&api, &tenant.destination_key, &slug).await;
    Fixture {
        server,
        _data: data,
        api,
        tenant,
        orchestrator_key,
        client_id,
    }
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                (byte as char).to_string()
            }
            b' ' => "+".to_owned(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn form_body(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(name, value)| format!("{}={}", form_encode(name), form_encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `Authorization: Basic …` as RFC 6749 §2.3.1 builds it: each part form-encoded first.
fn basic(client_id: &str, secret: &str) -> String {
    let joined = format!("{}:{}", form_encode(client_id), form_encode(secret));
    format!("Basic {}", STANDARD.encode(joined))
}

async fn reply(response: reqwest::Response) -> Reply {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Reply {
        status,
        body,
        headers,
    }
}

/// A raw token request: `body` sent with `content_type`, plus an optional Authorization.
async fn token_raw(
    server: &Server,
    content_type: Option<&str>,
    body: String,
    authorization: Option<&str>,
) -> Reply {
    let mut request = reqwest::Client::new()
        .post(server.url(TOKEN_PATH))
        .body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    reply(request.send().await.unwrap()).await
}

async fn token_form(server: &Server, pairs: &[(&str, &str)], authorization: Option<&str>) -> Reply {
    token_raw(server, Some(FORM), form_body(pairs), authorization).await
}

async fn token_json(server: &Server, body: Value) -> Reply {
    token_raw(server, Some("application/json"), body.to_string(), None).await
}

impl Fixture {
    fn credentials(&self) -> [(&str, &str); 3] {
        self.credentials_with(&self.orchestrator_key)
    }

    /// The grant's form fields with the orchestrator key `secret`.
    fn credentials_with<'a>(&'a self, secret: &'a str) -> [(&'a str, &'a str); 3] {
        [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", secret),
        ]
    }

    /// Another key of the orchestrator: its id and its secret.
    async fn second_key(&self) -> (String, String) {
        let second = self
            .api
            .post("/v1/orchestrator/keys", &self.orchestrator_key, json!({}))
            .await;
        assert_eq!(second.status, 201, "{}", second.body);
        (
            second.body["id"].as_str().unwrap().to_owned(),
            second.body["key"].as_str().unwrap().to_owned(),
        )
    }

    /// A token by the form grant, optionally with a narrower scope.
    async fn token(&self, scope: Option<&str>) -> String {
        let mut pairs = self.credentials().to_vec();
        if let Some(scope) = scope {
            pairs.push(("scope", scope));
        }
        granted(&token_form(&self.server, &pairs, None).await)
    }

    async fn create_request(&self, token: &str, direction: &str) -> Reply {
        self.api
            .post(
                "/v1/requests",
                token,
                json!({"direction": direction, "amount": "10", "currency": "USD"}),
            )
            .await
    }
}

/// The access token of a successful token response, after checking the response's shape.
fn granted(reply: &Reply) -> String {
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["token_type"], "Bearer");
    assert_eq!(reply.body["expires_in"], 900);
    assert_eq!(
        reply
            .headers
            .get("cache-control")
            .unwrap()
            .to_str()
            .unwrap(),
        "no-store"
    );
    reply.body["access_token"].as_str().unwrap().to_owned()
}

/// An RFC 6749 §5.2 error: its status and `error`, with a description.
fn oauth_error(reply: &Reply) -> (u16, &str) {
    assert!(
        reply.body["error_description"].is_string(),
        "{}",
        reply.body
    );
    (
        reply.status,
        reply.body["error"].as_str().unwrap_or("<none>"),
    )
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn header(token: &str) -> Value {
    let header = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_from_form_json_and_basic_act_as_the_client_id() {
    let fx = fixture().await;
    let by_form = granted(&token_form(&fx.server, &fx.credentials(), None).await);
    let by_json = granted(
        &token_json(
            &fx.server,
            json!({"grant_type": "client_credentials", "client_id": fx.client_id,
                "client_secret": fx.orchestrator_key}),
        )
        .await,
    );
    let by_basic = granted(
        &token_form(
            &fx.server,
            &[("grant_type", "client_credentials")],
            Some(&basic(&fx.client_id, &fx.orchestrator_key)),
        )
        .await,
    );
    let full_scope = token_form(&fx.server, &fx.credentials(), None).await;
    assert_eq!(full_scope.body["scope"], "create:incoming create:outgoing");

    for token in [&by_form, &by_json, &by_basic] {
        let claims = claims(token);
        assert_eq!(claims["sub"], fx.client_id.as_str());
        assert_eq!(claims["aud"], "mandate");
        assert_eq!(claims["dst"], fx.tenant.destination_id.as_str());
        assert!(claims["orc"].as_str().unwrap().starts_with("orc_"));
        assert_eq!(claims["ver"], 1);
        assert_eq!(claims["scope"], "create:incoming create:outgoing");
        assert!(claims["jti"].is_string());
        let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
        assert!(lifetime > 0 && lifetime <= 900, "{lifetime}");
        assert_eq!(header(token)["alg"], "EdDSA");

        let listed = fx.api.get("/v1/requests", token).await;
        assert_eq!(listed.status, 200, "{}", listed.body);
        let created = fx.create_request(token, "incoming").await;
        assert_eq!(created.status, 201, "{}", created.body);
        assert_eq!(created.body["client_id"], fx.client_id.as_str());
        assert_eq!(
            created.body["destination_id"],
            fx.tenant.destination_id.as_str()
        );
    }
    let claims_of = |token: &str| claims(token)["jti"].clone();
    assert_ne!(claims_of(&by_form), claims_of(&by_json));

    // A client token is a client, not its orchestrator.
    let profile = fx.api.get("/v1/orchestrator", &by_form).await;
    assert_eq!((profile.status, profile.code()), (403, "FORBIDDEN"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_narrower_scope_limits_the_token_and_a_wider_one_is_refused() {
    let fx = fixture().await;
    let narrow = token_form(
        &fx.server,
        &[fx.credentials().as_slice(), &[("scope", "create:outgoing")]].concat(),
        None,
    )
    .await;
    let token = granted(&narrow);
    assert_eq!(narrow.body["scope"], "create:outgoing");
    let incoming = fx.create_request(&token, "incoming").await;
    assert_eq!((incoming.status, incoming.code()), (403, "FORBIDDEN"));
    assert_eq!(fx.create_request(&token, "outgoing").await.status, 201);

    for scope in [
        "read:incoming",
        "create:incoming read:outgoing",
        "launch:missiles",
    ] {
        let refused = token_form(
            &fx.server,
            &[fx.credentials().as_slice(), &[("scope", scope)]].concat(),
            None,
        )
        .await;
        assert_eq!(oauth_error(&refused), (400, "invalid_scope"), "{scope}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_client_credentials_get_rfc6749_errors() {
    let fx = fixture().await;
    let server = &fx.server;
    let (_, other_key) = orchestrator(&fx.api).await;
    let grant = |client_id: &str, secret: &str| {
        form_body(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
        ])
    };
    let invalid_client = [
        // Wrong secret, another orchestrator's key, a destination key, unknown client IDs.
        grant(
            &fx.client_id,
            "mnd_orch_wrongwrongwrongwrongwrongwrongwrongwr",
        ),
        grant(&fx.client_id, &other_key),
        grant(&fx.client_id, &fx.tenant.destination_key),
        grant("cli_01ARZ3NDEKTSV4RRFFQ69G5FAV", &fx.orchestrator_key),
        grant("not-a-client-id", &fx.orchestrator_key),
        // No client authentication at all.
        form_body(&[("grant_type", "client_credentials")]),
    ];
    for body in invalid_client {
        let refused = token_raw(server, Some(FORM), body.clone(), None).await;
        assert_eq!(oauth_error(&refused), (401, "invalid_client"), "{body}");
        assert!(refused.body.get("access_token").is_none());
    }

    // Basic with a wrong secret: 401 with a Basic challenge.
    let refused = token_form(
        server,
        &[("grant_type", "client_credentials")],
        Some(&basic(&fx.client_id, &other_key)),
    )
    .await;
    assert_eq!(oauth_error(&refused), (401, "invalid_client"));
    let challenge = refused.headers.get("www-authenticate").unwrap();
    assert!(
        challenge.to_str().unwrap().starts_with("Basic"),
        "{challenge:?}"
    );

    let invalid_request = [
        (
            FORM,
            form_body(&[
                ("client_id", &fx.client_id),
                ("client_secret", &fx.orchestrator_key),
            ]),
        ),
        (
            FORM,
            form_body(&[
                ("grant_type", "client_credentials"),
                ("client_id", &fx.client_id),
            ]),
        ),
        (
            FORM,
            format!(
                "{}&grant_type=client_credentials",
                grant(&fx.client_id, &fx.orchestrator_key)
            ),
        ),
        ("application/json", "{not json".to_owned()),
        (
            "application/json",
            json!({"grant_type": "client_credentials", "client_id": 5}).to_string(),
        ),
        ("text/plain", grant(&fx.client_id, &fx.orchestrator_key)),
    ];
    for (content_type, body) in invalid_request {
        let refused = token_raw(server, Some(content_type), body.clone(), None).await;
        assert_eq!(oauth_error(&refused), (400, "invalid_request"), "{body}");
    }
    // Basic and body credentials together.
    let both = token_form(
        server,
        &fx.credentials(),
        Some(&basic(&fx.client_id, &fx.orchestrator_key)),
    )
    .await;
    assert_eq!(oauth_error(&both), (400, "invalid_request"));

    let password = token_form(
        server,
        &[
            ("grant_type", "password"),
            ("username", "a"),
            ("password", "b"),
        ],
        Some(&basic(&fx.client_id, &fx.orchestrator_key)),
    )
    .await;
    assert_eq!(oauth_error(&password), (400, "unsupported_grant_type"));

    // The right credentials still work after all of that.
    granted(&token_form(server, &fx.credentials(), None).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_and_tampered_tokens_are_unauthenticated() {
    let fx = fixture().await;
    let token = fx.token(None).await;
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();

    // Tampered: scope widened in the payload, signature kept.
    let mut widened = claims(&token);
    widened["scope"] = "create:incoming create:outgoing read:incoming read:outgoing".into();
    parts[1] = URL_SAFE_NO_PAD.encode(widened.to_string());
    let tampered = parts.join(".");
    // Forged: the same claims and kid, signed by a key of our own.
    let forger = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
    let signing_input = format!("{}.{}", parts[0], parts[1]);
    let signature = ed25519_dalek::Signer::sign(&forger, signing_input.as_bytes());
    let forged = format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    );
    // alg none.
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"at+jwt"}"#),
        parts[1]
    );

    for bad in [&tampered, &forged, &none] {
        let refused = fx.api.get("/v1/requests", bad).await;
        assert_eq!(
            (refused.status, refused.code()),
            (401, "UNAUTHENTICATED"),
            "{bad}"
        );
    }
    assert_eq!(fx.api.get("/v1/requests", &token).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn revoking_the_client_id_stops_issued_tokens_on_the_next_request() {
    let fx = fixture().await;
    let token = fx.token(None).await;
    assert_eq!(fx.api.get("/v1/requests", &token).await.status, 200);
    let revoked = fx
        .api
        .post(
            &format!("/v1/client-ids/{}/revoke", fx.client_id),
            &fx.tenant.destination_key,
            json!({}),
        )
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    let refused = fx.api.get("/v1/requests", &token).await;
    assert_eq!((refused.status, refused.code()), (401, "UNAUTHENTICATED"));
    let create = fx.create_request(&token, "outgoing").await;
    assert_eq!((create.status, create.code()), (401, "UNAUTHENTICATED"));
    // And no new token for it.
    let again = token_form(&fx.server, &fx.credentials(), None).await;
    assert_eq!(oauth_error(&again), (401, "invalid_client"));
}

#[tokio::test(flavor = "multi_thread")]
async fn revoking_the_orchestrator_key_stops_its_tokens_on_the_next_request() {
    let fx = fixture().await;
    // A second key of the same orchestrator mints a token; the first stays to revoke it.
    let (second_id, second_key) = fx.second_key().await;
    let pairs = fx.credentials_with(&second_key);
    let doomed = granted(&token_form(&fx.server, &pairs, None).await);
    let kept = fx.token(None).await;
    assert_eq!(fx.create_request(&doomed, "outgoing").await.status, 201);

    let revoked = fx
        .api
        .send(
            "DELETE",
            &format!("/v1/orchestrator/keys/{second_id}"),
            Some(&fx.orchestrator_key),
            None,
            &[],
        )
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);

    // The very next request with the token the revoked key minted is refused …
    let create = fx.create_request(&doomed, "outgoing").await;
    assert_eq!((create.status, create.code()), (401, "UNAUTHENTICATED"));
    let read = fx.api.get("/v1/requests", &doomed).await;
    assert_eq!((read.status, read.code()), (401, "UNAUTHENTICATED"));
    // … while a token of the orchestrator's other key still works, and the revoked key mints
    // no new one.
    assert_eq!(fx.create_request(&kept, "outgoing").await.status, 201);
    let again = token_form(&fx.server, &pairs, None).await;
    assert_eq!(oauth_error(&again), (401, "invalid_client"));
}

#[tokio::test(flavor = "multi_thread")]
async fn withdrawing_a_permission_narrows_issued_tokens_on_the_next_request() {
    let fx = fixture().await;
    let token = fx.token(None).await;
    assert_eq!(fx.create_request(&token, "incoming").await.status, 201);
    let withdrawn = fx
        .api
        .send(
            "DELETE",
            &format!(
                "/v1/client-ids/{}/permissions/create:incoming",
                fx.client_id
            ),
            Some(&fx.tenant.destination_key),
            None,
            &[],
        )
        .await;
    assert_eq!(withdrawn.status, 200, "{}", withdrawn.body);
    let incoming = fx.create_request(&token, "incoming").await;
    assert_eq!((incoming.status, incoming.code()), (403, "FORBIDDEN"));
    assert_eq!(fx.create_request(&token, "outgoing").await.status, 201);
    // A new token gets only what is left, and cannot ask for more.
    let fresh = token_form(&fx.server, &fx.credentials(), None).await;
    assert_eq!(fresh.body["scope"], "create:outgoing");
    assert_eq!(claims(&granted(&fresh))["ver"], 2);
    let wider = token_form(
        &fx.server,
        &[fx.credentials().as_slice(), &[("scope", "create:incoming")]].concat(),
        None,
    )
    .await;
    assert_eq!(oauth_error(&wider), (400, "invalid_scope"));
    // Granting it back restores it for the token issued before the withdrawal.
    let granted_back = fx
        .api
        .post(
            &format!("/v1/client-ids/{}/permissions", fx.client_id),
            &fx.tenant.destination_key,
            json!({"permission": "create:incoming"}),
        )
        .await;
    assert_eq!(granted_back.status, 200, "{}", granted_back.body);
    assert_eq!(fx.create_request(&token, "incoming").await.status, 201);
}

/// Checks `token`'s signature with nothing but the JWKS and an Ed25519 implementation.
fn verify_with_jwks(jwks: &Value, token: &str) -> Result<(), String> {
    let kid = header(token)["kid"].clone();
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["kid"] == kid)
        .ok_or("no key with the token's kid")?;
    assert_eq!(
        (&key["kty"], &key["crv"], &key["alg"]),
        (&json!("OKP"), &json!("Ed25519"), &json!("EdDSA"))
    );
    let x: [u8; 32] = URL_SAFE_NO_PAD
        .decode(key["x"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let public = ed25519_dalek::VerifyingKey::from_bytes(&x).map_err(|e| e.to_string())?;
    let (signing_input, signature) = token.rsplit_once('.').unwrap();
    let signature: [u8; 64] = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|e| e.to_string())?
        .try_into()
        .map_err(|_| "the signature is not 64 bytes")?;
    public
        .verify_strict(
            signing_input.as_bytes(),
            &ed25519_dalek::Signature::from_bytes(&signature),
        )
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_public_jwks_verifies_tokens_independently() {
    let fx = fixture().await;
    let token = fx.token(None).await;
    // Public: no credential needed.
    let jwks = reqwest::get(fx.server.url("/.well-known/jwks.json"))
        .await
        .unwrap();
    let jwks = reply(jwks).await;
    assert_eq!(jwks.status, 200, "{}", jwks.body);
    let key = &jwks.body["keys"][0];
    assert_eq!(key["use"], "sig");
    assert_eq!(header(&token)["kid"], key["kid"]);
    assert!(key.get("d").is_none(), "the private key is never published");
    verify_with_jwks(&jwks.body, &token).unwrap();

    let mut parts: Vec<&str> = token.split('.').collect();
    let mut widened = claims(&token);
    widened["scope"] = "read:incoming".into();
    let widened = URL_SAFE_NO_PAD.encode(widened.to_string());
    parts[1] = &widened;
    assert!(verify_with_jwks(&jwks.body, &parts.join(".")).is_err());

    // The key is kept across restarts, so tokens outlive a deploy.
    let data_dir = fx.server.data_dir.clone();
    let Fixture {
        mut server, _data, ..
    } = fx;
    server.stop();
    let restarted = Server::start(&data_dir, &Database::Sqlite).await;
    let again = reply(
        reqwest::get(restarted.url("/.well-known/jwks.json"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(again.body, jwks.body);
}

/// Two servers on `database`, with their data directories: replicas share the database, the
/// secrets and the public URL (the tokens' issuer).
async fn replicas(database: &FreshDatabase) -> (Server, TempDir, Server, TempDir) {
    let db = Database::Postgres(database.url.clone());
    let (data_one, data_two) = (TempDir::new(), TempDir::new());
    let key_hash_secret = support::random_hex(32);
    let signing_secret = support::random_hex(32);
    let command = |dir: &TempDir| {
        let mut command = support::mandate_command(&dir.0, &db);
        command
            .env("MANDATE__SECRETS__KEY_HASH_SECRET", &key_hash_secret)
            .env("MANDATE__SECRETS__TOKEN_SIGNING_KEY", &signing_secret)
            .env("MANDATE__SERVER__PUBLIC_URL", "https://mandate.test");
        command
    };
    let one = Server::start_with(command(&data_one), &data_one.0).await;
    let two = Server::start_with(command(&data_two), &data_two.0).await;
    (one, data_one, two, data_two)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_from_one_replica_works_and_is_revoked_on_another() {
    let database = FreshDatabase::create().await;
    let (one, data_one, two, data_two) = replicas(&database).await;
    let fx = fixture_on(one, data_one).await;
    let token = fx.token(None).await;
    assert_eq!(claims(&token)["iss"], "https://mandate.test");

    let api_two = two.api();
    assert_eq!(api_two.get("/v1/requests", &token).await.status, 200);
    let revoked = fx
        .api
        .post(
            &format!("/v1/client-ids/{}/revoke", fx.client_id),
            &fx.tenant.destination_key,
            json!({}),
        )
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    let refused = api_two.get("/v1/requests", &token).await;
    assert_eq!((refused.status, refused.code()), (401, "UNAUTHENTICATED"));
    drop(two);
    drop(data_two);
}

/// Reads the request `id` through `api` as the client ID: with `key` and `X-Client-Id`, and
/// with `token`; their statuses and error codes.
async fn read_as_client(
    api: &Api,
    id: &str,
    key: &str,
    client_id: &str,
    token: &str,
) -> [(u16, String); 2] {
    let path = format!("/v1/requests/{id}");
    let by_key = api
        .send("GET", &path, Some(key), None, &[("X-Client-Id", client_id)])
        .await;
    let by_token = api.get(&path, token).await;
    [by_key, by_token].map(|reply| {
        let code = if reply.status == 200 {
            reply.body["id"].as_str().unwrap_or("<no id>").to_owned()
        } else {
            reply.code().to_owned()
        };
        (reply.status, code)
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_by_id_through_another_replica_is_refused_on_the_next_request_after_a_revocation() {
    let database = FreshDatabase::create().await;
    let (one, data_one, two, data_two) = replicas(&database).await;
    let fx = fixture_on(one, data_one).await;
    let api_two = two.api();
    // A second key of the orchestrator, and a token it mints; the first key stays.
    let (second_id, second_key) = fx.second_key().await;
    let pairs = fx.credentials_with(&second_key);
    let permission_path = format!("/v1/client-ids/{}/permissions", fx.client_id);
    let granted_read = fx
        .api
        .post(
            &permission_path,
            &fx.tenant.destination_key,
            json!({"permission": "read:outgoing"}),
        )
        .await;
    assert_eq!(granted_read.status, 200, "{}", granted_read.body);
    // Minted after the grant: a token's scope is the client ID's permissions when it is issued.
    let token = granted(&token_form(&fx.server, &pairs, None).await);
    // The owner's request, which the client ID reads by its read:outgoing permission.
    let created = fx
        .create_request(&fx.tenant.destination_key, "outgoing")
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let read = || read_as_client(&api_two, &id, &second_key, &fx.client_id, &token);
    let found = (200, id.clone());
    assert_eq!(read().await, [found.clone(), found.clone()]);

    // The permission withdrawn through one replica: the other no longer shows the request.
    let withdrawn = fx
        .api
        .send(
            "DELETE",
            &format!("{permission_path}/read:outgoing"),
            Some(&fx.tenant.destination_key),
            None,
            &[],
        )
        .await;
    assert_eq!(withdrawn.status, 200, "{}", withdrawn.body);
    let not_found = (404, "NOT_FOUND".to_owned());
    assert_eq!(read().await, [not_found.clone(), not_found]);
    let granted_back = fx
        .api
        .post(
            &permission_path,
            &fx.tenant.destination_key,
            json!({"permission": "read:outgoing"}),
        )
        .await;
    assert_eq!(granted_back.status, 200, "{}", granted_back.body);
    assert_eq!(read().await, [found.clone(), found.clone()]);

    // The key revoked: it and the token it minted are refused; the other key still reads.
    let revoked_key = fx
        .api
        .send(
            "DELETE",
            &format!("/v1/orchestrator/keys/{second_id}"),
            Some(&fx.orchestrator_key),
            None,
            &[],
        )
        .await;
    assert_eq!(revoked_key.status, 200, "{}", revoked_key.body);
    let unauthenticated = (401, "UNAUTHENTICATED".to_owned());
    assert_eq!(
        read().await,
        [unauthenticated.clone(), unauthenticated.clone()]
    );
    let path = format!("/v1/requests/{id}");
    let acting = [("X-Client-Id", fx.client_id.as_str())];
    let by_first_key = || api_two.send("GET", &path, Some(&fx.orchestrator_key), None, &acting);
    assert_eq!(by_first_key().await.status, 200);

    // The client ID revoked: no key acts as it any more.
    let revoked_client = fx
        .api
        .post(
            &format!("/v1/client-ids/{}/revoke", fx.client_id),
            &fx.tenant.destination_key,
            json!({}),
        )
        .await;
    assert_eq!(revoked_client.status, 200, "{}", revoked_client.body);
    let refused = by_first_key().await;
    assert_eq!((refused.status, refused.code()), (403, "FORBIDDEN"));
    drop(two);
    drop(data_two);
}
