//! Platforms and connected destinations: one customer pool per organization, and
//! `X-Destination-Id` that never reaches outside the organization.

// Test helpers outside #[test] functions: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::{ADMIN_TOKEN, Api, Database, FreshDatabase, Server, TempDir, ids, tenant};

async fn second_destination(api: &Api, platform_key: &str) -> (String, String) {
    let slug = format!("second-{}", support::random_hex(4));
    let created = api
        .post(
            "/v1/destinations",
            platform_key,
            json!({"slug": slug, "display_name": "Second"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let key = api
        .post(
            &format!("/v1/destinations/{id}/keys"),
            platform_key,
            json!({}),
        )
        .await;
    (id, key.body["key"].as_str().unwrap().to_owned())
}

async fn shared_pool(api: &Api) {
    let org = tenant(api).await;
    let (second_id, second_key) = second_destination(api, &org.platform_key).await;

    // A customer created by the platform key is visible to both destination keys.
    let by_platform = api
        .post(
            "/v1/customers",
            &org.platform_key,
            json!({"email": "Ada@Example.com", "name": "Ada"}),
        )
        .await;
    assert_eq!(by_platform.status, 201, "{}", by_platform.body);
    let ada = by_platform.body["id"].as_str().unwrap().to_owned();
    for key in [&org.destination_key, &second_key] {
        let seen = api.get(&format!("/v1/customers/{ada}"), key).await;
        assert_eq!(
            (seen.status, seen.body["email"].as_str()),
            (200, Some("Ada@Example.com"))
        );
    }

    // A customer created by destination 1's key can be referenced by a request of destination 2.
    let by_first = api
        .post(
            "/v1/customers",
            &org.destination_key,
            json!({"email": "grace@example.com"}),
        )
        .await;
    assert_eq!(by_first.status, 201);
    let grace = by_first.body["id"].as_str().unwrap().to_owned();
    let request = api
        .post("/v1/requests", &second_key, json!({"direction": "incoming", "amount": "3", "currency": "EUR", "customer_id": grace}))
        .await;
    assert_eq!(
        (request.status, request.body["customer_id"].as_str()),
        (201, Some(grace.as_str())),
        "{}",
        request.body
    );
    assert_eq!(request.body["destination_id"], second_id.as_str());
    let by_customer = api
        .get(
            &format!("/v1/requests?customer_id={grace}"),
            &org.platform_key,
        )
        .await;
    assert_eq!(ids(&by_customer.body).len(), 1);

    // A duplicate email, in another case, is a conflict naming the existing customer.
    let duplicate = api
        .post(
            "/v1/customers",
            &second_key,
            json!({"email": "ADA@example.COM"}),
        )
        .await;
    assert_eq!((duplicate.status, duplicate.code()), (409, "CONFLICT"));
    assert_eq!(
        duplicate.body["error"]["details"]["existing_id"],
        ada.as_str()
    );
    let found = api
        .get("/v1/customers?email=ada@EXAMPLE.com", &second_key)
        .await;
    assert_eq!(ids(&found.body), vec![ada.clone()]);
    assert_eq!(
        ids(&api.get("/v1/customers", &org.platform_key).await.body).len(),
        2
    );

    // Clients use the pool only with customers:read / customers:write.
    let slug = format!("orc-{}", support::random_hex(4));
    let orchestrator = api
        .post(
            "/v1/admin/orchestrators",
            ADMIN_TOKEN,
            json!({"slug": slug, "name": "O"}),
        )
        .await;
    let orchestrator_key = orchestrator.body["api_key"].as_str().unwrap().to_owned();
    let client = api
        .post(
            "/v1/client-ids",
            &org.destination_key,
            json!({"orchestrator": slug}),
        )
        .await;
    let client_id = client.body["id"].as_str().unwrap().to_owned();
    let as_client = |method: &'static str, path: String, body: Option<Value>| {
        let (key, client_id) = (orchestrator_key.clone(), client_id.clone());
        async move {
            api.send(
                method,
                &path,
                Some(&key),
                body,
                &[("x-client-id", client_id.as_str())],
            )
            .await
        }
    };
    assert_eq!(
        as_client("GET", "/v1/customers".into(), None).await.status,
        403
    );
    assert_eq!(
        as_client("GET", format!("/v1/customers/{ada}"), None)
            .await
            .status,
        404
    );
    api.post(
        &format!("/v1/client-ids/{client_id}/permissions"),
        &org.destination_key,
        json!({"permission": "customers:read"}),
    )
    .await;
    assert_eq!(
        ids(&as_client("GET", "/v1/customers".into(), None).await.body).len(),
        2
    );
    let write = as_client(
        "POST",
        "/v1/customers".into(),
        Some(json!({"email": "x@example.com"})),
    )
    .await;
    assert_eq!((write.status, write.code()), (403, "FORBIDDEN"));
    let rename = as_client(
        "PATCH",
        format!("/v1/customers/{ada}"),
        Some(json!({"name": "Countess"})),
    )
    .await;
    assert_eq!(rename.status, 403);

    // Owners change and delete; requests keep the id of a deleted customer.
    let renamed = api
        .send(
            "PATCH",
            &format!("/v1/customers/{grace}"),
            Some(&second_key),
            Some(json!({"name": "Grace", "email": null})),
            &[],
        )
        .await;
    assert_eq!(
        (
            renamed.status,
            renamed.body["name"].as_str(),
            renamed.body["email"].is_null()
        ),
        (200, Some("Grace"), true)
    );
    let taken = api
        .send(
            "PATCH",
            &format!("/v1/customers/{grace}"),
            Some(&second_key),
            Some(json!({"email": "ada@example.com"})),
            &[],
        )
        .await;
    assert_eq!(
        (
            taken.status,
            taken.body["error"]["details"]["existing_id"].as_str()
        ),
        (409, Some(ada.as_str()))
    );
    let deleted = api
        .send(
            "DELETE",
            &format!("/v1/customers/{grace}"),
            Some(&org.platform_key),
            None,
            &[],
        )
        .await;
    assert_eq!(deleted.status, 200);
    assert_eq!(
        api.get(&format!("/v1/customers/{grace}"), &org.platform_key)
            .await
            .status,
        404
    );
    let kept = api
        .get(
            &format!("/v1/requests/{}", request.body["id"].as_str().unwrap()),
            &org.platform_key,
        )
        .await;
    assert_eq!(kept.body["customer_id"], grace.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn destinations_share_one_customer_pool_on_sqlite() {
    let data = TempDir::new();
    let server = Server::start(&data.0, &Database::Sqlite).await;
    shared_pool(&server.api()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn destinations_share_one_customer_pool_on_postgres() {
    let database = FreshDatabase::create().await;
    let data = TempDir::new();
    let server = Server::start(&data.0, &Database::Postgres(database.url.clone())).await;
    shared_pool(&server.api()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_crosses_organizations() {
    let data = TempDir::new();
    let server = Server::start(&data.0, &Database::Sqlite).await;
    let api = server.api();
    let x = tenant(&api).await;
    let y = tenant(&api).await;
    let foreign = [("x-destination-id", y.destination_id.as_str())];
    let slug = format!("orc-{}", support::random_hex(4));
    api.post(
        "/v1/admin/orchestrators",
        ADMIN_TOKEN,
        json!({"slug": slug, "name": "O"}),
    )
    .await;

    // Organization X's platform key naming Y's destination: 403, and nothing is created.
    let attempts = [
        (
            "/v1/requests",
            json!({"direction": "incoming", "amount": "1", "currency": "USD"}),
        ),
        ("/v1/client-ids", json!({"orchestrator": slug})),
        ("/v1/customers", json!({"email": "eve@example.com"})),
    ];
    for (path, body) in attempts {
        let reply = api
            .send("POST", path, Some(&x.platform_key), Some(body), &foreign)
            .await;
        assert_eq!((reply.status, reply.code()), (403, "FORBIDDEN"), "{path}");
    }
    for org in [&x, &y] {
        assert!(ids(&api.get("/v1/requests", &org.platform_key).await.body).is_empty());
        assert!(ids(&api.get("/v1/client-ids", &org.platform_key).await.body).is_empty());
        assert!(ids(&api.get("/v1/customers", &org.platform_key).await.body).is_empty());
    }

    // Y's customers are invisible to X, and X's requests may not reference them.
    let theirs = api
        .post(
            "/v1/customers",
            &y.platform_key,
            json!({"email": "yara@example.com"}),
        )
        .await;
    let their_id = theirs.body["id"].as_str().unwrap();
    assert_eq!(
        api.get(&format!("/v1/customers/{their_id}"), &x.platform_key)
            .await
            .status,
        404
    );
    let reference = api
        .post("/v1/requests", &x.destination_key, json!({"direction": "incoming", "amount": "1", "currency": "USD", "customer_id": their_id}))
        .await;
    assert_eq!(
        (
            reference.status,
            reference.body["error"]["details"]["field"].as_str()
        ),
        (400, Some("customer_id"))
    );
    // The same email in another organization is no conflict.
    let same_email = api
        .post(
            "/v1/customers",
            &x.platform_key,
            json!({"email": "YARA@example.com"}),
        )
        .await;
    assert_eq!(same_email.status, 201);
}
