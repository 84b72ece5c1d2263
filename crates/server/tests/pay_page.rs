//! The public payment page as a payer meets it: JSON for programs, and the HTML page rendered
//! by a real headless Chromium, on a phone-sized screen.

// Test helpers outside #[test] functions: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Api, Database, Reply, Server, TempDir, tenant};

const NAME: &str = "Rosa's Coffee & Co";
const ADDRESS: &str = "eip155:8453:0x52908400098527886E0F7030069857D2E4169EE7";
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";
/// What a request is for, with markup that must reach the payer as text.
const DESCRIPTION: &str = "Beans <b>& 'cups'</b> for \"May\"";
const BROWSER_ACCEPT: &str =
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";

/// The browser handed over by `cargo xtask test`; the page is never left unchecked.
fn chrome() -> PathBuf {
    let path = std::env::var_os("CHROME_BIN")
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "CHROME_BIN is not set: run `cargo xtask test`, which finds or installs a headless \
                 Chromium, or set CHROME_BIN to a Chromium binary"
            )
        });
    assert!(
        path.is_file(),
        "CHROME_BIN={} is not a file",
        path.display()
    );
    path
}

/// Runs headless Chromium on a fresh profile, killed if it hangs; returns its stdout.
fn run_chrome(args: Vec<String>) -> String {
    let profile = TempDir::new();
    let mut child = Command::new(chrome())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.0.display()))
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("could not start CHROME_BIN");
    // Drained on threads so that a full pipe cannot stall the browser.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "Chromium did not finish within 90 s: {args:?}\n{}",
                stderr.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = stdout.join().unwrap();
    let stderr = stderr.join().unwrap();
    assert!(
        status.success(),
        "Chromium failed ({status}): {args:?}\n{stderr}"
    );
    stdout
}

async fn chrome_async(args: Vec<String>) -> String {
    tokio::task::spawn_blocking(move || run_chrome(args))
        .await
        .unwrap()
}

/// The page's text as a reader sees it: the DOM Chromium built, without head and tags.
async fn rendered_text(url: &str) -> String {
    let dom = chrome_async(vec!["--dump-dom".into(), url.into()]).await;
    assert!(dom.contains("<body"), "not a rendered page: {dom}");
    visible_text(&dom)
}

fn visible_text(dom: &str) -> String {
    let body = match (dom.find("<body"), dom.rfind("</body>")) {
        (Some(start), Some(end)) if start < end => &dom[start..end],
        _ => dom,
    };
    let mut text = String::new();
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                text.push(' ');
            }
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    let text = text
        .replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
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

/// Screenshots the page on a phone-sized screen and checks that a real picture came out.
async fn screenshot(url: &str, name: &str) -> PathBuf {
    let path = target_dir().join(name);
    let _ = std::fs::remove_file(&path);
    chrome_async(vec![
        format!("--screenshot={}", path.display()),
        "--window-size=390,844".into(),
        "--hide-scrollbars".into(),
        url.into(),
    ])
    .await;
    let png = std::fs::read(&path)
        .unwrap_or_else(|error| panic!("no screenshot at {}: {error}", path.display()));
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        path.display()
    );
    // A blank or broken render compresses to almost nothing.
    assert!(
        png.len() > 10_000,
        "{} is only {} bytes",
        path.display(),
        png.len()
    );
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    assert!(width >= 390, "the screenshot is {width} px wide");
    println!("screenshot: {}", path.display());
    path
}

async fn get_page(api: &Api, path: &str, accept: Option<&str>) -> Reply {
    let headers: Vec<(&str, &str)> = accept.map(|a| ("Accept", a)).into_iter().collect();
    api.send("GET", path, None, None, &headers).await
}

fn header<'a>(reply: &'a Reply, name: &str) -> &'a str {
    reply
        .headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
}

fn html_of(reply: &Reply) -> &str {
    assert_eq!(
        header(reply, "content-type"),
        "text/html; charset=utf-8",
        "{}",
        reply.body
    );
    reply.body.as_str().expect("an HTML body")
}

/// What every answer of the page carries, whatever its status.
fn assert_hardened(reply: &Reply) {
    assert_eq!(header(reply, "cache-control"), "no-store");
    assert_eq!(header(reply, "referrer-policy"), "no-referrer");
    assert_eq!(header(reply, "x-content-type-options"), "nosniff");
    assert_eq!(header(reply, "content-security-policy"), CSP);
}

async fn create_request(api: &Api, key: &str, reference: &str) -> String {
    let created = api
        .post(
            "/v1/requests",
            key,
            json!({"direction": "incoming", "amount": "42.50", "currency": "USDC-base",
                   "reference": reference, "description": DESCRIPTION,
                   "due_at": "2030-01-02T00:00:00Z"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    created.body["id"].as_str().unwrap().to_owned()
}

/// Creates a link and returns its body and the page's path (`/pay/<token>`).
async fn create_link(api: &Api, key: &str, request_id: &str, body: Value) -> (Value, String) {
    let link = api
        .post(
            &format!("/v1/requests/{request_id}/payment-links"),
            key,
            body,
        )
        .await;
    assert_eq!(link.status, 201, "{}", link.body);
    let url = link.body["url"].as_str().unwrap();
    let token = url.rsplit('/').next().unwrap();
    assert!(
        url.ends_with(&format!("/pay/{token}")) && token.len() >= 22,
        "unexpected link url {url}"
    );
    let path = format!("/pay/{token}");
    (link.body, path)
}

async fn pay(api: &Api, key: &str, request_id: &str, amount: &str, reference: &str) {
    let paid = api
        .post(
            &format!("/v1/requests/{request_id}/payments"),
            key,
            json!({"amount": amount, "reference": reference}),
        )
        .await;
    assert_eq!(paid.status, 201, "{}", paid.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payer_sees_the_request_behind_a_link() {
    chrome();
    let data = TempDir::new();
    let server = Server::start(&data.0, &Database::Sqlite).await;
    let api = server.api();
    let tenant = tenant(&api).await;
    let key = tenant.destination_key.as_str();
    let patched = api
        .send(
            "PATCH",
            &format!("/v1/destinations/{}", tenant.destination_id),
            Some(key),
            Some(json!({"display_name": NAME, "payment_address": ADDRESS})),
            &[],
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    let request_id = create_request(&api, key, "INV-7").await;
    let (link, path) = create_link(&api, key, &request_id, json!({})).await;
    assert_eq!(link["warnings"], json!([]), "{link}");

    // JSON, for programs that ask for it; only what a payer needs, nothing internal.
    let shown = get_page(&api, &path, Some("application/json")).await;
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert_hardened(&shown);
    assert_eq!(
        shown.body,
        json!({
            "status": "open",
            "amount": "42.50",
            "currency": "USDC-base",
            "amount_paid": "0.00",
            "reference": "INV-7",
            "description": DESCRIPTION,
            "due_at": "2030-01-02T00:00:00Z",
            "destination": {"display_name": NAME, "payment_address": ADDRESS},
            "expires_at": link["expires_at"],
        })
    );

    // HTML for everyone else: self-contained, locked down, escaped.
    for accept in [None, Some("*/*"), Some(BROWSER_ACCEPT)] {
        let page = get_page(&api, &path, accept).await;
        assert_eq!(page.status, 200, "{accept:?}: {}", page.body);
        assert_hardened(&page);
        let html = html_of(&page);
        assert!(
            html.contains(
                r#"<meta name="viewport" content="width=device-width, initial-scale=1">"#
            )
        );
        // Markup characters are escaped; an apostrophe is harmless in text and in double-quoted
        // attributes, and stays as it is.
        assert!(html.contains("Rosa's Coffee &amp; Co"), "{html}");
        assert!(
            html.contains("<dd>Beans &lt;b&gt;&amp; 'cups'&lt;/b&gt; for &quot;May&quot;</dd>"),
            "{html}"
        );
        // The address's QR code is drawn inline, once, and fetches nothing.
        assert_eq!(html.matches("<svg ").count(), 1, "{html}");
        assert!(
            html.contains(
                r#"<div class="qr"><svg role="img" aria-label="QR code of the payment address""#
            ),
            "{html}"
        );
        for forbidden in ["<script", "<link", "src=", "href=", "url(", "@import"] {
            assert!(
                !html.contains(forbidden),
                "the page holds {forbidden}: {html}"
            );
        }
    }

    // What a payer's browser renders.
    let url = server.url(&path);
    let text = rendered_text(&url).await;
    for expected in [
        NAME,
        "42.50 USDC-base",
        "Awaiting payment",
        &format!("Description {DESCRIPTION}"),
        "Payment reference to quote INV-7",
        ADDRESS,
        "Due 2 January 2030, 00:00 UTC",
        "This link expires on",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} is not on the page: {text}"
        );
    }
    assert!(!text.contains("paid so far"), "{text}");
    screenshot(&url, "pay-page.png").await;

    // A part payment shows what has been paid.
    pay(&api, key, &request_id, "10", "0xaaa").await;
    let text = rendered_text(&url).await;
    assert!(text.contains("Partially paid"), "{text}");
    assert!(
        text.contains("Amount paid so far: 10.00 USDC-base"),
        "{text}"
    );

    // Once covered, the page says so.
    pay(&api, key, &request_id, "32.50", "0xabc").await;
    let shown = get_page(&api, &path, Some("application/json")).await;
    assert_eq!(
        (
            shown.body["status"].as_str(),
            shown.body["amount_paid"].as_str()
        ),
        (Some("paid"), Some("42.50"))
    );
    let text = rendered_text(&url).await;
    assert!(text.contains("This request has been paid"), "{text}");
    assert!(text.contains("No further payment is needed."), "{text}");
    assert!(!text.contains("paid so far"), "{text}");
    // Nothing more to pay, nothing to scan.
    let page = get_page(&api, &path, None).await;
    assert!(!html_of(&page).contains("<svg"), "{}", page.body);
    screenshot(&url, "pay-page-paid.png").await;

    // Whatever the destination is called, it is shown as text, never as markup.
    let hostile = r#"<script>alert("x")</script> & 'Co'"#;
    let patched = api
        .send(
            "PATCH",
            &format!("/v1/destinations/{}", tenant.destination_id),
            Some(key),
            Some(json!({"display_name": hostile})),
            &[],
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    let page = get_page(&api, &path, None).await;
    let html = html_of(&page);
    assert!(!html.contains("<script"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; 'Co'"),
        "{html}"
    );
    assert!(rendered_text(&url).await.contains(hostile));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_link_to_a_destination_without_payment_address_warns_its_creator() {
    let data = TempDir::new();
    let server = Server::start(&data.0, &Database::Sqlite).await;
    let api = server.api();
    let tenant = tenant(&api).await;
    let key = tenant.destination_key.as_str();
    let request_id = create_request(&api, key, "INV-9").await;

    // The link is made, and its creator is told at once what the payer will miss.
    let (link, path) = create_link(&api, key, &request_id, json!({})).await;
    assert_eq!(
        link["warnings"],
        json!([{
            "code": "NO_PAYMENT_ADDRESS",
            "field": "payment_address",
            "message": "the destination has no payment_address: the page asks the payer to \
                        contact the destination instead; set one with PATCH \
                        /v1/destinations/{id} and the link shows it",
        }]),
        "{link}"
    );
    // The payer is sent to the payee, with no QR code of an address there is not.
    let page = get_page(&api, &path, None).await;
    let html = html_of(&page);
    assert!(
        html.contains("No payment address has been given. Please contact Shop."),
        "{html}"
    );
    assert!(!html.contains("<svg"), "{html}");

    // Once an address is set, the same link shows it, and new links no longer warn.
    let patched = api
        .send(
            "PATCH",
            &format!("/v1/destinations/{}", tenant.destination_id),
            Some(key),
            Some(json!({"payment_address": ADDRESS})),
            &[],
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    let page = get_page(&api, &path, None).await;
    let html = html_of(&page);
    assert!(html.contains(ADDRESS), "{html}");
    assert!(html.contains("<svg "), "{html}");
    let (link, _) = create_link(&api, key, &request_id, json!({})).await;
    assert_eq!(link["warnings"], json!([]), "{link}");
}

#[tokio::test(flavor = "multi_thread")]
async fn amounts_keep_the_precision_they_were_given() {
    let data = TempDir::new();
    let server = Server::start(&data.0, &Database::Sqlite).await;
    let api = server.api();
    let tenant = tenant(&api).await;
    let key = tenant.destination_key.as_str();
    let created = api
        .post(
            "/v1/requests",
            key,
            json!({"direction": "incoming", "amount": "012.500", "currency": "usdc.Base"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["amount"], "12.500", "{}", created.body);
    assert_eq!(created.body["amount_paid"], "0.000", "{}", created.body);
    let request_id = created.body["id"].as_str().unwrap();
    let (_, path) = create_link(&api, key, request_id, json!({})).await;
    pay(&api, key, request_id, "2.5", "part").await;

    let shown = get_page(&api, &path, Some("application/json")).await;
    assert_eq!(
        (
            shown.body["amount"].as_str(),
            shown.body["amount_paid"].as_str(),
            shown.body["currency"].as_str()
        ),
        (Some("12.500"), Some("2.500"), Some("usdc.Base")),
        "{}",
        shown.body
    );
    let page = get_page(&api, &path, None).await;
    let html = html_of(&page);
    assert!(
        html.contains(r#"12.500 <span class="currency">usdc.Base</span>"#),
        "{html}"
    );
    assert!(
        html.contains("Amount paid so far: 2.500 usdc.Base"),
        "{html}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn closed_unknown_and_expired_links() {
    let data = TempDir::new();
    let server = Server::start(&data.0, &Database::Sqlite).await;
    let api = server.api();
    let tenant = tenant(&api).await;
    let key = tenant.destination_key.as_str();

    // A cancelled request says so and asks for no payment.
    let request_id = create_request(&api, key, "INV-8").await;
    let (_, path) = create_link(&api, key, &request_id, json!({})).await;
    let cancelled = api
        .post(&format!("/v1/requests/{request_id}/cancel"), key, json!({}))
        .await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    let page = get_page(&api, &path, None).await;
    assert_eq!(page.status, 200);
    let html = html_of(&page);
    assert!(html.contains("This request has been cancelled"), "{html}");
    assert!(html.contains("Do not send a payment."), "{html}");
    assert!(html.contains("No payment address has been given"), "{html}");
    let shown = get_page(&api, &path, Some("application/json")).await;
    assert_eq!(shown.body["status"], "cancelled");
    assert_eq!(shown.body["destination"]["payment_address"], Value::Null);

    // An unknown token: 404, as an envelope or as a page.
    let unknown = "/pay/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let missing = get_page(&api, unknown, Some("application/json")).await;
    assert_eq!((missing.status, missing.code()), (404, "NOT_FOUND"));
    assert_hardened(&missing);
    let missing = get_page(&api, unknown, Some(BROWSER_ACCEPT)).await;
    assert_eq!(missing.status, 404);
    assert_hardened(&missing);
    assert!(html_of(&missing).contains("Payment link not found"));

    // An expired link: 410, as an envelope or as a page.
    let (_, path) = create_link(&api, key, &request_id, json!({"expires_in_seconds": 1})).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let gone = loop {
        let reply = get_page(&api, &path, Some("application/json")).await;
        if reply.status != 200 {
            break reply;
        }
        assert!(
            Instant::now() < deadline,
            "the 1-second link still answers after 15 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!((gone.status, gone.code()), (410, "GONE"), "{}", gone.body);
    assert!(
        gone.body["error"]["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{}",
        gone.body
    );
    assert_eq!(
        gone.body["error"]["request_id"].as_str(),
        Some(header(&gone, "x-request-id"))
    );
    assert_hardened(&gone);
    let gone = get_page(&api, &path, None).await;
    assert_eq!(gone.status, 410);
    assert!(html_of(&gone).contains("This payment link has expired"));
}
