//! The real server over HTTP: onboarding, the authentication pipeline, errors, persistence.

// Test helpers outside #[test] functions: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use support::{ADMIN_TOKEN, Api, Database, FreshDatabase, Server, TempDir, tenant};

async fn onboarding_flow(api: &Api) {
    // Admin → organization (platform key) → destination → destination key.
    let tenant = tenant(api).await;
    assert!(tenant.platform_key.starts_with("mnd_plat_"));
    assert!(tenant.destination_key.starts_with("mnd_dest_"));
    let own = api
        .get(
            &format!("/v1/destinations/{}", tenant.destination_id),
            &tenant.destination_key,
        )
        .await;
    assert_eq!(own.status, 200, "{}", own.body);
    assert_eq!(own.body["organization_id"], tenant.organization_id.as_str());
    assert_eq!(own.body["max_agents"], 10);
    let listed = api.get("/v1/destinations", &tenant.platform_key).await;
    assert_eq!(listed.body["data"].as_array().map(Vec::len), Some(1));
    let organization = api.get("/v1/organization", &tenant.platform_key).await;
    assert_eq!(organization.body["id"], tenant.organization_id.as_str());

    // Admin → orchestrator (API key) → its profile → rotation with at most two active keys.
    let slug = format!("agents-{}", support::random_hex(4));
    let created = api
        .post(
            "/v1/admin/orchestrators",
            ADMIN_TOKEN,
            json!({"slug": slug, "name": "Agents"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let first_key = created.body["api_key"].as_str().unwrap().to_owned();
    let profile = api.get("/v1/orchestrator", &first_key).await;
    assert_eq!(profile.status, 200, "{}", profile.body);
    assert_eq!(profile.body["slug"], slug.as_str());
    let first_key_id = profile.body["keys"][0]["id"].as_str().unwrap().to_owned();
    assert!(
        profile.body["keys"][0].get("key").is_none(),
        "a listed key never shows the key"
    );

    let second = api
        .post("/v1/orchestrator/keys", &first_key, json!({}))
        .await;
    assert_eq!(second.status, 201, "{}", second.body);
    let second_key = second.body["key"].as_str().unwrap().to_owned();
    let third = api
        .post("/v1/orchestrator/keys", &second_key, json!({}))
        .await;
    assert_eq!((third.status, third.code()), (409, "CONFLICT"));
    let revoked = api
        .send(
            "DELETE",
            &format!("/v1/orchestrator/keys/{first_key_id}"),
            Some(&second_key),
            None,
            &[],
        )
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    assert!(revoked.body["revoked_at"].is_string());
    let refused = api.get("/v1/orchestrator", &first_key).await;
    assert_eq!((refused.status, refused.code()), (401, "UNAUTHENTICATED"));
    assert_eq!(api.get("/v1/orchestrator", &second_key).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn onboarding_works_over_http_on_sqlite() {
    let data = TempDir::new();
    let server = Server::start(&data.0, &Database::Sqlite).await;
    onboarding_flow(&server.api()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn onboarding_works_over_http_on_postgres() {
    let database = FreshDatabase::create().await;
    let data = TempDir::new();
    let server = Server::start(&data.0, &Database::Postgres(database.url.clone())).await;
    onboarding_flow(&server.api()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_are_stored_only_as_keyed_hashes() {
    let database = FreshDatabase::create().await;
    let data = TempDir::new();
    let server = Server::start(&data.0, &Database::Postgres(database.url.clone())).await;
    let tenant = tenant(&server.api()).await;
    let rows = database
        .client()
        .await
        .query("SELECT * FROM api_keys", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    for row in &rows {
        for index in 0..row.len() {
            let text: Option<String> = row.try_get(index).ok().flatten();
            for key in [&tenant.platform_key, &tenant.destination_key] {
                assert!(
                    !text.as_deref().unwrap_or_default().contains(key.as_str()),
                    "a key is stored in plain text"
                );
            }
        }
        let prefix: String = row.get("prefix");
        assert_eq!(prefix.len(), 12);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_credentials_get_401_and_wrong_kinds_403_in_the_envelope() {
    let data = TempDir::new();
    let server = Server::start(&data.0, &Database::Sqlite).await;
    let api = server.api();
    let tenant = tenant(&api).await;

    let unknown_key = format!("mnd_plat_{}", "x".repeat(43));
    for token in [
        unknown_key.as_str(),
        "garbage",
        "mnd_dest_",
        "wrong-admin-token",
    ] {
        let reply = api.get("/v1/destinations", token).await;
        assert_eq!(
            (reply.status, reply.code()),
            (401, "UNAUTHENTICATED"),
            "{token}"
        );
        assert!(reply.body["error"]["message"].is_string());
        let request_id = reply.headers["x-request-id"].to_str().unwrap();
        assert_eq!(reply.body["error"]["request_id"], request_id);
    }
    let missing = api.send("GET", "/v1/destinations", None, None, &[]).await;
    assert_eq!((missing.status, missing.code()), (401, "UNAUTHENTICATED"));
    let basic = api
        .send(
            "GET",
            "/v1/destinations",
            None,
            None,
            &[("authorization", "Basic dXNlcjpwYXNz")],
        )
        .await;
    assert_eq!((basic.status, basic.code()), (401, "UNAUTHENTICATED"));

    // A valid credential of the wrong kind for the route is refused with 403, and creates nothing.
    let platform_on_admin = api
        .post(
            "/v1/admin/organizations",
            &tenant.platform_key,
            json!({"name": "Evil"}),
        )
        .await;
    assert_eq!(
        (platform_on_admin.status, platform_on_admin.code()),
        (403, "FORBIDDEN")
    );
    let destination_creates = api
        .post(
            "/v1/destinations",
            &tenant.destination_key,
            json!({"slug": "not-allowed", "display_name": "x"}),
        )
        .await;
    assert_eq!(destination_creates.status, 403);
    let admin_reads = api.get("/v1/destinations", ADMIN_TOKEN).await;
    assert_eq!(admin_reads.status, 403);

    // The caller's request id is echoed.
    let echoed = api
        .send(
            "GET",
            "/healthz",
            None,
            None,
            &[("x-request-id", "trace-123")],
        )
        .await;
    assert_eq!(echoed.headers["x-request-id"], "trace-123");
}

#[tokio::test(flavor = "multi_thread")]
async fn destination_headers_and_visibility_follow_the_organization() {
    let data = TempDir::new();
    let server = Server::start(&data.0, &Database::Sqlite).await;
    let api = server.api();
    let ours = tenant(&api).await;
    let theirs = tenant(&api).await;

    // Another organization's destination is not found, by id or through X-Destination-Id.
    let foreign = api
        .get(
            &format!("/v1/destinations/{}", theirs.destination_id),
            &ours.platform_key,
        )
        .await;
    assert_eq!((foreign.status, foreign.code()), (404, "NOT_FOUND"));
    let header = [("x-destination-id", theirs.destination_id.as_str())];
    let across = api
        .send(
            "GET",
            "/v1/destinations",
            Some(&ours.platform_key),
            None,
            &header,
        )
        .await;
    assert_eq!((across.status, across.code()), (403, "FORBIDDEN"));
    let other_destination = api
        .send(
            "GET",
            "/v1/destinations",
            Some(&ours.destination_key),
            None,
            &header,
        )
        .await;
    assert_eq!(other_destination.status, 403);

    // With its own destination named, a platform key acts for that destination only.
    let second = api
        .post(
            "/v1/destinations",
            &ours.platform_key,
            json!({"slug": format!("two-{}", support::random_hex(4)), "display_name": "Two"}),
        )
        .await;
    assert_eq!(second.status, 201);
    let acting = [("x-destination-id", ours.destination_id.as_str())];
    let narrowed = api
        .send(
            "GET",
            "/v1/destinations",
            Some(&ours.platform_key),
            None,
            &acting,
        )
        .await;
    let ids: Vec<&str> = narrowed.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["id"].as_str())
        .collect();
    assert_eq!(ids, vec![ours.destination_id.as_str()]);
    let whole = api.get("/v1/destinations", &ours.platform_key).await;
    assert_eq!(whole.body["data"].as_array().map(Vec::len), Some(2));

    // Orchestrators may not send the header at all.
    let orchestrator = api
        .post(
            "/v1/admin/orchestrators",
            ADMIN_TOKEN,
            json!({"slug": format!("o-{}", support::random_hex(4)), "name": "O"}),
        )
        .await;
    let key = orchestrator.body["api_key"].as_str().unwrap();
    let refused = api
        .send("GET", "/v1/orchestrator", Some(key), None, &acting)
        .await;
    assert_eq!(refused.status, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let data = TempDir::new();
    let server = Server::start(&data.0, &Database::Sqlite).await;
    let api = server.api();
    let tenant = tenant(&api).await;

    let unknown_field = api
        .post(
            "/v1/destinations",
            &tenant.platform_key,
            json!({"slug": "abc-def", "display_name": "x", "colour": "red"}),
        )
        .await;
    assert_eq!(
        (unknown_field.status, unknown_field.code()),
        (400, "INVALID_REQUEST")
    );
    assert!(
        unknown_field.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("colour")
    );
    let bad_slug = api
        .post(
            "/v1/destinations",
            &tenant.platform_key,
            json!({"slug": "Bad Slug", "display_name": "x"}),
        )
        .await;
    assert_eq!(
        (
            bad_slug.status,
            bad_slug.body["error"]["details"]["field"].as_str()
        ),
        (400, Some("slug"))
    );
    let huge = api
        .post(
            "/v1/destinations",
            &tenant.platform_key,
            json!({"slug": "big-one", "display_name": "x".repeat(70_000)}),
        )
        .await;
    assert_eq!((huge.status, huge.code()), (413, "PAYLOAD_TOO_LARGE"));
    let bad_limit = api
        .get("/v1/destinations?limit=0", &tenant.platform_key)
        .await;
    assert_eq!(bad_limit.body["error"]["details"]["field"], "limit");
    let not_empty = api
        .post(
            &format!("/v1/destinations/{}/keys", tenant.destination_id),
            &tenant.platform_key,
            json!({"x": 1}),
        )
        .await;
    assert_eq!(not_empty.status, 400);

    let listed = api.get("/v1/destinations", &tenant.platform_key).await;
    assert_eq!(
        listed.body["data"].as_array().map(Vec::len),
        Some(1),
        "nothing was created by refused requests"
    );
    let keys = api
        .get(
            &format!("/v1/destinations/{}/keys", tenant.destination_id),
            &tenant.platform_key,
        )
        .await;
    assert_eq!(keys.body["data"].as_array().map(Vec::len), Some(1));

    let taken = api
        .get(
            &format!("/v1/destinations/{}", tenant.destination_id),
            &tenant.platform_key,
        )
        .await;
    let slug = taken.body["slug"].as_str().unwrap();
    let duplicate = api
        .post(
            "/v1/destinations",
            &tenant.platform_key,
            json!({"slug": slug, "display_name": "x"}),
        )
        .await;
    assert_eq!((duplicate.status, duplicate.code()), (409, "CONFLICT"));

    let patched = api
        .send(
            "PATCH",
            &format!("/v1/destinations/{}", tenant.destination_id),
            Some(&tenant.destination_key),
            Some(json!({"display_name": "New name", "payment_address": null})),
            &[],
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(
        (
            patched.body["display_name"].as_str(),
            patched.body["payment_address"].is_null()
        ),
        (Some("New name"), true)
    );

    let unknown_route = api.get("/v1/nothing-here", &tenant.platform_key).await;
    assert_eq!(
        (unknown_route.status, unknown_route.code()),
        (404, "NOT_FOUND")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn data_and_secrets_survive_a_restart() {
    let data = TempDir::new();
    let mut first = Server::start(&data.0, &Database::Sqlite).await;
    let tenant = tenant(&first.api()).await;
    first.stop();
    assert!(data.0.join("mandate.db").exists());
    let second = Server::start(&data.0, &Database::Sqlite).await;
    let reply = second
        .api()
        .get(
            &format!("/v1/destinations/{}", tenant.destination_id),
            &tenant.destination_key,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_creates_organizations_and_orchestrators() {
    let data = TempDir::new();
    let run = |args: &[&str]| {
        let output = support::mandate_command(&data.0, &Database::Sqlite)
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
    };
    let organization = run(&["admin", "create-organization", "--name", "Cli Org"]);
    let orchestrator = run(&[
        "admin",
        "create-orchestrator",
        "--slug",
        "cli-orc",
        "--name",
        "Cli Orc",
    ]);
    let server = Server::start(&data.0, &Database::Sqlite).await;
    let api = server.api();
    let org = api
        .get(
            "/v1/organization",
            organization["platform_key"].as_str().unwrap(),
        )
        .await;
    assert_eq!(
        (org.status, org.body["name"].as_str()),
        (200, Some("Cli Org"))
    );
    let orc = api
        .get(
            "/v1/orchestrator",
            orchestrator["api_key"].as_str().unwrap(),
        )
        .await;
    assert_eq!(
        (orc.status, orc.body["slug"].as_str()),
        (200, Some("cli-orc"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_start_together_on_an_empty_postgres_database() {
    let database = FreshDatabase::create().await;
    let (data_one, data_two) = (TempDir::new(), TempDir::new());
    let db = Database::Postgres(database.url.clone());
    // Replicas sharing a database share the key-hashing secret.
    let secret = support::random_hex(32);
    let command = |dir: &TempDir| {
        let mut command = support::mandate_command(&dir.0, &db);
        command.env("MANDATE__SECRETS__KEY_HASH_SECRET", &secret);
        command
    };
    let (one, two) = tokio::join!(
        Server::start_with(command(&data_one), &data_one.0),
        Server::start_with(command(&data_two), &data_two.0)
    );
    let tenant = tenant(&one.api()).await;
    let seen = two
        .api()
        .get(
            &format!("/v1/destinations/{}", tenant.destination_id),
            &tenant.destination_key,
        )
        .await;
    assert_eq!(seen.status, 200);
    let migrations = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../migrations/postgres"
    ))
    .unwrap()
    .count();
    let row = database
        .client()
        .await
        .query_one("SELECT count(*) FROM __diesel_schema_migrations", &[])
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, i64>(0) as usize,
        migrations,
        "each migration ran exactly once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn openapi_and_health_are_public() {
    let data = TempDir::new();
    let server = Server::start(&data.0, &Database::Sqlite).await;
    let api = server.api();
    let document = api.send("GET", "/openapi.json", None, None, &[]).await;
    assert_eq!(document.status, 200);
    assert_eq!(
        document.body["openapi"]
            .as_str()
            .map(|v| v.starts_with("3.1")),
        Some(true)
    );
    assert_eq!(
        api.send("GET", "/readyz", None, None, &[]).await.body["status"],
        "ready"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_no_configuration_it_serves_on_8080_with_sqlite_under_data() {
    let workdir = TempDir::new();
    let probe = std::net::TcpListener::bind("127.0.0.1:8080");
    assert!(
        probe.is_ok(),
        "port 8080 is taken on this machine; the default-configuration test needs it"
    );
    drop(probe);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mandate"))
        .env_clear()
        .current_dir(&workdir.0)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let client = reqwest::Client::new();
    let healthy = loop {
        if let Ok(response) = client.get("http://127.0.0.1:8080/healthz").send().await {
            break response.status().is_success();
        }
        if std::time::Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(healthy, "the server did not answer on 127.0.0.1:8080");
    assert!(workdir.0.join("data/mandate.db").exists());
    assert!(workdir.0.join("data/key_hash_secret").exists());
}
