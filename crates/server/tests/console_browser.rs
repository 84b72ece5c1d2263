//! The console in a real browser: Debian's Chromium, driven through WebDriver by
//! `chromedriver` (`cargo xtask test` finds or installs both and hands their paths over in
//! CHROME_BIN and CHROMEDRIVER_BIN), against the real server. A destination's owner signs in,
//! opens the review link of a pending claim, approves it with `create:incoming` only,
//! withdraws `create:outgoing` from a client ID and revokes another, and sends a failed
//! delivery again — after each step the API, and the owner's webhook receiver, show the
//! change. The claim and client-ID pages are screenshotted at 390×844 and 1280×800 into
//! `target/`.

// Test helpers outside #[test] functions: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use support::console::{destination_slug, register_orchestrator, submit_claim};
use support::receiver::Receiver;
use support::{Api, Server, TempDir, free_port, tenant};

/// The W3C WebDriver element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn program(variable: &str) -> PathBuf {
    let path = std::env::var_os(variable)
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "{variable} is not set: run `cargo xtask test`, which finds or installs Chromium \
                 and chromedriver, or set CHROME_BIN and CHROMEDRIVER_BIN"
            )
        });
    assert!(
        path.is_file(),
        "{variable}={} is not a file",
        path.display()
    );
    path
}

/// A chromedriver process and one browser session in it, both ended when dropped.
struct Driver {
    process: Child,
    http: reqwest::Client,
    session: String,
    _profile: TempDir,
}

impl Driver {
    async fn start() -> Self {
        let port = free_port();
        let process = Command::new(program("CHROMEDRIVER_BIN"))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("could not start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = match http.get(format!("{base}/status")).send().await {
                Ok(response) => response
                    .json::<Value>()
                    .await
                    .is_ok_and(|status| status["value"]["ready"] == true),
                Err(_) => false,
            };
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver not ready within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = TempDir::new();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": program("CHROME_BIN"),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--hide-scrollbars", "--no-first-run",
                    format!("--user-data-dir={}", profile.0.display()),
                ],
            },
        }}});
        let created: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {created}"))
            .to_owned();
        Self {
            process,
            http,
            session: format!("{base}/session/{session}"),
            _profile: profile,
        }
    }

    /// A WebDriver command's value, or its error answer.
    async fn try_command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Value> {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        match answer["value"].get("error") {
            Some(_) => Err(answer),
            None => Ok(answer["value"].clone()),
        }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_command(method, path, body)
            .await
            .unwrap_or_else(|error| panic!("WebDriver {path}: {error}"))
    }

    async fn open(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    async fn url(&self) -> String {
        self.command(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn find(&self, css: &str) -> String {
        let found = self
            .command(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_owned()
    }

    async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// The text the page shows once it shows `expected` (a page loading after a form was sent
    /// has no body for a moment); fails after 10 s.
    async fn text_with(&self, expected: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = self
                .try_command(
                    reqwest::Method::POST,
                    "/element",
                    Some(json!({"using": "css selector", "value": "body"})),
                )
                .await;
            let text = match found {
                Ok(body) => self
                    .try_command(
                        reqwest::Method::GET,
                        &format!(
                            "/element/{}/text",
                            body[ELEMENT].as_str().unwrap_or_default()
                        ),
                        None,
                    )
                    .await
                    .ok()
                    .and_then(|text| text.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                Err(_) => String::new(),
            };
            if text.contains(expected) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "the page does not show {expected:?} within 10 s:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Screenshots the page at `width`×`height` into `target/`; checks a real picture came out.
    async fn screenshot(&self, width: u32, height: u32, name: &str) -> PathBuf {
        // The viewport itself at that size (a window's size includes its frame), as a phone or
        // a desktop lays the page out.
        self.command(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            Some(
                json!({"cmd": "Emulation.setDeviceMetricsOverride", "params": {
                    "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600,
                }}),
            ),
        )
        .await;
        let png = STANDARD
            .decode(
                self.command(reqwest::Method::GET, "/screenshot", None)
                    .await
                    .as_str()
                    .unwrap(),
            )
            .unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{name} is not a PNG");
        // A blank or broken render compresses to almost nothing.
        assert!(png.len() > 10_000, "{name} is only {} bytes", png.len());
        let size = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
        assert_eq!((size(16), size(20)), (width, height), "{name}'s size");
        let path = target_dir().join(name);
        std::fs::write(&path, png).unwrap();
        println!("screenshot: {}", path.display());
        path
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// The workspace's `target/` directory, where the screenshots are kept for people to look at.
fn target_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = match std::env::var_os("CARGO_TARGET_DIR").filter(|value| !value.is_empty()) {
        // An absolute CARGO_TARGET_DIR replaces the workspace path entirely.
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    };
    std::fs::create_dir_all(&dir).unwrap();
    dir.canonicalize().unwrap()
}

async fn get(api: &Api, path: &str, key: &str) -> Value {
    let reply = api.get(path, key).await;
    assert_eq!(reply.status, 200, "{path}: {}", reply.body);
    reply.body
}

async fn issue_client(api: &Api, key: &str, orchestrator: &str, label: &str) -> String {
    let issued = api
        .post(
            "/v1/client-ids",
            key,
            json!({"orchestrator": orchestrator, "label": label}),
        )
        .await;
    assert_eq!(issued.status, 201, "{}", issued.body);
    issued.body["id"].as_str().unwrap().to_owned()
}

/// Polls `check` until it holds, for at most 20 s.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_owner_decides_in_the_browser() {
    let data = TempDir::new();
    let mut command = support::mandate_command(&data.0, &support::Database::Sqlite);
    command
        .env("MANDATE__WEBHOOKS__ALLOW_HTTP", "true")
        .env("MANDATE__WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true")
        // One attempt per delivery: a failed one stays failed until someone sends it again.
        .env("MANDATE__WEBHOOKS__RETRY_SCHEDULE", "0s");
    let server = Server::start_with(command, &data.0).await;
    let api = server.api();
    let tenant = tenant(&api).await;
    let key = tenant.destination_key.as_str();
    let (service, orchestrator_key) = register_orchestrator(&api).await;

    // The owner's receiver refuses the first delivery, then takes every other.
    let receiver = Receiver::start(&[500]).await;
    let endpoint = api
        .post(
            "/v1/webhook-endpoints",
            key,
            json!({"url": receiver.url, "event_types": ["claim.*", "client_id.*"]}),
        )
        .await;
    assert_eq!(endpoint.status, 201, "{}", endpoint.body);
    let endpoint = endpoint.body["id"].as_str().unwrap().to_owned();
    let namespace = destination_slug(&api, key, &tenant.destination_id).await;
    let claim = submit_claim(&api, &orchestrator_key, &service, &namespace).await;
    receiver
        .wait_for(Duration::from_secs(20), "claim.submitted", |all| {
            all.iter().any(|r| r.body.contains("claim.submitted"))
        })
        .await;
    let submitted = receiver
        .received()
        .into_iter()
        .find(|r| r.body.contains("claim.submitted"))
        .unwrap();
    let event: Value = serde_json::from_str(&submitted.body).unwrap();
    let review_url = event["data"]["object"]["review_url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(review_url, server.url(&format!("/console/claims/{claim}")));

    let browser = Driver::start().await;

    // The review link, on a phone: sign in first, then straight to the claim.
    browser.open(&review_url).await;
    assert!(browser.url().await.contains("/console/login"));
    browser.type_into("input[name=key]", key).await;
    browser.click("button[type=submit]").await;
    let text = browser.text_with("Invoice agent").await;
    assert_eq!(browser.url().await, review_url);
    for shown in [
        "Invoice agent",
        "SHA256:",
        "203.0.113.7",
        service.as_str(),
        "0 of ",
    ] {
        assert!(
            text.contains(shown),
            "{shown} not on the claim page:\n{text}"
        );
    }
    browser.screenshot(390, 844, "console-claim-390.png").await;
    browser
        .screenshot(1280, 800, "console-claim-1280.png")
        .await;

    // Approve with create:incoming only: untick create:outgoing.
    browser
        .click("input[name=permissions][value='create:outgoing']")
        .await;
    browser.click("form[action$='/approve'] button").await;
    browser
        .text_with("Approved Invoice agent with create:incoming: client ID")
        .await;
    let approved = get(&api, &format!("/v1/claims/{claim}"), key).await;
    assert_eq!(approved["status"], "approved");
    assert_eq!(approved["permissions"], json!(["create:incoming"]));
    receiver
        .wait_for(Duration::from_secs(20), "claim.approved", |all| {
            all.iter().any(|r| r.body.contains("claim.approved"))
        })
        .await;

    // Withdraw create:outgoing from one client ID, revoke another after confirming.
    let kept = issue_client(&api, key, &service, "Billing runner").await;
    let ended = issue_client(&api, key, &service, "Old runner").await;
    browser
        .open(&server.url(&format!("/console/client-ids/{kept}")))
        .await;
    browser.text_with("Billing runner").await;
    browser
        .screenshot(390, 844, "console-client-id-390.png")
        .await;
    browser
        .screenshot(1280, 800, "console-client-id-1280.png")
        .await;
    browser
        .click("form[action$='/withdraw']:has(input[value='create:outgoing']) button")
        .await;
    browser.text_with("Withdrew create:outgoing").await;
    let client = get(&api, &format!("/v1/client-ids/{kept}"), key).await;
    assert_eq!(client["permissions"], json!(["create:incoming"]));
    browser
        .open(&server.url(&format!("/console/client-ids/{ended}")))
        .await;
    browser.click("a[href$='/revoke']").await;
    browser.text_with("Revoke client ID").await;
    browser.click("form[action$='/revoke'] button").await;
    browser
        .text_with(&format!("Revoked client ID {ended}"))
        .await;
    let client = get(&api, &format!("/v1/client-ids/{ended}"), key).await;
    assert_eq!(client["status"], "revoked");
    receiver
        .wait_for(Duration::from_secs(20), "client_id.revoked", |all| {
            all.iter().any(|r| r.body.contains("client_id.revoked"))
        })
        .await;

    // Send the refused delivery again from the endpoint's log.
    let failed = |deliveries: &Value| {
        deliveries["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|delivery| delivery["status"] == "failed")
            .map(|delivery| delivery["id"].as_str().unwrap().to_owned())
    };
    let log_path = format!("/v1/webhook-endpoints/{endpoint}/deliveries");
    eventually("the refused delivery is failed", async || {
        failed(&get(&api, &log_path, key).await).is_some()
    })
    .await;
    let delivery = failed(&get(&api, &log_path, key).await).unwrap();
    let sent_before = receiver.received().len();
    browser
        .open(&server.url(&format!("/console/webhooks/{endpoint}")))
        .await;
    browser
        .click(&format!(
            "form[action='/console/webhook-deliveries/{delivery}/retry'] button"
        ))
        .await;
    browser.text_with("Sending event").await;
    receiver
        .wait_for(Duration::from_secs(20), "the delivery sent again", |all| {
            all[sent_before..]
                .iter()
                .any(|r| r.webhook_id == submitted.webhook_id)
        })
        .await;
    let log = get(&api, &log_path, key).await;
    let attempts = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["event_id"] == event["id"])
        .count();
    assert_eq!(attempts, 2, "{log}");
}
