//! The sender against a real HTTP receiver on the loopback interface: headers, signatures,
//! rotation, truncation, status handling, redirects, and the network policy at send time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use mandate_domain::events::{Audience, Event, EventType};
use mandate_domain::ids::{DestinationId, EndpointId, OrganizationId};
use mandate_domain::ports::ClaimedDelivery;
use mandate_domain::principal::Principal;
use mandate_domain::webhooks::{Delivery, EndpointOwner, EventTypeFilter, WebhookEndpoint};
use mandate_webhooks::{NetworkPolicy, Sender, WebhookSecret};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OLD_SECRET: &str = "whsec_c2VjcmV0LWtleS1mb3ItdGhlLW9sZC1lbmRwb2ludA==";

/// One request as the receiver saw it.
#[derive(Debug)]
struct Received {
    request_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// What the receiver answers: raw bytes, then either closing or keeping the connection open
/// without another byte.
#[derive(Clone)]
struct Reply {
    raw: Vec<u8>,
    then_hang: bool,
}

fn reply(status: &str, extra_headers: &str, body: &str) -> Reply {
    Reply {
        raw: format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n{extra_headers}\r\n{body}",
            body.len()
        )
        .into_bytes(),
        then_hang: false,
    }
}

struct Receiver {
    addr: SocketAddr,
    requests: mpsc::UnboundedReceiver<Received>,
    count: Arc<AtomicUsize>,
}

impl Receiver {
    async fn start(answer: Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, requests) = mpsc::unbounded_channel();
        let count = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&count);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let tx = tx.clone();
                let answer = answer.clone();
                let counter = Arc::clone(&counter);
                tokio::spawn(async move {
                    if let Some(received) = read_request(&mut stream).await {
                        counter.fetch_add(1, Ordering::SeqCst);
                        let _ = tx.send(received);
                        let _ = stream.write_all(&answer.raw).await;
                        let _ = stream.flush().await;
                        if answer.then_hang {
                            tokio::time::sleep(Duration::from_secs(60)).await;
                        }
                    }
                });
            }
        });
        Self {
            addr,
            requests,
            count,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn next(&mut self) -> Received {
        tokio::time::timeout(Duration::from_secs(5), self.requests.recv())
            .await
            .expect("a request within 5 s")
            .expect("the receiver is running")
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

/// Reads one request.
async fn read_request(stream: &mut TcpStream) -> Option<Received> {
    let mut buffer = Vec::new();
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            break at;
        }
        let mut chunk = [0u8; 4096];
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8(buffer[..head_end].to_vec()).ok()?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0);
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        let mut chunk = [0u8; 4096];
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..read]);
    }
    Some(Received {
        request_line,
        headers,
        body,
    })
}

fn now() -> DateTime<Utc> {
    Utc.timestamp_opt(1_750_000_000, 123_456_000).unwrap()
}

fn claimed(url: String) -> ClaimedDelivery {
    let destination_id = DestinationId::generate();
    let event = Event::new(
        EventType::PaymentRequestPaid,
        Audience {
            destination_id: Some(destination_id.clone()),
            ..Audience::default()
        },
        &serde_json::json!({"id": "pr_1", "object": "payment_request", "amount": "12.50"}),
        now(),
    );
    let endpoint = WebhookEndpoint {
        id: EndpointId::generate(),
        owner: EndpointOwner::Platform {
            organization_id: OrganizationId::generate(),
        },
        organization_id: None,
        destination_id: None,
        scope: None,
        url,
        event_types: EventTypeFilter::parse(&["*".into()], &Principal::Admin).unwrap(),
        description: None,
        enabled: true,
        secret: SECRET.into(),
        previous_secret: None,
        previous_secret_expires_at: None,
        created_at: now(),
        updated_at: now(),
    };
    ClaimedDelivery {
        delivery: Delivery::first(&event.id, &endpoint.id, now()),
        event,
        endpoint,
    }
}

/// http to loopback, as a development server would allow.
fn local_policy() -> NetworkPolicy {
    NetworkPolicy {
        allow_http: true,
        allow_private_targets: false,
        allowed_cidrs: vec!["127.0.0.0/8".parse().unwrap()],
    }
}

fn sender(policy: NetworkPolicy) -> Sender {
    Sender::new(policy, Duration::from_secs(5)).unwrap()
}

fn verify(received: &Received, secret: &str) -> bool {
    let id = received.header("webhook-id").unwrap();
    let timestamp: i64 = received
        .header("webhook-timestamp")
        .unwrap()
        .parse()
        .unwrap();
    let expected = WebhookSecret::parse(secret)
        .unwrap()
        .sign(id, timestamp, &received.body);
    received
        .header("webhook-signature")
        .unwrap()
        .split(' ')
        .any(|signature| signature == expected)
}

#[tokio::test]
async fn posts_the_signed_event() {
    let mut receiver = Receiver::start(reply("200 OK", "", "thanks")).await;
    let claimed = claimed(receiver.url("/hooks/mandate?tenant=7"));
    let result = sender(local_policy()).send(&claimed, now()).await;
    let received = receiver.next().await;

    assert_eq!(
        received.request_line,
        "POST /hooks/mandate?tenant=7 HTTP/1.1"
    );
    assert_eq!(received.header("content-type"), Some("application/json"));
    assert_eq!(
        received.header("webhook-id"),
        Some(claimed.event.id.as_str())
    );
    assert_eq!(received.header("webhook-timestamp"), Some("1750000000"));
    let user_agent = received.header("user-agent").unwrap();
    assert_eq!(
        user_agent,
        format!("Mandate-Webhooks/{}", env!("CARGO_PKG_VERSION"))
    );
    let signatures = received.header("webhook-signature").unwrap();
    assert_eq!(signatures.split(' ').count(), 1);
    assert!(signatures.starts_with("v1,"));
    assert!(verify(&received, SECRET));
    assert!(!verify(&received, OLD_SECRET));

    let body: serde_json::Value = serde_json::from_slice(&received.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "id": claimed.event.id.as_str(),
            "type": "payment_request.paid",
            "created_at": "2025-06-15T15:06:40.123456Z",
            "destination_id": claimed.event.audience.destination_id.as_ref().unwrap().as_str(),
            "data": {"object": {"id": "pr_1", "object": "payment_request", "amount": "12.50"}},
        })
    );
    // The exact bytes the API shows for the event.
    assert_eq!(
        received.body,
        serde_json::to_vec(&claimed.event.body()).unwrap()
    );

    assert!(result.outcome.succeeded);
    assert_eq!(result.outcome.response_status, Some(200));
    assert_eq!(result.outcome.response_body.as_deref(), Some("thanks"));
    assert!(!result.gone);
    assert_eq!(result.retry_after, None);
}

#[tokio::test]
async fn signs_with_both_secrets_during_a_rotation() {
    let mut receiver = Receiver::start(reply("204 No Content", "", "")).await;
    let mut claimed = claimed(receiver.url("/"));
    claimed.endpoint.previous_secret = Some(OLD_SECRET.into());
    claimed.endpoint.previous_secret_expires_at = Some(now() + chrono::Duration::hours(1));
    let result = sender(local_policy()).send(&claimed, now()).await;
    let received = receiver.next().await;

    let signatures: Vec<&str> = received
        .header("webhook-signature")
        .unwrap()
        .split(' ')
        .collect();
    assert_eq!(signatures.len(), 2);
    assert!(
        signatures
            .iter()
            .all(|signature| signature.starts_with("v1,"))
    );
    assert!(verify(&received, SECRET));
    assert!(verify(&received, OLD_SECRET));
    assert!(result.outcome.succeeded);
    assert_eq!(result.outcome.response_status, Some(204));
    assert_eq!(result.outcome.response_body, None);
}

#[tokio::test]
async fn the_previous_secret_stops_signing_when_its_grace_ends() {
    let mut receiver = Receiver::start(reply("200 OK", "", "")).await;
    let mut claimed = claimed(receiver.url("/"));
    claimed.endpoint.previous_secret = Some(OLD_SECRET.into());
    claimed.endpoint.previous_secret_expires_at = Some(now());
    sender(local_policy()).send(&claimed, now()).await;
    let received = receiver.next().await;
    assert_eq!(
        received
            .header("webhook-signature")
            .unwrap()
            .split(' ')
            .count(),
        1
    );
    assert!(verify(&received, SECRET));
    assert!(!verify(&received, OLD_SECRET));
}

#[tokio::test]
async fn keeps_at_most_four_kib_of_the_answer_and_stops_reading() {
    // A 1 MiB answer of which 8 KiB arrive before the receiver goes silent: reading it all
    // would wait for the timeout.
    let mut raw = b"HTTP/1.1 200 OK\r\ncontent-length: 1048576\r\n\r\n".to_vec();
    raw.extend(std::iter::repeat_n(b'x', 8192));
    let mut receiver = Receiver::start(Reply {
        raw,
        then_hang: true,
    })
    .await;
    let claimed = claimed(receiver.url("/"));
    let started = Instant::now();
    let result = sender(local_policy()).send(&claimed, now()).await;
    receiver.next().await;

    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(result.outcome.succeeded);
    let body = result.outcome.response_body.unwrap();
    assert_eq!(body.len(), 4096);
    assert!(body.bytes().all(|byte| byte == b'x'));
}

#[tokio::test]
async fn gone_is_reported() {
    let mut receiver = Receiver::start(reply("410 Gone", "", "no such hook")).await;
    let result = sender(local_policy())
        .send(&claimed(receiver.url("/")), now())
        .await;
    receiver.next().await;
    assert!(!result.outcome.succeeded);
    assert!(result.gone);
    assert_eq!(result.outcome.response_status, Some(410));
    assert_eq!(
        result.outcome.response_body.as_deref(),
        Some("no such hook")
    );
}

#[tokio::test]
async fn server_errors_fail_and_carry_retry_after() {
    let mut receiver = Receiver::start(reply(
        "503 Service Unavailable",
        "retry-after: 120\r\n",
        "busy",
    ))
    .await;
    let result = sender(local_policy())
        .send(&claimed(receiver.url("/")), now())
        .await;
    receiver.next().await;
    assert!(!result.outcome.succeeded);
    assert!(!result.gone);
    assert_eq!(result.outcome.response_status, Some(503));
    assert_eq!(result.retry_after, Some(Duration::from_secs(120)));
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let mut receiver = Receiver::start(reply("302 Found", "location: /elsewhere\r\n", "")).await;
    let result = sender(local_policy())
        .send(&claimed(receiver.url("/hook")), now())
        .await;
    let received = receiver.next().await;
    assert_eq!(received.request_line, "POST /hook HTTP/1.1");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.count(), 1);
    assert!(!result.outcome.succeeded);
    assert_eq!(result.outcome.response_status, Some(302));
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused_at_send_time() {
    let receiver = Receiver::start(reply("200 OK", "", "")).await;
    let url = format!("http://localhost:{}/hook", receiver.addr.port());
    let policy = NetworkPolicy {
        allow_http: true,
        ..NetworkPolicy::default()
    };
    let result = sender(policy).send(&claimed(url), now()).await;
    assert!(!result.outcome.succeeded);
    assert_eq!(result.outcome.response_status, None);
    let reason = result.outcome.response_body.unwrap();
    assert!(
        reason.starts_with("target refused: localhost resolves only to"),
        "{reason}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(receiver.count(), 0);
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_reached_when_private_targets_are_allowed() {
    let mut receiver = Receiver::start(reply("200 OK", "", "")).await;
    let url = format!("http://localhost:{}/hook", receiver.addr.port());
    let policy = NetworkPolicy {
        allow_http: true,
        allow_private_targets: true,
        allowed_cidrs: Vec::new(),
    };
    let result = sender(policy).send(&claimed(url), now()).await;
    let received = receiver.next().await;
    assert!(result.outcome.succeeded, "{:?}", result.outcome);
    assert_eq!(
        received.header("host"),
        Some(format!("localhost:{}", receiver.addr.port()).as_str())
    );
}

#[tokio::test]
async fn a_literal_loopback_address_is_refused_at_send_time() {
    let receiver = Receiver::start(reply("200 OK", "", "")).await;
    let policy = NetworkPolicy {
        allow_http: true,
        ..NetworkPolicy::default()
    };
    let result = sender(policy)
        .send(&claimed(receiver.url("/")), now())
        .await;
    assert!(!result.outcome.succeeded);
    assert_eq!(result.outcome.response_status, None);
    let reason = result.outcome.response_body.unwrap();
    assert!(
        reason.starts_with("target refused: 127.0.0.1 is not a public address"),
        "{reason}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(receiver.count(), 0);
}

#[tokio::test]
async fn http_targets_are_refused_unless_allowed() {
    let receiver = Receiver::start(reply("200 OK", "", "")).await;
    let policy = NetworkPolicy {
        allow_http: false,
        allow_private_targets: true,
        allowed_cidrs: Vec::new(),
    };
    let result = sender(policy)
        .send(&claimed(receiver.url("/")), now())
        .await;
    assert!(!result.outcome.succeeded);
    assert_eq!(
        result.outcome.response_body.as_deref(),
        Some("target refused: the URL must be https://")
    );
    assert_eq!(receiver.count(), 0);
}

#[tokio::test]
async fn transport_errors_are_short_and_leave_the_url_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let url = format!("http://{addr}/hook?token=very-secret-token");
    let result = sender(local_policy()).send(&claimed(url), now()).await;
    assert!(!result.outcome.succeeded);
    assert_eq!(result.outcome.response_status, None);
    let reason = result.outcome.response_body.unwrap();
    assert!(reason.starts_with("connection failed"), "{reason}");
    assert!(!reason.contains("very-secret-token"), "{reason}");
    assert!(!reason.contains("whsec_"), "{reason}");
    assert!(reason.len() <= 300);
}

#[tokio::test]
async fn a_silent_receiver_times_out() {
    let mut receiver = Receiver::start(Reply {
        raw: Vec::new(),
        then_hang: true,
    })
    .await;
    let sender = Sender::new(local_policy(), Duration::from_millis(500)).unwrap();
    let started = Instant::now();
    let result = sender.send(&claimed(receiver.url("/")), now()).await;
    receiver.next().await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(!result.outcome.succeeded);
    assert_eq!(result.outcome.response_status, None);
    assert_eq!(
        result.outcome.response_body.as_deref(),
        Some("timed out after 500 ms")
    );
    assert!(
        result.outcome.duration_ms >= 400,
        "{}",
        result.outcome.duration_ms
    );
}

#[tokio::test]
async fn an_endpoint_without_a_valid_secret_is_not_called() {
    let receiver = Receiver::start(reply("200 OK", "", "")).await;
    let mut claimed = claimed(receiver.url("/"));
    claimed.endpoint.secret = "not-a-secret".into();
    let result = sender(local_policy()).send(&claimed, now()).await;
    assert!(!result.outcome.succeeded);
    assert_eq!(
        result.outcome.response_body.as_deref(),
        Some("the endpoint has no valid signing secret")
    );
    assert_eq!(receiver.count(), 0);
}
