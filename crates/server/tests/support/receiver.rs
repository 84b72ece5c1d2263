//! A real HTTP receiver on loopback that records every webhook it gets and answers with a
//! scripted sequence of statuses (then 200); or one that holds every request unanswered
//! until it is told to answer.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};

/// One received webhook.
#[derive(Debug, Clone)]
pub struct Received {
    pub webhook_id: String,
    pub timestamp: String,
    pub signature: String,
    pub body: String,
    /// When it arrived.
    pub arrived_at: SystemTime,
}

#[derive(Default)]
struct Inner {
    received: Vec<Received>,
    script: VecDeque<u16>,
}

/// The receiver; dropped with the test.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    /// While `true`, requests are held unanswered (and not recorded) until it turns `false`.
    holding: Arc<tokio::sync::watch::Sender<bool>>,
}

fn header(request: &HttpRequest, name: &str) -> String {
    request
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

impl Receiver {
    pub async fn start(script: &[u16]) -> Self {
        Self::start_with(script, false).await
    }

    /// A receiver that never answers (each request is held until the sender gives up) until
    /// [`Receiver::answer`]; then it answers 200.
    pub async fn start_holding() -> Self {
        Self::start_with(&[], true).await
    }

    /// Stops holding requests: those held are let go (with a 503 nobody reads any more, and
    /// not recorded), the next are answered.
    pub fn answer(&self) {
        self.holding.send_replace(false);
    }

    async fn start_with(script: &[u16], holding: bool) -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            received: Vec::new(),
            script: script.iter().copied().collect(),
        }));
        let holding = Arc::new(tokio::sync::watch::Sender::new(holding));
        let state = inner.clone();
        let hold = holding.clone();
        let server = HttpServer::new(move || {
            let state = state.clone();
            let hold = hold.clone();
            App::new().default_service(web::to(move |request: HttpRequest, body: web::Bytes| {
                let state = state.clone();
                let mut held = hold.subscribe();
                async move {
                    if *held.borrow_and_update() {
                        let _ = held.wait_for(|holding| !*holding).await;
                        return HttpResponse::ServiceUnavailable().finish();
                    }
                    let mut inner = state.lock().unwrap();
                    inner.received.push(Received {
                        webhook_id: header(&request, "webhook-id"),
                        timestamp: header(&request, "webhook-timestamp"),
                        signature: header(&request, "webhook-signature"),
                        body: String::from_utf8_lossy(&body).into_owned(),
                        arrived_at: SystemTime::now(),
                    });
                    let status = inner.script.pop_front().unwrap_or(200);
                    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                        .body("ok")
                }
            }))
        })
        .workers(1)
        .bind(("127.0.0.1", 0))
        .unwrap();
        let port = server.addrs()[0].port();
        // The server task ends with the test's runtime.
        tokio::spawn(server.run());
        Self {
            url: format!("http://127.0.0.1:{port}/hook"),
            inner,
            holding,
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    /// The distinct event ids received.
    pub fn event_ids(&self) -> std::collections::BTreeSet<String> {
        self.received()
            .into_iter()
            .map(|received| received.webhook_id)
            .collect()
    }

    /// Polls until `done` holds for what was received, or fails after `limit`.
    pub async fn wait_for(&self, limit: Duration, what: &str, done: impl Fn(&[Received]) -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            if done(&self.received()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; got {:?}",
                self.event_ids()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
