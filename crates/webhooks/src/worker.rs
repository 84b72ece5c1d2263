//! The delivery worker: fans new events out to endpoints, claims due attempts, sends them in
//! parallel, and records each outcome with what follows it (a retry, giving up, or disabling
//! the endpoint). Any number of workers, in any number of replicas, share one store.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mandate_domain::ids::{DeliveryId, EndpointId};
use mandate_domain::ports::{ClaimedDelivery, StoreError};
use mandate_domain::usecases::{AfterFailure, ClaimedBatch, FannedOut, FinishedAttempt, Mandate};
use rand::Rng;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::fairness::{Admission, Shares, waiting_shares};
use crate::retry::{RetrySchedule, next_attempt_delay};
use crate::sender::{SendResult, Sender};

/// How the worker paces itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerConfig {
    /// When failed attempts are retried.
    pub schedule: RetrySchedule,
    /// An attempt that fails this long after the first attempt of its event disables the
    /// endpoint (default 5 days).
    pub disable_after: Duration,
    /// How many events are fanned out, and how many attempts claimed, per round (default 100).
    pub batch: u32,
    /// How long claimed events and attempts stay reserved for this worker; a worker that dies
    /// leaves them to others once it ends (default 60 s). The worker lengthens it when a full
    /// batch could take longer to send (see [`WorkerConfig::effective_lease`]).
    pub lease: Duration,
    /// How many sends run at once (default 32).
    pub concurrency: usize,
    /// How many of them one endpoint may hold (default 4), over every worker: endpoints whose
    /// receivers hang until the timeout cannot take every send.
    pub per_endpoint_concurrency: usize,
    /// The longest wait between rounds when there is no work (default 1 s): new work normally
    /// wakes the worker at once.
    pub idle_wait: Duration,
    /// Once shutdown is asked for, how long sends in flight may take to finish (default 25 s).
    /// Claimed attempts not yet started are handed back at once; those still in flight at the
    /// end are abandoned and handed back too, so another worker sends them without waiting
    /// for their lease to end.
    pub shutdown_timeout: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            schedule: RetrySchedule::default(),
            disable_after: Duration::from_secs(5 * 24 * 3600),
            batch: 100,
            lease: Duration::from_secs(60),
            concurrency: 32,
            per_endpoint_concurrency: 4,
            idle_wait: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(25),
        }
    }
}

impl WorkerConfig {
    /// The lease actually taken: at least long enough to send a whole batch, behind the
    /// sends already running when it was taken, when every receiver uses its full
    /// `send_timeout`, plus a margin for recording the outcomes, so that no other worker
    /// claims an attempt still in flight.
    pub fn effective_lease(&self, send_timeout: Duration) -> Duration {
        let concurrency = u32::try_from(self.concurrency.max(1)).unwrap_or(u32::MAX);
        let waves = self.batch.max(1).div_ceil(concurrency) + 1;
        let needed = (send_timeout + Duration::from_secs(5)).saturating_mul(waves);
        self.lease.max(needed)
    }
}

/// What follows a finished attempt: the outcome's `AfterFailure` (ignored when it succeeded).
///
/// `410 Gone` disables the endpoint; so does a failure at least `disable_after` after the
/// first attempt of the event; otherwise the schedule (with `jitter` in `[-1, 1]` and the
/// receiver's `Retry-After`) gives the next attempt, or gives up when it is exhausted.
pub fn after_failure(
    config: &WorkerConfig,
    claimed: &ClaimedDelivery,
    result: &SendResult,
    now: DateTime<Utc>,
    jitter: f64,
) -> AfterFailure {
    if result.outcome.succeeded {
        return AfterFailure::GiveUp;
    }
    if result.gone {
        return AfterFailure::Disable;
    }
    let failing_for = (now - claimed.delivery.first_attempt_at)
        .to_std()
        .unwrap_or(Duration::ZERO);
    if failing_for >= config.disable_after {
        return AfterFailure::Disable;
    }
    let delay = next_attempt_delay(
        &config.schedule,
        claimed.delivery.attempt,
        result.retry_after,
        jitter,
    );
    match delay.and_then(|delay| chrono::Duration::from_std(delay).ok()) {
        Some(delay) => AfterFailure::RetryAt(now + delay),
        None => AfterFailure::GiveUp,
    }
}

/// Runs the worker until `shutdown` completes. Claimed attempts not yet sent are then handed
/// back at once; sends in flight are finished and recorded, for at most
/// [`WorkerConfig::shutdown_timeout`], after which the rest are handed back too. Store errors
/// are logged and retried after a short pause; the worker never gives up.
pub async fn run(
    mandate: Mandate,
    sender: Sender,
    config: WorkerConfig,
    shutdown: impl Future<Output = ()>,
) {
    run_on(mandate, sender, config, shutdown).await;
}

/// The steps of the use cases the worker drives: [`Mandate`] in production, a fake in the
/// worker's own tests.
#[async_trait]
trait Queue: Clone + Send + Sync + 'static {
    async fn fan_out(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease: chrono::Duration,
    ) -> Result<FannedOut, StoreError>;

    async fn claim_sendable(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        per_endpoint: u32,
        lease: chrono::Duration,
    ) -> Result<ClaimedBatch, StoreError>;

    async fn release(&self, ids: &[DeliveryId]) -> Result<u64, StoreError>;

    async fn postpone(&self, ids: &[DeliveryId], until: DateTime<Utc>) -> Result<u64, StoreError>;

    async fn record_outcomes(&self, finished: &[FinishedAttempt]) -> Result<(), StoreError>;

    async fn wait_for_work(&self, timeout: Duration);
}

#[async_trait]
impl Queue for Mandate {
    async fn fan_out(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease: chrono::Duration,
    ) -> Result<FannedOut, StoreError> {
        Mandate::fan_out(self, now, limit, lease).await
    }

    async fn claim_sendable(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        per_endpoint: u32,
        lease: chrono::Duration,
    ) -> Result<ClaimedBatch, StoreError> {
        Mandate::claim_deliveries(self, now, limit, per_endpoint, lease).await
    }

    async fn release(&self, ids: &[DeliveryId]) -> Result<u64, StoreError> {
        self.store().release_deliveries(ids).await
    }

    async fn postpone(&self, ids: &[DeliveryId], until: DateTime<Utc>) -> Result<u64, StoreError> {
        self.store().postpone_deliveries(ids, until).await
    }

    async fn record_outcomes(&self, finished: &[FinishedAttempt]) -> Result<(), StoreError> {
        Mandate::record_outcomes(self, finished).await
    }

    async fn wait_for_work(&self, timeout: Duration) {
        self.store().wait_for_work(timeout).await;
    }
}

async fn run_on(
    queue: impl Queue,
    sender: Sender,
    config: WorkerConfig,
    shutdown: impl Future<Output = ()>,
) {
    let lease = config.effective_lease(sender.timeout());
    if lease != config.lease {
        tracing::info!(
            configured_ms = config.lease.as_millis() as u64,
            lease_ms = lease.as_millis() as u64,
            "webhook worker lengthened its lease to cover a full batch of sends"
        );
    }
    let waiting_shares = waiting_shares(lease, sender.timeout());
    let lease = chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
    let mut worker = Worker {
        queue,
        sender: Arc::new(sender),
        shares: Shares::new(config.per_endpoint_concurrency),
        config: Arc::new(config),
        lease,
        waiting_shares,
        waiting: VecDeque::new(),
        running: JoinSet::new(),
        in_flight: HashMap::new(),
        ended: Vec::new(),
        parked: HashMap::new(),
        to_postpone: Vec::new(),
        claim_again: false,
        next_claim: Instant::now(),
    };
    tracing::info!(
        attempts = worker.config.schedule.attempts(),
        concurrency = worker.config.concurrency,
        per_endpoint_concurrency = worker.config.per_endpoint_concurrency,
        "webhook worker started"
    );
    let signal = std::pin::pin!(shutdown);
    let mut shutdown = Shutdown::new(signal);
    let mut backoff = MIN_BACKOFF;
    // The queue had nothing at the last look (or failed): look again only once news arrives,
    // the idle wait ends, or the pause after a failure ends.
    let mut drained = false;
    let mut pause = None;
    loop {
        if shutdown.asked().await {
            break;
        }
        // More work is taken while earlier sends are still running, so that the fan-out and
        // the sends overlap.
        if !drained && worker.waiting.is_empty() {
            match worker.take_work().await {
                Ok(more) => {
                    backoff = MIN_BACKOFF;
                    // Anything that arrives meanwhile comes with news, which is never lost.
                    drained = !more;
                }
                Err(error) => {
                    tracing::warn!(
                        error = %mandate_domain::error_chain(&error),
                        retry_in_ms = backoff.as_millis() as u64,
                        "webhook worker: store error"
                    );
                    pause = Some(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    drained = true;
                }
            }
        }
        worker.start_sends();
        let may_take_more = drained && worker.waiting.is_empty();
        if worker.running.is_empty() {
            if may_take_more {
                let wait = worker.next_look();
                tokio::select! {
                    () = shutdown.wait() => break,
                    () = news_or_pause(&worker.queue, wait, pause.take()) => {
                        drained = false;
                    }
                }
            }
            continue;
        }
        let wait = worker.next_look();
        tokio::select! {
            joined = worker.running.join_next_with_id() => {
                worker.finished(joined).await;
                // An ended send frees its endpoint's share: attempts held back for it are
                // claimed at the next claim time, not only with news or after the idle wait.
                if Instant::now() >= worker.next_claim {
                    drained = false;
                }
            }
            () = shutdown.wait() => {}
            () = news_or_pause(&worker.queue, wait, pause), if may_take_more => {
                pause = None;
                drained = false;
            }
        }
    }
    worker.stop(&mut shutdown).await;
    tracing::info!("webhook worker stopped");
}

const MIN_BACKOFF: Duration = Duration::from_millis(500);
/// The most often due attempts are looked for while new events keep coming.
const CLAIM_INTERVAL: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The shutdown signal, remembered once it has fired: a future may not be polled again after
/// it completed, and the moment it fired starts the deadline for sends in flight.
struct Shutdown<'a, F> {
    signal: Pin<&'a mut F>,
    asked_at: Option<Instant>,
}

impl<'a, F: Future<Output = ()>> Shutdown<'a, F> {
    fn new(signal: Pin<&'a mut F>) -> Self {
        Self {
            signal,
            asked_at: None,
        }
    }

    /// Whether shutdown has been asked for, without waiting for it.
    async fn asked(&mut self) -> bool {
        if self.asked_at.is_none() {
            let fired = tokio::select! {
                biased;
                () = self.signal.as_mut() => true,
                () = std::future::ready(()) => false,
            };
            if fired {
                self.asked_at = Some(Instant::now());
            }
        }
        self.asked_at.is_some()
    }

    /// Completes once shutdown is asked for (at once if it was). Dropping it before then
    /// loses nothing.
    async fn wait(&mut self) {
        if self.asked_at.is_none() {
            self.signal.as_mut().await;
            self.asked_at = Some(Instant::now());
        }
    }
}

/// The label of `mandate_webhook_deliveries_total` for a recorded attempt.
fn outcome_label(succeeded: bool, after: &AfterFailure) -> &'static str {
    match (succeeded, after) {
        (true, _) => "succeeded",
        (false, AfterFailure::RetryAt(_)) => "retrying",
        (false, AfterFailure::GiveUp) => "gave_up",
        (false, AfterFailure::Disable) => "disabled",
    }
}

/// Counts attempts by what became of them.
fn count_deliveries(outcome: &'static str, how_many: u64) {
    if how_many > 0 {
        metrics::counter!("mandate_webhook_deliveries_total", "outcome" => outcome)
            .increment(how_many);
    }
}

struct Worker<Q> {
    queue: Q,
    sender: Arc<Sender>,
    config: Arc<WorkerConfig>,
    lease: chrono::Duration,
    /// How many shares of attempts an endpoint that answers may have parked here
    /// ([`waiting_shares`]).
    waiting_shares: usize,
    /// What each endpoint holds of the sends, and which are backed off.
    shares: Shares,
    /// Attempts this worker holds (leased) and has not started sending, each admitted.
    waiting: VecDeque<ClaimedDelivery>,
    /// Sends in progress, each ending with its attempt's outcome.
    running: JoinSet<FinishedAttempt>,
    /// The attempt of each send in progress, to hand back if it is abandoned.
    in_flight: HashMap<tokio::task::Id, (DeliveryId, EndpointId)>,
    /// Sends that have ended, not yet recorded.
    ended: Vec<FinishedAttempt>,
    /// Attempts beyond their endpoint's share, a few shares of them per endpoint, started
    /// as the endpoint's sends end (the rest are handed back).
    parked: HashMap<EndpointId, VecDeque<ClaimedDelivery>>,
    /// Attempts of endpoints backed off meanwhile, to put off until then.
    to_postpone: Vec<(DateTime<Utc>, DeliveryId)>,
    /// The last claim found attempts: there may be more, so look again at the next claim
    /// time instead of after the idle wait.
    claim_again: bool,
    /// When due attempts are next looked for.
    next_claim: Instant,
}

impl<Q: Queue> Worker<Q> {
    /// Fans out one batch of new events, whose first attempts come back leased to us and are
    /// started at once, then claims due attempts (retries, and attempts whose worker died) if
    /// it is time to look for them. Returns whether there may be more work right away.
    async fn take_work(&mut self) -> Result<bool, StoreError> {
        let batch = self.config.batch.max(1);
        let batch_size = usize::try_from(batch).unwrap_or(usize::MAX);
        let fanned = self
            .queue
            .fan_out(mandate_domain::now(), batch, self.lease)
            .await?;
        if fanned.events > 0 {
            tracing::debug!(events = fanned.events, "webhook events fanned out");
        }
        self.admit(fanned.sendable).await;
        // Events with many endpoints can make more attempts than the lease covers: hand the
        // excess back for any worker to claim.
        if self.waiting.len() > batch_size {
            let excess = self.waiting.split_off(batch_size);
            for claimed in &excess {
                self.shares.dropped(&claimed.delivery.endpoint_id);
            }
            let excess: Vec<DeliveryId> = excess
                .into_iter()
                .map(|claimed| claimed.delivery.id)
                .collect();
            self.release(&excess, "more than a batch").await;
        }
        self.start_sends();
        let mut more = fanned.events >= batch_size;
        let room = batch.saturating_sub(u32::try_from(self.waiting.len()).unwrap_or(batch));
        if room > 0 && Instant::now() >= self.next_claim {
            let per_endpoint =
                u32::try_from(self.config.per_endpoint_concurrency.max(1)).unwrap_or(u32::MAX);
            let ClaimedBatch { sendable, skipped } = self
                .queue
                .claim_sendable(mandate_domain::now(), room, per_endpoint, self.lease)
                .await?;
            count_deliveries("skipped", u64::try_from(skipped).unwrap_or(u64::MAX));
            if !sendable.is_empty() {
                tracing::debug!(deliveries = sendable.len(), "webhook deliveries claimed");
            }
            let full = sendable.len() + skipped >= usize::try_from(room).unwrap_or(usize::MAX);
            // New events come with news; due attempts mostly come with time (a retry's
            // schedule, a lease that ended), so looking for them after every event would cost
            // a transaction each for nothing.
            self.next_claim = if full {
                Instant::now()
            } else {
                Instant::now() + self.config.idle_wait.min(CLAIM_INTERVAL)
            };
            more |= full;
            self.claim_again = !sendable.is_empty();
            self.admit(sendable).await;
        }
        // Sends that ended while this round ran are recorded now, not at the next one's end.
        if !self.ended.is_empty() {
            self.finished(None).await;
        }
        Ok(more)
    }

    /// How long to wait for news before looking for work again: until the next claim time
    /// when the last claim found attempts, the idle wait otherwise.
    fn next_look(&self) -> Duration {
        if self.claim_again {
            self.next_claim.saturating_duration_since(Instant::now())
        } else {
            self.config.idle_wait
        }
    }

    /// Queues the attempts their endpoints' shares allow; hands back those over an
    /// endpoint's share (a later claim takes them once it has room) and puts off those of
    /// endpoints backed off until their backoff ends.
    async fn admit(&mut self, attempts: Vec<ClaimedDelivery>) {
        // Sends that ended since the loop last looked no longer hold their endpoint's share.
        self.reap();
        let now = mandate_domain::now();
        let mut over_share = Vec::new();
        let mut backed_off = Vec::new();
        for claimed in attempts {
            match self.shares.admit(&claimed.delivery.endpoint_id, now) {
                Admission::Send => self.waiting.push_back(claimed),
                Admission::OverShare => {
                    let endpoint = &claimed.delivery.endpoint_id;
                    // An endpoint that answers takes a burst of events in its stride (a
                    // burst waits here for its sends, not for a claim); one that fails keeps
                    // no more than a share waiting on it.
                    let shares = if self.shares.failing(endpoint) {
                        1
                    } else {
                        self.waiting_shares
                    };
                    let bound = self.config.per_endpoint_concurrency.max(1) * shares;
                    let parked = self.parked.entry(endpoint.clone()).or_default();
                    if parked.len() < bound {
                        parked.push_back(claimed);
                    } else {
                        over_share.push(claimed.delivery.id);
                    }
                }
                Admission::BackedOff(until) => backed_off.push((until, claimed.delivery.id)),
            }
        }
        // What may go goes before the bookkeeping of what may not.
        self.start_sends();
        self.release(&over_share, "over their endpoint's share of sends")
            .await;
        self.postpone(backed_off).await;
    }

    /// Puts attempts of backed-off endpoints off until their backoff ends.
    async fn postpone(&self, attempts: Vec<(DateTime<Utc>, DeliveryId)>) {
        let mut by_end: HashMap<DateTime<Utc>, Vec<DeliveryId>> = HashMap::new();
        for (until, id) in attempts {
            by_end.entry(until).or_default().push(id);
        }
        for (until, ids) in by_end {
            match self.queue.postpone(&ids, until).await {
                Ok(postponed) => count_deliveries("postponed", postponed),
                // Their leases end as usual, and they are put off again then.
                Err(error) => tracing::warn!(
                    attempts = ids.len(),
                    error = %mandate_domain::error_chain(&error),
                    "webhook worker could not put off the attempts of a backed-off endpoint"
                ),
            }
        }
    }

    /// Starts waiting attempts, up to `concurrency` sends at once.
    fn start_sends(&mut self) {
        let concurrency = self.config.concurrency.max(1);
        while self.running.len() < concurrency {
            let Some(claimed) = self.waiting.pop_front() else {
                return;
            };
            let id = (
                claimed.delivery.id.clone(),
                claimed.delivery.endpoint_id.clone(),
            );
            let task = self.running.spawn(deliver(
                Arc::clone(&self.sender),
                Arc::clone(&self.config),
                claimed,
            ));
            self.in_flight.insert(task.id(), id);
        }
    }

    /// Records a send that ended, together with every other send that has ended meanwhile
    /// (one transaction for all of them).
    async fn finished(&mut self, joined: Option<Joined>) {
        if let Some(joined) = joined {
            self.ended(joined);
        }
        self.reap();
        let finished = std::mem::take(&mut self.ended);
        self.record(&finished).await;
        let to_postpone = std::mem::take(&mut self.to_postpone);
        self.postpone(to_postpone).await;
    }

    /// Takes in the sends that have ended, without waiting: their endpoints' shares are free
    /// again at once, and their outcomes wait in `ended` for the next [`Worker::finished`].
    fn reap(&mut self) {
        while let Some(joined) = self.running.try_join_next_with_id() {
            self.ended(joined);
        }
    }

    fn ended(&mut self, joined: Joined) {
        match joined {
            Ok((task, attempt)) => {
                self.in_flight.remove(&task);
                self.backoff(&attempt);
                self.unpark(&attempt.claimed.delivery.endpoint_id);
                self.ended.push(attempt);
            }
            // Aborted at the shutdown deadline: it stays in `in_flight`, to be handed back.
            Err(error) if error.is_cancelled() => {}
            Err(error) => {
                if let Some((_, endpoint)) = self.in_flight.remove(&error.id()) {
                    self.shares.dropped(&endpoint);
                }
                tracing::error!(error = %error, "webhook send task failed");
            }
        }
    }

    /// A send of `endpoint` ended: one attempt parked for it may go, or all of them are put
    /// off if the endpoint is backed off now.
    fn unpark(&mut self, endpoint: &EndpointId) {
        let Some(parked) = self.parked.get_mut(endpoint) else {
            return;
        };
        if !parked.is_empty() {
            match self.shares.admit(endpoint, mandate_domain::now()) {
                Admission::Send => self.waiting.extend(parked.pop_front()),
                Admission::OverShare => {}
                Admission::BackedOff(until) => self
                    .to_postpone
                    .extend(parked.drain(..).map(|claimed| (until, claimed.delivery.id))),
            }
        }
        if parked.is_empty() {
            self.parked.remove(endpoint);
        }
    }

    /// Counts a finished send towards its endpoint's failure streak, backing the endpoint off
    /// when it keeps failing.
    fn backoff(&mut self, attempt: &FinishedAttempt) {
        let endpoint = &attempt.claimed.delivery.endpoint_id;
        if let Some(until) =
            self.shares
                .finished(endpoint, attempt.outcome.succeeded, attempt.finished_at)
        {
            tracing::info!(
                endpoint_id = %endpoint,
                until = %until,
                "webhook endpoint keeps failing: its attempts wait until its backoff ends"
            );
        }
    }

    async fn record(&self, finished: &[FinishedAttempt]) {
        if finished.is_empty() {
            return;
        }
        match self.queue.record_outcomes(finished).await {
            Ok(()) => {
                for attempt in finished {
                    count_deliveries(
                        outcome_label(attempt.outcome.succeeded, &attempt.after_failure),
                        1,
                    );
                }
            }
            Err(error) => {
                count_deliveries(
                    "unrecorded",
                    u64::try_from(finished.len()).unwrap_or(u64::MAX),
                );
                // Their leases run out and the attempts are made again: at-least-once.
                tracing::warn!(
                    attempts = finished.len(),
                    error = %mandate_domain::error_chain(&error),
                    "webhook outcomes not recorded; the attempts will be repeated"
                );
            }
        }
    }

    /// Shutdown: attempts not started are handed back at once; sends in flight get until the
    /// shutdown deadline, and are recorded as they end; those still running then are
    /// abandoned and handed back too.
    async fn stop(&mut self, shutdown: &mut Shutdown<'_, impl Future<Output = ()>>) {
        let parked = self.parked.drain().flat_map(|(_, parked)| parked);
        let not_started: Vec<DeliveryId> = self
            .waiting
            .drain(..)
            .chain(parked)
            .map(|claimed| claimed.delivery.id)
            .collect();
        self.release(&not_started, "not started").await;
        let deadline =
            shutdown.asked_at.unwrap_or_else(Instant::now) + self.config.shutdown_timeout;
        while !self.running.is_empty() {
            tokio::select! {
                joined = self.running.join_next_with_id() => self.finished(joined).await,
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        self.running.abort_all();
        while let Some(joined) = self.running.join_next_with_id().await {
            self.finished(Some(joined)).await;
        }
        self.finished(None).await;
        let abandoned: Vec<DeliveryId> = self.in_flight.drain().map(|(_, (id, _))| id).collect();
        self.release(&abandoned, "in flight at the shutdown deadline")
            .await;
    }

    /// Hands claimed attempts back to the queue. A failure only delays them: their lease
    /// ends as usual.
    async fn release(&self, ids: &[DeliveryId], why: &'static str) {
        if ids.is_empty() {
            return;
        }
        match self.queue.release(ids).await {
            Ok(released) => {
                count_deliveries("released", released);
                tracing::info!(released, why, "webhook worker handed claimed attempts back");
            }
            Err(error) => tracing::warn!(
                attempts = ids.len(),
                why,
                error = %mandate_domain::error_chain(&error),
                "webhook worker could not hand attempts back; they are sent again when their lease ends"
            ),
        }
    }
}

/// Waits for news of work, at most the idle wait — or, after a store failure, for the pause
/// before looking again.
async fn news_or_pause(queue: &impl Queue, idle_wait: Duration, pause: Option<Duration>) {
    match pause {
        Some(pause) => tokio::time::sleep(pause).await,
        None => queue.wait_for_work(idle_wait).await,
    }
}

type Joined = Result<(tokio::task::Id, FinishedAttempt), tokio::task::JoinError>;

/// Sends one attempt and decides what follows it.
async fn deliver(
    sender: Arc<Sender>,
    config: Arc<WorkerConfig>,
    claimed: ClaimedDelivery,
) -> FinishedAttempt {
    let result = sender.send(&claimed, mandate_domain::now()).await;
    let now = mandate_domain::now();
    let jitter = rand::thread_rng().gen_range(-1.0..=1.0);
    let after = after_failure(&config, &claimed, &result, now, jitter);
    let delivery = &claimed.delivery;
    if result.outcome.succeeded {
        tracing::debug!(
            delivery_id = %delivery.id,
            event_id = %delivery.event_id,
            endpoint_id = %delivery.endpoint_id,
            attempt = delivery.attempt,
            status = result.outcome.response_status,
            duration_ms = result.outcome.duration_ms,
            "webhook delivered"
        );
    } else {
        tracing::info!(
            delivery_id = %delivery.id,
            event_id = %delivery.event_id,
            endpoint_id = %delivery.endpoint_id,
            attempt = delivery.attempt,
            status = result.outcome.response_status,
            duration_ms = result.outcome.duration_ms,
            next = ?after,
            "webhook delivery failed"
        );
        if after == AfterFailure::Disable {
            tracing::warn!(
                endpoint_id = %delivery.endpoint_id,
                gone = result.gone,
                "webhook endpoint disabled"
            );
        }
    }
    FinishedAttempt {
        claimed,
        outcome: result.outcome,
        after_failure: after,
        finished_at: now,
    }
}

#[cfg(test)]
mod tests;
