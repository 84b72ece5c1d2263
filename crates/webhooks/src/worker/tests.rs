//! The worker's policy functions, and its loop over a scripted queue and a loopback receiver.

use super::*;
use chrono::TimeZone;
use mandate_domain::events::{Audience, Event, EventType};
use mandate_domain::ids::{EndpointId, OrganizationId};
use mandate_domain::principal::Principal;
use mandate_domain::usecases::AttemptOutcome;
use mandate_domain::webhooks::{Delivery, EndpointOwner, EventTypeFilter, WebhookEndpoint};

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + seconds, 0).unwrap()
}

fn claimed(attempt: u32, first_attempt_at: DateTime<Utc>) -> ClaimedDelivery {
    claimed_to("https://example.com/hook", attempt, first_attempt_at)
}

fn claimed_to(url: &str, attempt: u32, first_attempt_at: DateTime<Utc>) -> ClaimedDelivery {
    let event = Event::new(
        EventType::WebhookTest,
        Audience::default(),
        &serde_json::json!({}),
        first_attempt_at,
    );
    let endpoint = WebhookEndpoint {
        id: EndpointId::generate(),
        owner: EndpointOwner::Platform {
            organization_id: OrganizationId::generate(),
        },
        organization_id: None,
        destination_id: None,
        scope: None,
        url: url.into(),
        event_types: EventTypeFilter::parse(&["*".into()], &Principal::Admin).unwrap(),
        description: None,
        enabled: true,
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
        previous_secret: None,
        previous_secret_expires_at: None,
        created_at: first_attempt_at,
        updated_at: first_attempt_at,
    };
    let mut delivery = Delivery::first(&event.id, &endpoint.id, first_attempt_at);
    delivery.attempt = attempt;
    ClaimedDelivery {
        delivery,
        event,
        endpoint,
    }
}

fn result(status: Option<u16>, retry_after: Option<Duration>) -> SendResult {
    SendResult {
        outcome: AttemptOutcome {
            succeeded: status.is_some_and(|status| (200..300).contains(&status)),
            response_status: status,
            response_body: None,
            duration_ms: 3,
        },
        retry_after,
        gone: status == Some(410),
    }
}

#[test]
fn failures_follow_the_schedule() {
    let config = WorkerConfig::default();
    let now = at(10);
    let after = after_failure(
        &config,
        &claimed(1, at(0)),
        &result(Some(500), None),
        now,
        0.0,
    );
    assert_eq!(
        after,
        AfterFailure::RetryAt(now + chrono::Duration::seconds(5))
    );
    let after = after_failure(&config, &claimed(2, at(0)), &result(None, None), now, 1.0);
    assert_eq!(
        after,
        AfterFailure::RetryAt(now + chrono::Duration::seconds(360))
    );
    let after = after_failure(
        &config,
        &claimed(1, at(0)),
        &result(Some(429), Some(Duration::from_secs(90))),
        now,
        0.0,
    );
    assert_eq!(
        after,
        AfterFailure::RetryAt(now + chrono::Duration::seconds(90))
    );
}

#[test]
fn an_exhausted_schedule_gives_up() {
    let config = WorkerConfig::default();
    let after = after_failure(
        &config,
        &claimed(8, at(0)),
        &result(Some(500), None),
        at(60),
        0.0,
    );
    assert_eq!(after, AfterFailure::GiveUp);
}

#[test]
fn gone_disables_the_endpoint_at_once() {
    let config = WorkerConfig::default();
    let after = after_failure(
        &config,
        &claimed(1, at(0)),
        &result(Some(410), None),
        at(1),
        0.0,
    );
    assert_eq!(after, AfterFailure::Disable);
}

#[test]
fn failing_for_too_long_disables_the_endpoint() {
    let config = WorkerConfig {
        disable_after: Duration::from_secs(100),
        ..WorkerConfig::default()
    };
    let failure = result(Some(500), None);
    assert_eq!(
        after_failure(&config, &claimed(3, at(0)), &failure, at(100), 0.0),
        AfterFailure::Disable
    );
    assert!(matches!(
        after_failure(&config, &claimed(3, at(0)), &failure, at(99), 0.0),
        AfterFailure::RetryAt(_)
    ));
    // With the default five days, a long schedule's late attempts disable it too.
    let config = WorkerConfig::default();
    assert_eq!(
        after_failure(&config, &claimed(4, at(0)), &failure, at(5 * 86_400), 0.0),
        AfterFailure::Disable
    );
}

#[test]
fn success_needs_nothing_after_it() {
    let config = WorkerConfig::default();
    let after = after_failure(
        &config,
        &claimed(1, at(0)),
        &result(Some(204), None),
        at(1),
        0.0,
    );
    assert_eq!(after, AfterFailure::GiveUp);
    // Even long after the first attempt: a success never disables.
    let after = after_failure(
        &config,
        &claimed(1, at(0)),
        &result(Some(200), None),
        at(10 * 86_400),
        0.0,
    );
    assert_eq!(after, AfterFailure::GiveUp);
}

#[test]
fn the_lease_covers_a_full_batch() {
    let config = WorkerConfig::default();
    // 100 attempts, 32 at once, behind 32 running: 5 waves of at most 15 s + 5 s.
    assert_eq!(
        config.effective_lease(Duration::from_secs(15)),
        Duration::from_secs(100)
    );
    assert_eq!(
        config.effective_lease(Duration::from_secs(1)),
        Duration::from_secs(60)
    );
    let odd = WorkerConfig {
        batch: 0,
        concurrency: 0,
        ..WorkerConfig::default()
    };
    assert_eq!(
        odd.effective_lease(Duration::from_secs(100)),
        Duration::from_secs(210)
    );
}

// The loop itself, over a scripted queue and a loopback receiver.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

use crate::guard::NetworkPolicy;

type Recorded = (ClaimedDelivery, AttemptOutcome, AfterFailure, DateTime<Utc>);

#[derive(Default)]
struct Script {
    /// What successive `fan_out` calls return (`Err(())` = the store is down); then
    /// nothing.
    fan_outs: VecDeque<Result<FannedOut, ()>>,
    /// What successive `claim_sendable` calls return; then nothing.
    claims: VecDeque<Vec<ClaimedDelivery>>,
    fan_out_calls: usize,
    /// How many fan-outs had run when sending was first claimed.
    fan_outs_before_first_claim: Option<usize>,
    claim_calls: usize,
    waits: usize,
    records: Vec<Recorded>,
    /// Attempts handed back.
    released: Vec<DeliveryId>,
    /// Attempts put off, with until when.
    postponed: Vec<(DeliveryId, DateTime<Utc>)>,
}

#[derive(Clone, Default)]
struct FakeQueue {
    script: Arc<Mutex<Script>>,
    changed: Arc<Notify>,
}

impl FakeQueue {
    fn new(fan_outs: Vec<Result<FannedOut, ()>>, claims: Vec<Vec<ClaimedDelivery>>) -> Self {
        let queue = Self::default();
        {
            let mut script = queue.script.lock().unwrap();
            script.fan_outs = fan_outs.into();
            script.claims = claims.into();
        }
        queue
    }

    fn with<T>(&self, read: impl FnOnce(&mut Script) -> T) -> T {
        read(&mut self.script.lock().unwrap())
    }

    /// Completes once `done` holds.
    async fn until(&self, done: impl Fn(&Script) -> bool) {
        loop {
            let changed = self.changed.notified();
            if self.with(|script| done(script)) {
                return;
            }
            changed.await;
        }
    }
}

fn down() -> StoreError {
    StoreError::Unavailable(Box::new(std::io::Error::other("down")))
}

#[async_trait]
impl Queue for FakeQueue {
    async fn fan_out(
        &self,
        _: DateTime<Utc>,
        _: u32,
        _: chrono::Duration,
    ) -> Result<FannedOut, StoreError> {
        let next = self.with(|script| {
            script.fan_out_calls += 1;
            script
                .fan_outs
                .pop_front()
                .unwrap_or(Ok(FannedOut::default()))
        });
        self.changed.notify_waiters();
        next.map_err(|()| down())
    }

    async fn claim_sendable(
        &self,
        _: DateTime<Utc>,
        _: u32,
        _: u32,
        _: chrono::Duration,
    ) -> Result<ClaimedBatch, StoreError> {
        let next = self.with(|script| {
            script.claim_calls += 1;
            script
                .fan_outs_before_first_claim
                .get_or_insert(script.fan_out_calls);
            script.claims.pop_front().unwrap_or_default()
        });
        self.changed.notify_waiters();
        Ok(ClaimedBatch {
            sendable: next,
            skipped: 0,
        })
    }

    async fn release(&self, ids: &[DeliveryId]) -> Result<u64, StoreError> {
        self.with(|script| script.released.extend_from_slice(ids));
        self.changed.notify_waiters();
        Ok(ids.len() as u64)
    }

    async fn postpone(&self, ids: &[DeliveryId], until: DateTime<Utc>) -> Result<u64, StoreError> {
        self.with(|script| {
            script
                .postponed
                .extend(ids.iter().map(|id| (id.clone(), until)));
        });
        self.changed.notify_waiters();
        Ok(ids.len() as u64)
    }

    async fn record_outcomes(&self, finished: &[FinishedAttempt]) -> Result<(), StoreError> {
        self.with(|script| {
            script.records.extend(finished.iter().map(|finished| {
                (
                    finished.claimed.clone(),
                    finished.outcome.clone(),
                    finished.after_failure,
                    finished.finished_at,
                )
            }));
        });
        self.changed.notify_waiters();
        Ok(())
    }

    async fn wait_for_work(&self, timeout: Duration) {
        self.with(|script| script.waits += 1);
        self.changed.notify_waiters();
        tokio::time::sleep(timeout).await;
    }
}

/// A receiver answering `200` after `delay`, counting the requests it holds at once.
struct Receiver {
    url: String,
    accepted: Arc<Notify>,
    most_at_once: Arc<AtomicUsize>,
}

async fn receiver(delay: Duration) -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let accepted = Arc::new(Notify::new());
    let most_at_once = Arc::new(AtomicUsize::new(0));
    let now_held = Arc::new(AtomicUsize::new(0));
    let (accepted_, most_) = (Arc::clone(&accepted), Arc::clone(&most_at_once));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            accepted_.notify_one();
            let (most, held) = (Arc::clone(&most_), Arc::clone(&now_held));
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut chunk = [0u8; 4096];
                // Requests are small: read until the body announced by content-length.
                loop {
                    let read = stream.read(&mut chunk).await.unwrap_or(0);
                    if read == 0 {
                        return;
                    }
                    request.extend_from_slice(&chunk[..read]);
                    let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text
                            .lines()
                            .find_map(|line| line.strip_prefix("content-length:"))
                            .and_then(|value| value.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let at_once = held.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(at_once, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                held.fetch_sub(1, Ordering::SeqCst);
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    Receiver {
        url,
        accepted,
        most_at_once,
    }
}

fn loopback_sender() -> Sender {
    let policy = NetworkPolicy {
        allow_http: true,
        allow_private_targets: false,
        allowed_cidrs: vec!["127.0.0.0/8".parse().unwrap()],
    };
    Sender::new(policy, Duration::from_secs(5)).unwrap()
}

fn quick() -> WorkerConfig {
    WorkerConfig {
        idle_wait: Duration::from_millis(10),
        ..WorkerConfig::default()
    }
}

async fn run_until(queue: &FakeQueue, config: WorkerConfig, done: impl Fn(&Script) -> bool) {
    let stop = queue.clone();
    let worker = run_on(queue.clone(), loopback_sender(), config, async move {
        stop.until(done).await;
    });
    tokio::time::timeout(Duration::from_secs(10), worker)
        .await
        .expect("the worker stops when asked to");
}

#[tokio::test]
async fn fans_out_then_sends_and_records_what_follows() {
    let receiver = receiver(Duration::ZERO).await;
    let now = mandate_domain::now();
    let good = claimed_to(&receiver.url, 1, now);
    // Outside the policy: refused at send time without any traffic.
    let refused = claimed_to("http://10.0.0.1/hook", 1, now);
    // The fan-out hands its first attempt over leased; the retry is claimed.
    let queue = FakeQueue::new(
        vec![
            Ok(FannedOut {
                events: 2,
                sendable: vec![good.clone()],
            }),
            Ok(FannedOut {
                events: 1,
                sendable: Vec::new(),
            }),
        ],
        vec![vec![refused.clone()]],
    );
    run_until(&queue, quick(), |script| script.records.len() == 2).await;

    queue.with(|script| {
        // Sending does not wait for the fan-out queue to empty (it had 2 batches).
        assert_eq!(script.fan_outs_before_first_claim, Some(1));
        let find = |id| {
            script
                .records
                .iter()
                .find(|(claimed, ..)| claimed.delivery.id == id)
                .unwrap()
        };
        let (_, outcome, ..) = find(good.delivery.id.clone());
        assert!(outcome.succeeded);
        assert_eq!(outcome.response_status, Some(200));
        let (_, outcome, after, at) = find(refused.delivery.id.clone());
        assert!(!outcome.succeeded);
        assert_eq!(outcome.response_status, None);
        assert!(
            outcome
                .response_body
                .as_deref()
                .unwrap()
                .starts_with("target refused")
        );
        let AfterFailure::RetryAt(retry_at) = *after else {
            panic!("expected a retry, got {after:?}");
        };
        let delay = (retry_at - *at).num_milliseconds();
        assert!((4000..=6000).contains(&delay), "{delay} ms");
    });
}

#[tokio::test(start_paused = true)]
async fn store_errors_never_stop_the_worker() {
    let now = mandate_domain::now();
    let refused = claimed_to("http://10.0.0.1/hook", 1, now);
    let queue = FakeQueue::new(vec![Err(()), Err(()), Err(())], vec![vec![refused]]);
    run_until(&queue, quick(), |script| script.records.len() == 1).await;
    queue.with(|script| {
        assert!(script.fan_out_calls >= 4);
        assert_eq!(script.records.len(), 1);
    });
}

#[tokio::test]
async fn shutdown_lets_sends_in_flight_finish() {
    let receiver = receiver(Duration::from_millis(300)).await;
    let slow = claimed_to(&receiver.url, 1, mandate_domain::now());
    let queue = FakeQueue::new(Vec::new(), vec![vec![slow]]);
    let accepted = Arc::clone(&receiver.accepted);
    let worker = run_on(queue.clone(), loopback_sender(), quick(), async move {
        accepted.notified().await;
    });
    tokio::time::timeout(Duration::from_secs(10), worker)
        .await
        .unwrap();
    queue.with(|script| {
        assert_eq!(script.records.len(), 1, "the send in flight was recorded");
        assert!(script.records[0].1.succeeded);
    });
}

#[tokio::test]
async fn shutdown_hands_back_what_was_not_sent_by_the_deadline() {
    // A receiver slower than the deadline: the two sends in flight are abandoned, the
    // three never started are handed back at once.
    let receiver = receiver(Duration::from_secs(30)).await;
    let now = mandate_domain::now();
    let batch: Vec<ClaimedDelivery> = (0..5).map(|_| claimed_to(&receiver.url, 1, now)).collect();
    let mut all: Vec<DeliveryId> = batch.iter().map(|c| c.delivery.id.clone()).collect();
    let queue = FakeQueue::new(Vec::new(), vec![batch]);
    let config = WorkerConfig {
        concurrency: 2,
        shutdown_timeout: Duration::from_millis(300),
        ..quick()
    };
    let accepted = Arc::clone(&receiver.accepted);
    let worker = run_on(queue.clone(), loopback_sender(), config, async move {
        accepted.notified().await;
    });
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(10), worker)
        .await
        .expect("the worker stops by the deadline");
    assert!(started.elapsed() < Duration::from_secs(5));
    queue.with(|script| {
        assert!(script.records.is_empty(), "nothing was answered in time");
        let mut released = script.released.clone();
        released.sort_by_key(ToString::to_string);
        all.sort_by_key(ToString::to_string);
        assert_eq!(released, all, "every claimed attempt was handed back once");
    });
}

#[tokio::test]
async fn sends_run_in_parallel_up_to_the_bound() {
    let receiver = receiver(Duration::from_millis(150)).await;
    let now = mandate_domain::now();
    let batch: Vec<ClaimedDelivery> = (0..10).map(|_| claimed_to(&receiver.url, 1, now)).collect();
    let queue = FakeQueue::new(Vec::new(), vec![batch]);
    let config = WorkerConfig {
        concurrency: 3,
        ..quick()
    };
    run_until(&queue, config, |script| script.records.len() == 10).await;
    let most = receiver.most_at_once.load(Ordering::SeqCst);
    assert!((2..=3).contains(&most), "{most} sends at once");
    queue.with(|script| {
        assert!(
            script
                .records
                .iter()
                .all(|(_, outcome, ..)| outcome.succeeded)
        );
    });
}

#[tokio::test]
async fn an_idle_worker_waits_for_work_and_stops_on_shutdown() {
    let queue = FakeQueue::new(Vec::new(), Vec::new());
    run_until(&queue, quick(), |script| script.waits >= 3).await;
    queue.with(|script| {
        assert!(script.claim_calls >= 3);
        assert!(script.records.is_empty());
    });
}

/// Another attempt to the endpoint of `claimed`.
fn another(claimed: &ClaimedDelivery) -> ClaimedDelivery {
    let mut another = claimed.clone();
    another.delivery = Delivery::first(
        &claimed.event.id,
        &claimed.endpoint.id,
        claimed.delivery.first_attempt_at,
    );
    another
}

#[tokio::test]
async fn fanned_out_attempts_beyond_an_endpoints_share_wait_for_it_or_are_handed_back() {
    let receiver = receiver(Duration::from_millis(300)).await;
    let now = mandate_domain::now();
    let first = claimed_to(&receiver.url, 1, now);
    let config = WorkerConfig {
        per_endpoint_concurrency: 1,
        ..quick()
    };
    let sender = loopback_sender();
    let waiting = waiting_shares(config.effective_lease(sender.timeout()), sender.timeout());
    // A burst well beyond a few shares is kept: handed back, it would wait behind every
    // later fan-out's attempts (the claim counts those waiting here as leased).
    assert!(waiting >= 8, "{waiting}");
    // One sent, what the lease covers waiting, two handed back.
    let mut busy = vec![first.clone()];
    busy.extend((0..waiting + 2).map(|_| another(&first)));
    let others: Vec<ClaimedDelivery> = (0..2).map(|_| claimed_to(&receiver.url, 1, now)).collect();
    let mut sendable = busy.clone();
    sendable.extend(others.iter().cloned());
    let queue = FakeQueue::new(
        vec![Ok(FannedOut {
            events: busy.len(),
            sendable,
        })],
        Vec::new(),
    );
    run_until(&queue, config, |script| script.records.len() == 4).await;
    // One of the busy endpoint's and both others' at once; the next of the busy one's
    // once the first ended.
    assert_eq!(receiver.most_at_once.load(Ordering::SeqCst), 3);
    queue.with(|script| {
        let beyond: Vec<DeliveryId> = busy[1 + waiting..]
            .iter()
            .map(|c| c.delivery.id.clone())
            .collect();
        // Handed back at once, before those still waiting at the shutdown.
        assert_eq!(script.released[..2], beyond[..]);
        assert!(
            script
                .records
                .iter()
                .any(|(claimed, ..)| claimed.delivery.id == busy[1].delivery.id)
        );
        for other in &others {
            assert!(
                script
                    .records
                    .iter()
                    .any(|(claimed, ..)| claimed.delivery.id == other.delivery.id)
            );
        }
    });
}

#[tokio::test]
async fn an_endpoint_that_keeps_failing_is_backed_off_without_holding_others_back() {
    let receiver = receiver(Duration::ZERO).await;
    let now = mandate_domain::now();
    // Outside the policy: each attempt fails at once.
    let failing = claimed_to("http://10.0.0.1/hook", 1, now);
    let mut first_round = vec![failing.clone()];
    first_round.extend((0..2).map(|_| another(&failing)));
    let queue = FakeQueue::new(Vec::new(), vec![first_round]);
    let later = vec![another(&failing), claimed_to(&receiver.url, 1, now)];
    let healthy = later[1].delivery.id.clone();
    let put_off = later[0].delivery.id.clone();
    // The next claim finds more once the three failures are recorded.
    let feeder = queue.clone();
    tokio::spawn(async move {
        feeder.until(|script| script.records.len() == 3).await;
        feeder.with(|script| script.claims.push_back(later));
        feeder.changed.notify_waiters();
    });
    run_until(&queue, quick(), |script| {
        script.records.len() == 4 && !script.postponed.is_empty()
    })
    .await;
    queue.with(|script| {
        let last_failure = script.records[..3].iter().map(|(.., at)| *at).max();
        assert_eq!(script.postponed.len(), 1);
        let (id, until) = &script.postponed[0];
        assert_eq!(id, &put_off);
        // The third failure in a row backs the endpoint off for a second.
        let wait = (*until - last_failure.unwrap()).num_milliseconds();
        assert!((900..=1000).contains(&wait), "{wait} ms");
        let (claimed, outcome, ..) = &script.records[3];
        assert_eq!(claimed.delivery.id, healthy);
        assert!(outcome.succeeded);
    });
}
