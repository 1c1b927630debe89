//! Event Socket: keeping every FreeSWITCH node's sofia gateways in step with the database
//! (DESIGN.md §5, FREESWITCH.md §2.2 and §3), and their live state.
//!
//! - [`client`]: our one trait over the Event Socket, its commands, events and error type; the
//!   only file that uses `freeswitch-esl-tokio`.
//! - [`gateway_status`]: parsing `sofia xmlstatus gateway` (pure).
//! - [`hangup`]: reading a leg's `CHANNEL_HANGUP_COMPLETE` (pure).
//! - [`feed`]: what a session hands on of what it reads ([`feed::NodeSink`]); `ingest`
//!   consumes it. Nothing here knows what a leg or a gateway state means to carrier quality.
//! - [`reconcile`]: desired vs applied vs running → commands, and verification (pure).
//! - [`supervisor`]: one task per switch (lease, connection, triggers, backoff, durability).
//! - [`live`]: the in-memory view the API reads.
//!
//! [`EslRuntime`] starts and stops the supervisors as switches come and go.

pub mod client;
pub mod feed;
pub mod gateway_status;
pub mod hangup;
pub mod live;
pub mod reconcile;
pub mod supervisor;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use self::client::FsConnection;
use self::live::{ConnectionState, LiveState};
use self::supervisor::{SyncContext, supervise};
use crate::model::Switch;
use crate::store::StoreError;

struct Running {
    switch: Switch,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// The set of running supervisors, matched to the stored switches by [`EslRuntime::sync`].
pub struct EslRuntime {
    ctx: Arc<SyncContext>,
    running: Mutex<HashMap<Uuid, Running>>,
    /// Set by [`EslRuntime::shutdown`]: no supervisor starts after it.
    stopped: std::sync::atomic::AtomicBool,
}

impl EslRuntime {
    pub fn new(ctx: SyncContext) -> Self {
        EslRuntime {
            ctx: Arc::new(ctx),
            running: Mutex::new(HashMap::new()),
            stopped: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn live(&self) -> &LiveState {
        &self.ctx.live
    }

    /// This instance's lease holder id.
    pub fn instance(&self) -> &str {
        &self.ctx.instance
    }

    /// Starts a supervisor for every enabled switch without one, restarts those whose
    /// connection settings changed, stops those disabled or deleted.
    pub async fn sync(&self) -> Result<(), StoreError> {
        let switches = self.ctx.store.list_switches().await?;
        let mut running = self.running.lock().await;
        let stopped = self.stopped.load(std::sync::atomic::Ordering::SeqCst);
        let wanted: HashMap<Uuid, Switch> = switches
            .into_iter()
            .filter(|s| {
                if !s.enabled {
                    self.ctx
                        .live
                        .set_connection(s.id, ConnectionState::Disabled, None);
                }
                s.enabled && !stopped
            })
            .map(|s| (s.id, s))
            .collect();
        // A supervisor also ends by itself when it finds its switch disabled or deleted before
        // this list caught up; one that ended is started again if the switch is wanted.
        let obsolete: Vec<Uuid> = running
            .iter()
            .filter(|(id, r)| {
                r.task.is_finished() || wanted.get(id).is_none_or(|s| !s.supervised_as(&r.switch))
            })
            .map(|(id, _)| *id)
            .collect();
        for id in obsolete {
            if let Some(r) = running.remove(&id) {
                stop(r).await;
            }
            if !wanted.contains_key(&id) {
                self.ctx.live.remove(id);
            }
        }
        for (id, switch) in wanted {
            if running.contains_key(&id) {
                continue;
            }
            let (tx, rx) = watch::channel(false);
            let task = tokio::spawn(supervise::<FsConnection>(
                self.ctx.clone(),
                switch.clone(),
                rx,
            ));
            running.insert(
                id,
                Running {
                    switch,
                    stop: tx,
                    task,
                },
            );
        }
        Ok(())
    }

    /// Stops every supervisor (each releases its lease) and waits for them.
    pub async fn shutdown(&self) {
        self.stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let all: Vec<Running> = self.running.lock().await.drain().map(|(_, r)| r).collect();
        for r in all {
            stop(r).await;
        }
    }
}

async fn stop(r: Running) {
    let _ = r.stop.send(true);
    let mut task = r.task;
    if tokio::time::timeout(std::time::Duration::from_secs(5), &mut task)
        .await
        .is_err()
    {
        task.abort();
    }
}
