//! The attempt recorder: takes attempt records from event ingestion without ever blocking it,
//! writes them to the store in batches from one background task, and prunes records older
//! than the retention.
//!
//! Owns the in-memory buffer between an event and its row, and its bound. It must never make a
//! caller wait on the database: [`Recorder::record`] is synchronous and only counts and
//! enqueues. While the database is down the records stay buffered (up to `max_buffered`; beyond
//! that new ones are dropped and counted) and the writer retries with a capped backoff, so a
//! brief outage loses nothing. It decides nothing about what an attempt means (`esl::hangup`
//! reads them, `ingest` attributes them) and renders nothing.
//!
//! Metrics: `trunkline_attempts_written_total` (rows inserted), `trunkline_attempts_dropped_total`
//! (records refused at the bound or lost at shutdown), `trunkline_attempts_buffered` (accepted,
//! not yet stored), `trunkline_attempts_pruned_total`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::model::Attempt;
use crate::store::Store;

/// How the recorder batches, bounds and prunes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecorderSettings {
    /// Records per insert transaction; a full batch is written at once.
    pub batch: usize,
    /// A partial batch is written at least this often.
    pub flush_every: Duration,
    /// Records accepted but not yet stored, at most; more are dropped and counted.
    pub max_buffered: usize,
    /// Records that ended longer ago than this are pruned.
    pub retention: Duration,
    pub prune_every: Duration,
}

impl Default for RecorderSettings {
    fn default() -> Self {
        RecorderSettings {
            batch: 500,
            flush_every: Duration::from_secs(1),
            max_buffered: 100_000,
            retention: Duration::from_secs(7 * 24 * 3600),
            prune_every: Duration::from_secs(600),
        }
    }
}

/// First wait after a failed write; doubled per failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait between retries while the database stays down: a returning database is
/// written to within this long.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long the final flush at shutdown may take: shutdown must not hang on a dead database.
const STOP_FLUSH: Duration = Duration::from_secs(5);
/// Rows per prune statement (each its own short transaction).
const PRUNE_BATCH: u32 = 1_000;

/// The counters the handle and the writer share.
#[derive(Debug)]
struct Shared {
    max_buffered: usize,
    /// Accepted by [`Recorder::record`] and not yet stored or dropped: the channel plus the
    /// writer's buffer. This, not the channel, is what bounds memory.
    pending: AtomicUsize,
    dropped: AtomicU64,
    failures: AtomicU64,
    pruned: AtomicU64,
    /// Records the database has taken (written, or already there): what tests wait on.
    flushed: watch::Sender<u64>,
}

impl Shared {
    fn release(&self, n: usize) {
        let left = self.pending.fetch_sub(n, Ordering::AcqRel) - n;
        metrics::gauge!("trunkline_attempts_buffered").set(left as f64);
    }

    fn drop_records(&self, n: usize) {
        self.dropped.fetch_add(n as u64, Ordering::Relaxed);
        metrics::counter!("trunkline_attempts_dropped_total").increment(n as u64);
    }
}

/// The handle event ingestion records through. Cheap to clone; every clone feeds one writer.
#[derive(Debug, Clone)]
pub struct Recorder {
    tx: mpsc::UnboundedSender<Attempt>,
    shared: Arc<Shared>,
}

impl Recorder {
    /// Hands a record to the writer. Never blocks and never awaits: when `max_buffered` records
    /// are already waiting (the database slow or down), this one is dropped and counted.
    pub fn record(&self, attempt: Attempt) {
        let max = self.shared.max_buffered;
        let accepted = self
            .shared
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            });
        match accepted {
            Ok(n) => {
                metrics::gauge!("trunkline_attempts_buffered").set((n + 1) as f64);
                if self.tx.send(attempt).is_err() {
                    // The writer has stopped (shutdown): nothing will store this one.
                    self.shared.release(1);
                    self.shared.drop_records(1);
                }
            }
            Err(_) => self.shared.drop_records(1),
        }
    }

    /// Records the database has taken so far (written, or found already stored).
    pub fn flushed(&self) -> u64 {
        *self.shared.flushed.borrow()
    }

    /// Waits until at least `n` records have been taken by the database.
    pub async fn wait_flushed(&self, n: u64) {
        let mut flushed = self.shared.flushed.subscribe();
        // The sender lives in `shared`, which this handle holds: `wait_for` cannot fail.
        let _ = flushed.wait_for(|&f| f >= n).await;
    }

    /// Records dropped: refused at the bound, or still unwritten when the writer stopped.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Records accepted and not yet stored.
    pub fn buffered(&self) -> usize {
        self.shared.pending.load(Ordering::Acquire)
    }

    /// Insert transactions that failed (each is retried).
    pub fn failures(&self) -> u64 {
        self.shared.failures.load(Ordering::Relaxed)
    }

    /// Records the pruner has deleted so far.
    pub fn pruned(&self) -> u64 {
        self.shared.pruned.load(Ordering::Relaxed)
    }
}

/// Starts the writer and the pruner on the current runtime. They run until `stop` turns true
/// (or its sender is dropped); the writer then makes one last, time-bounded flush.
pub fn spawn(
    store: Store,
    settings: RecorderSettings,
    stop: watch::Receiver<bool>,
) -> (Recorder, JoinHandle<()>) {
    let settings = RecorderSettings {
        batch: settings.batch.max(1),
        max_buffered: settings.max_buffered.max(1),
        ..settings
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        max_buffered: settings.max_buffered,
        pending: AtomicUsize::new(0),
        dropped: AtomicU64::new(0),
        failures: AtomicU64::new(0),
        pruned: AtomicU64::new(0),
        flushed: watch::Sender::new(0),
    });
    let writer = Writer {
        store: store.clone(),
        batch: settings.batch,
        buffer: VecDeque::new(),
        shared: shared.clone(),
        backoff: FIRST_BACKOFF,
        retry_at: None,
    };
    let task = tokio::spawn({
        let shared = shared.clone();
        let settings = settings.clone();
        async move {
            tokio::join!(
                writer.run(rx, settings.flush_every, stop.clone()),
                prune_loop(store, &settings, &shared, stop),
            );
        }
    });
    (Recorder { tx, shared }, task)
}

/// The writer's state: the records taken off the channel and the retry schedule.
struct Writer {
    store: Store,
    batch: usize,
    buffer: VecDeque<Attempt>,
    shared: Arc<Shared>,
    backoff: Duration,
    /// While the last write failed: when to try again (no write before).
    retry_at: Option<Instant>,
}

impl Writer {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Attempt>,
        flush_every: Duration,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut timer = tokio::time::interval(flush_every);
        timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
        timer.tick().await;
        let mut open = true;
        while open && !*stop.borrow() {
            let retry_at = self.retry_at;
            tokio::select! {
                changed = stop.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                received = rx.recv(), if open => match received {
                    Some(attempt) => {
                        self.buffer.push_back(attempt);
                        // Take whatever else is already queued without waking per record.
                        while let Ok(attempt) = rx.try_recv() {
                            self.buffer.push_back(attempt);
                        }
                        if self.buffer.len() >= self.batch && self.retry_at.is_none() {
                            self.flush(false).await;
                        }
                    }
                    // Every handle is gone: store what is left and stop.
                    None => open = false,
                },
                _ = timer.tick(), if retry_at.is_none() => self.flush(true).await,
                _ = tokio::time::sleep_until(retry_at.unwrap_or_else(Instant::now)), if retry_at.is_some() => {
                    self.flush(true).await;
                }
            }
        }
        // Records sent before the stop are still in the channel: they count as buffered too.
        rx.close();
        while let Ok(attempt) = rx.try_recv() {
            self.buffer.push_back(attempt);
        }
        self.retry_at = None;
        let left = match tokio::time::timeout(STOP_FLUSH, self.flush_until_empty()).await {
            Ok(()) => 0,
            Err(_) => self.buffer.len(),
        };
        if left > 0 {
            tracing::error!(
                lost = left,
                "attempt records not stored at shutdown: the database did not take them in time"
            );
            self.shared.release(left);
            self.shared.drop_records(left);
        }
    }

    /// At shutdown: keeps writing (with the backoff between failures) until the buffer is
    /// empty; the caller bounds the time.
    async fn flush_until_empty(&mut self) {
        while !self.buffer.is_empty() {
            if let Some(at) = self.retry_at {
                tokio::time::sleep_until(at).await;
            }
            self.flush(true).await;
        }
    }

    /// Writes full batches, and with `partial` the last, smaller one too. Stops at the first
    /// failure, keeping every record, and schedules the retry.
    async fn flush(&mut self, partial: bool) {
        self.retry_at = None;
        while self.buffer.len() >= self.batch || (partial && !self.buffer.is_empty()) {
            let n = self.batch.min(self.buffer.len());
            let batch = &self.buffer.make_contiguous()[..n];
            match self.store.insert_attempts(batch).await {
                Ok(written) => {
                    self.buffer.drain(..n);
                    self.backoff = FIRST_BACKOFF;
                    self.shared.release(n);
                    metrics::counter!("trunkline_attempts_written_total").increment(written);
                    self.shared.flushed.send_modify(|f| *f += n as u64);
                }
                Err(e) => {
                    self.shared.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        error = %e,
                        buffered = self.buffer.len(),
                        retry_in_ms = self.backoff.as_millis() as u64,
                        "cannot store attempt records; keeping them and retrying"
                    );
                    self.retry_at = Some(Instant::now() + self.backoff);
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                    return;
                }
            }
        }
    }
}

/// Every `prune_every`, deletes the records that ended more than `retention` ago; the first
/// prune runs at once, so a node restarted after a long stop sheds old rows without waiting.
async fn prune_loop(
    store: Store,
    settings: &RecorderSettings,
    shared: &Shared,
    mut stop: watch::Receiver<bool>,
) {
    let retention = chrono::Duration::from_std(settings.retention).unwrap_or(chrono::Duration::MAX);
    let mut timer = tokio::time::interval(settings.prune_every);
    timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
    while !*stop.borrow() {
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
            _ = timer.tick() => {}
        }
        let Some(cutoff) = Utc::now().checked_sub_signed(retention) else {
            continue;
        };
        let pruned = tokio::select! {
            // A prune is many short statements; shutdown need not wait for the rest.
            _ = stop.changed() => return,
            pruned = store.prune_attempts(cutoff, PRUNE_BATCH) => pruned,
        };
        match pruned {
            Ok(0) => {}
            Ok(n) => {
                shared.pruned.fetch_add(n, Ordering::Relaxed);
                metrics::counter!("trunkline_attempts_pruned_total").increment(n);
                tracing::info!(pruned = n, "old attempt records pruned");
            }
            Err(e) => {
                tracing::warn!(error = %e, "attempt pruning failed; retrying at the next interval")
            }
        }
    }
}
