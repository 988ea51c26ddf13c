//! The background thread of a deferred [`CallLogLayer`](crate::CallLogLayer): agent
//! threads only capture each event and queue it; this thread builds the SDK log records
//! and hands them to the logger provider.
//!
//! The queue is a bounded channel. Agent threads never block on it: when it is full the
//! record is dropped and counted. They do not wake the emitter for every record either
//! (a wake is a system call, more than the whole capture costs): the emitter drains the
//! queue every [`TICK`], and the agent thread whose record brings the backlog to a
//! quarter of the capacity wakes it early. Draining and shutting down wake it directly.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
        mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError},
    },
    thread::{self, JoinHandle, Thread},
    time::Duration,
};

use opentelemetry_sdk::{error::OTelSdkError, logs::SdkLogger};
use tracing::Dispatch;

use crate::{Error, Result, record::Captured};

/// How many captured events may wait for the emitter by default.
pub const DEFAULT_LOG_QUEUE_CAPACITY: usize = 2048;
/// The emitter thread's name.
const THREAD_NAME: &str = "callscope-log-emitter";
/// How long the emitter sleeps when nobody wakes it. The SDK's batch processor that
/// receives the records exports on a one-second schedule, so this adds little latency.
const TICK: Duration = Duration::from_millis(100);
/// How many records the emitter takes before it publishes its progress to the agents'
/// backlog counter (once per record would bounce that cache line between cores).
const RELEASE_EVERY: usize = 64;

enum Message {
    Record(Captured),
    /// Acknowledged once every message before it has been handled.
    Drain(SyncSender<()>),
    Stop,
}

/// State shared by the agents' side and the emitter.
#[derive(Debug, Default)]
struct Shared {
    /// Records queued and not yet taken by the emitter (an upper bound: the emitter
    /// releases its progress in steps of [`RELEASE_EVERY`]).
    backlog: AtomicUsize,
    /// Records dropped because the queue was full.
    dropped: AtomicU64,
}

/// The agents' end of the queue, owned by the layer.
pub(crate) struct Queue {
    tx: SyncSender<Message>,
    shared: Arc<Shared>,
    emitter: Thread,
    capacity: usize,
    wake_at: usize,
}

impl Queue {
    /// Queues a captured event without blocking; drops and counts it when the queue is
    /// full, silently discards it once the emitter has stopped.
    #[inline]
    pub(crate) fn push(&self, captured: Captured) {
        // Counted before it is sent, so the emitter never releases a record before it
        // was counted; uncounted again if it is not sent.
        let backlog = self.shared.backlog.fetch_add(1, Ordering::Relaxed) + 1;
        match self.tx.try_send(Message::Record(captured)) {
            Ok(()) => {
                if backlog == self.wake_at {
                    self.emitter.unpark();
                }
            }
            Err(TrySendError::Full(_)) => {
                self.shared.backlog.fetch_sub(1, Ordering::Relaxed);
                self.emitter.unpark();
                if self.shared.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                    eprintln!(
                        "callscope-tracing: the call-log queue is full ({} records); \
                         dropping records until {THREAD_NAME} catches up",
                        self.capacity
                    );
                }
            }
            // After shutdown: the logger provider is gone too.
            Err(TrySendError::Disconnected(_)) => {
                self.shared.backlog.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// The emitter thread of a deferred [`CallLogLayer`](crate::CallLogLayer), returned by
/// [`CallLogLayer::deferred`](crate::CallLogLayer::deferred). Dropping it drains the
/// queue and stops the thread.
#[must_use = "dropping the emitter stops it"]
pub struct LogEmitter {
    tx: SyncSender<Message>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for LogEmitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogEmitter")
            .field("running", &self.thread.is_some())
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl LogEmitter {
    /// How many records were dropped because the queue was full.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Returns once every record queued before the call has been handed to the logger
    /// provider (flush the provider afterwards to export them). Blocks while the queue
    /// is full.
    ///
    /// # Errors
    ///
    /// [`Error::Sdk`] when the emitter thread has stopped.
    pub fn drain(&self) -> Result<()> {
        let thread = self.thread.as_ref().ok_or_else(stopped)?.thread();
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        // Woken before the send, which may wait for room, and after it, in case the
        // emitter found the queue empty in between.
        thread.unpark();
        self.tx
            .send(Message::Drain(done_tx))
            .map_err(|_| stopped())?;
        thread.unpark();
        done_rx.recv().map_err(|_| stopped())
    }

    /// Hands every queued record to the logger provider and stops the thread. Records
    /// emitted afterwards are discarded.
    ///
    /// # Errors
    ///
    /// [`Error::Sdk`] when the emitter thread had stopped early (it panicked).
    pub fn shutdown(mut self) -> Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> Result<()> {
        let Some(handle) = self.thread.take() else {
            return Ok(());
        };
        handle.thread().unpark();
        // Fails only if the thread is gone, which `join` reports.
        let _ = self.tx.send(Message::Stop);
        handle.thread().unpark();
        let joined = handle.join();
        let dropped = self.dropped();
        if dropped > 0 {
            eprintln!("callscope-tracing: {dropped} call-log records were dropped (queue full)");
        }
        joined.map_err(|_| stopped())
    }
}

impl Drop for LogEmitter {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn stopped() -> Error {
    Error::Sdk(OTelSdkError::InternalFailure(format!(
        "the {THREAD_NAME} thread has stopped"
    )))
}

/// Starts the emitter thread for `logger` with a queue of `capacity` (at least one).
pub(crate) fn spawn(logger: SdkLogger, capacity: usize) -> Result<(Queue, LogEmitter)> {
    let capacity = capacity.max(1);
    let (tx, rx) = mpsc::sync_channel(capacity);
    let shared = Arc::new(Shared::default());
    let thread = {
        let shared = Arc::clone(&shared);
        thread::Builder::new()
            .name(THREAD_NAME.to_owned())
            .spawn(move || run(&rx, &logger, &shared))
            .map_err(Error::Spawn)?
    };
    let queue = Queue {
        tx: tx.clone(),
        shared: Arc::clone(&shared),
        emitter: thread.thread().clone(),
        capacity,
        wake_at: (capacity / 4).max(1),
    };
    let emitter = LogEmitter {
        tx,
        shared,
        thread: Some(thread),
    };
    Ok((queue, emitter))
}

fn run(rx: &Receiver<Message>, logger: &SdkLogger, shared: &Shared) {
    // Events the SDK traces from this thread must not come back through the layer and
    // into this queue; they are dropped here instead.
    let _quiet = tracing::dispatcher::set_default(&Dispatch::none());
    loop {
        let mut taken = 0;
        let stop = loop {
            match rx.try_recv() {
                Ok(Message::Record(captured)) => {
                    captured.emit(logger);
                    taken += 1;
                    if taken == RELEASE_EVERY {
                        shared.backlog.fetch_sub(taken, Ordering::Relaxed);
                        taken = 0;
                    }
                }
                Ok(Message::Drain(done)) => {
                    let _ = done.send(());
                }
                Ok(Message::Stop) | Err(TryRecvError::Disconnected) => break true,
                Err(TryRecvError::Empty) => break false,
            }
        };
        shared.backlog.fetch_sub(taken, Ordering::Relaxed);
        if stop {
            return;
        }
        thread::park_timeout(TICK);
    }
}
