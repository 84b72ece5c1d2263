//! Webhook signatures checked by the Standard Webhooks reference library for Python, not by
//! our own code: what a real server delivers verifies with the endpoint's secret, a rotation
//! sends both signatures during its grace period, and a tampered body or a wrong secret fails.

// Test helpers outside #[test] functions: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::receiver::{Received, Receiver};
use support::{Api, Database, Server, TempDir, tenant};

const WAIT: Duration = Duration::from_secs(30);

/// The variable naming the Python interpreter that has the `standardwebhooks` package.
const PYTHON_ENV: &str = "MANDATE_TEST_PYTHON";

/// Verifies one webhook with the reference library. Reads `{"secret", "headers", "body"}` as
/// JSON on stdin; exits 0 when it verifies, `REJECTED` when the library refuses it, and
/// anything else when the check itself could not run.
const VERIFY_SCRIPT: &str = r#"
import json, sys
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
given = json.load(sys.stdin)
try:
    Webhook(given["secret"]).verify(given["body"], given["headers"])
except WebhookVerificationError as error:
    print(f"rejected: {error}", file=sys.stderr)
    sys.exit(3)
"#;
const REJECTED: i32 = 3;

/// What the reference library says of a webhook.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Verified,
    Rejected,
}

fn python() -> String {
    std::env::var(PYTHON_ENV)
        .ok()
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| {
            panic!(
                "{PYTHON_ENV} is not set: run `cargo xtask test`, which installs the \
                 `standardwebhooks` package and names the Python interpreter that has it"
            )
        })
}

/// Runs the reference library on `body` with the headers of `received` and `secret`.
fn verify(secret: &str, received: &Received, signature: &str, body: &str) -> Verdict {
    let input = json!({
        "secret": secret,
        "headers": {
            "webhook-id": received.webhook_id,
            "webhook-timestamp": received.timestamp,
            "webhook-signature": signature,
        },
        "body": body,
    });
    let python = python();
    let mut child = Command::new(&python)
        .args(["-c", VERIFY_SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("could not run {PYTHON_ENV}={python}: {error}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    match output.status.code() {
        Some(0) => Verdict::Verified,
        Some(REJECTED) => Verdict::Rejected,
        _ => panic!(
            "the verification script failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// The webhook as received, checked with `secret`.
fn verify_received(secret: &str, received: &Received) -> Verdict {
    verify(secret, received, &received.signature, &received.body)
}

/// `body` with one byte changed (an ASCII letter or digit near the middle, so it stays text).
fn tamper(body: &str) -> String {
    let mut bytes = body.as_bytes().to_vec();
    let middle = bytes.len() / 2;
    let at = (middle..bytes.len())
        .chain(0..middle)
        .find(|&i| bytes[i].is_ascii_alphanumeric())
        .expect("the body has a letter or digit");
    bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
    let tampered = String::from_utf8(bytes).unwrap();
    assert_ne!(tampered, body);
    tampered
}

/// A syntactically valid secret that the endpoint never had.
fn wrong_secret() -> String {
    // 32 hex digits are also valid base64, of 24 bytes.
    format!("whsec_{}", support::random_hex(16))
}

fn webhook_server_command(data: &TempDir) -> Command {
    let mut command = support::mandate_command(&data.0, &Database::Sqlite);
    command
        .env("MANDATE__WEBHOOKS__ALLOW_HTTP", "true")
        .env("MANDATE__WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true")
        .env("MANDATE__RATE_LIMIT__PER_SECOND", "0");
    command
}

async fn create_request(api: &Api, key: &str) -> String {
    let reply = api
        .post(
            "/v1/requests",
            key,
            json!({"direction": "incoming", "amount": "5", "currency": "USD"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

/// Waits for a webhook about the object `id` and returns every one received about it.
async fn webhooks_about(receiver: &Receiver, id: &str) -> Vec<Received> {
    let about = |received: &Received| {
        serde_json::from_str::<Value>(&received.body).unwrap()["data"]["object"]["id"] == id
    };
    receiver
        .wait_for(WAIT, &format!("a webhook about {id}"), |all| {
            all.iter().any(about)
        })
        .await;
    receiver.received().into_iter().filter(about).collect()
}

fn signatures(received: &Received) -> Vec<&str> {
    received.signature.split(' ').collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn signatures_verify_with_the_reference_library_across_a_rotation() {
    // Fail at once, before any server starts, when the reference library is unavailable.
    let python = python();
    let data = TempDir::new();
    let server = Server::start_with(webhook_server_command(&data), &data.0).await;
    let api = server.api();
    let tenant = tenant(&api).await;
    let key = tenant.destination_key.as_str();
    let receiver = Receiver::start(&[]).await;
    let created = api
        .post(
            "/v1/webhook-endpoints",
            key,
            json!({"url": receiver.url, "event_types": ["payment_request.*"]}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let endpoint = created.body["id"].as_str().unwrap().to_owned();
    let old_secret = created.body["secret"].as_str().unwrap().to_owned();
    assert!(old_secret.starts_with("whsec_"), "{old_secret}");

    // Before the rotation: one signature, verified by the reference library.
    let first = create_request(&api, key).await;
    let before = webhooks_about(&receiver, &first).await;
    for received in &before {
        let body: Value = serde_json::from_str(&received.body).unwrap();
        assert_eq!(
            body["id"],
            received.webhook_id.as_str(),
            "webhook-id is the event id"
        );
        assert_eq!(signatures(received).len(), 1, "{received:?}");
        assert!(received.signature.starts_with("v1,"), "{received:?}");
        assert_eq!(
            verify_received(&old_secret, received),
            Verdict::Verified,
            "{python} refused {received:?}"
        );
        // The verification is real: a changed byte or another secret fails it.
        let tampered = tamper(&received.body);
        assert_eq!(
            verify(&old_secret, received, &received.signature, &tampered),
            Verdict::Rejected,
            "a tampered body verified"
        );
        assert_eq!(
            verify_received(&wrong_secret(), received),
            Verdict::Rejected,
            "a wrong secret verified"
        );
    }

    // Rotate: the new secret signs, the old one keeps signing during the grace period.
    let rotated = api
        .post(
            &format!("/v1/webhook-endpoints/{endpoint}/rotate-secret"),
            key,
            json!({}),
        )
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let new_secret = rotated.body["secret"].as_str().unwrap().to_owned();
    assert!(new_secret.starts_with("whsec_"), "{new_secret}");
    assert_ne!(new_secret, old_secret);
    for received in &before {
        assert_eq!(
            verify_received(&new_secret, received),
            Verdict::Rejected,
            "a webhook signed before the rotation verified with the new secret"
        );
    }

    let second = create_request(&api, key).await;
    let after = webhooks_about(&receiver, &second).await;
    for received in &after {
        let parts = signatures(received);
        assert_eq!(
            parts.len(),
            2,
            "two space-separated signatures: {received:?}"
        );
        assert!(
            parts.iter().all(|part| part.starts_with("v1,")),
            "{received:?}"
        );
        assert_ne!(parts[0], parts[1]);
        for secret in [&old_secret, &new_secret] {
            assert_eq!(
                verify_received(secret, received),
                Verdict::Verified,
                "{python} refused {received:?}"
            );
            assert_eq!(
                verify(
                    secret,
                    received,
                    &received.signature,
                    &tamper(&received.body)
                ),
                Verdict::Rejected,
                "a tampered body verified"
            );
        }
        // Each signature on its own verifies with exactly one of the two secrets.
        for part in parts {
            let verdicts: Vec<Verdict> = [&old_secret, &new_secret]
                .into_iter()
                .map(|secret| verify(secret, received, part, &received.body))
                .collect();
            assert_eq!(
                verdicts.iter().filter(|v| **v == Verdict::Verified).count(),
                1,
                "signature {part}: {verdicts:?}"
            );
        }
        assert_eq!(
            verify_received(&wrong_secret(), received),
            Verdict::Rejected,
            "a wrong secret verified"
        );
    }
}
