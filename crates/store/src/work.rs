//! Waking the webhook workers when there may be work: new events to fan out, new attempts to
//! send. On PostgreSQL a trigger announces every new event and attempt on the `mandate_work`
//! channel when its transaction commits, and one dedicated connection per store LISTENs to it,
//! so that a write on any replica wakes the workers of every replica. On SQLite (one process)
//! the store wakes its own workers after each such commit. Either way the waiting side's
//! timeout is only a fallback (attempts due later, leases that ended), never the way news
//! arrives.

use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use mandate_domain::ports::BoxError;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, NoTls};

/// The channel the migrations' trigger notifies.
pub(crate) const CHANNEL: &str = "mandate_work";

/// The first pause before reconnecting the listener, doubled after each failure up to
/// [`MAX_RECONNECT_PAUSE`].
const MIN_RECONNECT_PAUSE: Duration = Duration::from_millis(100);
const MAX_RECONNECT_PAUSE: Duration = Duration::from_secs(5);

/// A wake-up signal that loses nothing: news that arrives while nobody waits makes the next
/// wait return at once (the waiter may have been busy with the previous batch).
#[derive(Debug, Default)]
pub(crate) struct Signal {
    state: Mutex<SignalState>,
    notify: Notify,
}

#[derive(Debug, Default)]
struct SignalState {
    /// How many waits are in progress.
    waiters: usize,
    /// News arrived that no wait has returned for.
    pending: bool,
    /// How many wakes there have been.
    wakes: u64,
}

impl Signal {
    fn state(&self) -> MutexGuard<'_, SignalState> {
        // The state stays consistent whatever panicked while holding the lock.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// There may be work: wakes every waiter, or the next one when none waits.
    pub(crate) fn wake(&self) {
        {
            let mut state = self.state();
            state.wakes = state.wakes.wrapping_add(1);
            if state.waiters == 0 {
                state.pending = true;
            }
        }
        self.notify.notify_waiters();
    }

    /// Returns at the next [`wake`](Self::wake) (at once if one came while nobody waited), or
    /// after `timeout`.
    pub(crate) async fn wait(&self, timeout: Duration) {
        let mut notified = pin!(self.notify.notified());
        // Registered before the state is looked at: a wake after this point reaches us.
        notified.as_mut().enable();
        let seen = {
            let mut state = self.state();
            if std::mem::take(&mut state.pending) {
                return;
            }
            state.waiters += 1;
            state.wakes
        };
        let mut waiting = Waiting {
            signal: self,
            seen,
            returned: false,
        };
        // Elapsing is the fallback, not an error.
        let _ = tokio::time::timeout(timeout, notified).await;
        waiting.returned = true;
    }
}

/// Counts a wait in progress until it ends, however it ends: a caller may drop the future
/// (one branch of a `select!`) after a wake reached it but before it returned, and that news
/// is then kept for the next wait.
struct Waiting<'a> {
    signal: &'a Signal,
    /// The wake count when the wait began.
    seen: u64,
    returned: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut state = self.signal.state();
        state.waiters = state.waiters.saturating_sub(1);
        if !self.returned && state.wakes != self.seen {
            state.pending = true;
        }
    }
}

/// A store's source of wake-ups.
pub(crate) struct Work {
    signal: Arc<Signal>,
    listener: Option<Listener>,
}

/// The LISTEN connection of a PostgreSQL store, started by the first wait.
struct Listener {
    config: Option<tokio_postgres::Config>,
    connect_timeout: Duration,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Work {
    /// Wake-ups from `LISTEN mandate_work` on the database at `url`.
    pub(crate) fn postgres(url: &str, connect_timeout: Duration) -> Work {
        let config = match url.parse::<tokio_postgres::Config>() {
            Ok(mut config) => {
                // A peer that vanished without closing the connection is noticed within
                // about a minute, and the listener reconnects.
                config
                    .connect_timeout(connect_timeout)
                    .keepalives(true)
                    .keepalives_idle(Duration::from_secs(30))
                    .keepalives_interval(Duration::from_secs(10))
                    .keepalives_retries(3);
                Some(config)
            }
            Err(error) => {
                // The pool parsed the same URL; should the listener's parser disagree, the
                // workers still find their work when their waits time out.
                tracing::error!(%error, "the database URL does not suit the work listener");
                None
            }
        };
        Work {
            signal: Arc::default(),
            listener: Some(Listener {
                config,
                connect_timeout,
                task: Mutex::new(None),
            }),
        }
    }

    /// Wake-ups from this process's own writes.
    pub(crate) fn local() -> Work {
        Work {
            signal: Arc::default(),
            listener: None,
        }
    }

    /// Called after a commit that stored events or attempts. On PostgreSQL the commit has
    /// notified every listener, this store's included, already.
    pub(crate) fn committed(&self) {
        if self.listener.is_none() {
            self.signal.wake();
        }
    }

    /// Waits for news, at most `timeout`. On PostgreSQL the first call starts listening, and
    /// returns as soon as the listener is ready: what was committed before could not be heard.
    pub(crate) async fn wait(&self, timeout: Duration) {
        if let Some(listener) = &self.listener {
            listener.start(&self.signal);
        }
        self.signal.wait(timeout).await;
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        if let Some(listener) = &self.listener {
            let task = listener
                .task
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(task) = task {
                task.abort();
            }
        }
    }
}

impl Listener {
    fn start(&self, signal: &Arc<Signal>) {
        let Some(config) = &self.config else {
            return;
        };
        let mut task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if task.is_none() {
            *task = Some(tokio::spawn(listen(
                config.clone(),
                self.connect_timeout,
                signal.clone(),
            )));
        }
    }
}

/// Listens until aborted, reconnecting after failures.
async fn listen(config: tokio_postgres::Config, connect_timeout: Duration, signal: Arc<Signal>) {
    let mut pause = MIN_RECONNECT_PAUSE;
    loop {
        let mut listened = false;
        match session(&config, connect_timeout, &signal, &mut listened).await {
            Ok(()) => tracing::warn!("the work listener's connection closed; reconnecting"),
            Err(error) => tracing::warn!(%error, "the work listener failed; reconnecting"),
        }
        if listened {
            pause = MIN_RECONNECT_PAUSE;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_RECONNECT_PAUSE);
    }
}

/// One connection: LISTEN, then wake the waiters at every notification until the connection
/// ends. Waiters are woken once listening starts too, since news committed while the listener
/// was away was not heard.
async fn session(
    config: &tokio_postgres::Config,
    connect_timeout: Duration,
    signal: &Signal,
    listened: &mut bool,
) -> Result<(), BoxError> {
    let (client, mut connection) =
        match tokio::time::timeout(connect_timeout, config.connect(NoTls)).await {
            Ok(connected) => connected?,
            Err(_) => return Err(format!("no connection within {connect_timeout:?}").into()),
        };
    let statement = format!("LISTEN {CHANNEL}");
    let mut listen = pin!(client.batch_execute(&statement));
    loop {
        tokio::select! {
            outcome = &mut listen, if !*listened => {
                outcome?;
                *listened = true;
                signal.wake();
            }
            message = std::future::poll_fn(|cx| connection.poll_message(cx)) => match message {
                Some(Ok(AsyncMessage::Notification(_))) => signal.wake(),
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error.into()),
                None => return Ok(()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[tokio::test]
    async fn a_wake_while_nobody_waits_ends_the_next_wait_only() {
        let signal = Signal::default();
        signal.wake();
        let started = Instant::now();
        signal.wait(Duration::from_secs(5)).await;
        assert!(started.elapsed() < Duration::from_secs(1));
        let started = Instant::now();
        signal.wait(Duration::from_millis(100)).await;
        assert!(started.elapsed() >= Duration::from_millis(100));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wake_ends_every_wait_in_progress_and_leaves_nothing_behind() {
        let signal = Arc::new(Signal::default());
        let waits: Vec<_> = (0..3)
            .map(|_| {
                let signal = signal.clone();
                tokio::spawn(async move {
                    let started = Instant::now();
                    signal.wait(Duration::from_secs(5)).await;
                    started.elapsed()
                })
            })
            .collect();
        // Until all three wait, a wake could be taken for news nobody waited for.
        while signal.state().waiters < 3 {
            tokio::task::yield_now().await;
        }
        signal.wake();
        for wait in waits {
            let waited = wait.await.unwrap_or(Duration::MAX);
            assert!(waited < Duration::from_secs(1), "{waited:?}");
        }
        let started = Instant::now();
        signal.wait(Duration::from_millis(100)).await;
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert_eq!(signal.state().waiters, 0);
    }

    #[tokio::test]
    async fn a_wait_dropped_after_a_wake_leaves_the_news_for_the_next() {
        let signal = Signal::default();
        {
            // Waiting, then woken, then dropped before it returned: one branch of a
            // `select!` that another branch beat.
            let mut waiting = pin!(signal.wait(Duration::from_secs(30)));
            tokio::select! {
                biased;
                () = waiting.as_mut() => panic!("nothing woke it yet"),
                () = std::future::ready(()) => {}
            }
            signal.wake();
        }
        let started = Instant::now();
        signal.wait(Duration::from_secs(5)).await;
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
