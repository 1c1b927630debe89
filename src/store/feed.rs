//! The change feed: the latest committed configuration version, as a `watch` value that only
//! goes up.
//!
//! This process's own writes raise it right after COMMIT. On PostgreSQL a background task also
//! `LISTEN`s on `trunkline_config` for other instances' writes. Notifications sent while that
//! connection is down are lost for good, so after every (re)connect the task reads
//! `config_version` instead of trusting the channel; the application's slow refresh timer is the
//! last safety net. The task never panics, backs off on errors, and ends when the last [`Store`]
//! clone is dropped (it holds only a `Weak`, and a stop signal fires when the feed goes).
//!
//! [`Store`]: super::Store

use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use tokio::sync::{oneshot, watch};

use super::CONFIG_VERSION;

/// The channel every instance notifies and listens on.
const CHANNEL: &str = "trunkline_config";
/// Sent inside each configuration write's transaction (PostgreSQL delivers it at COMMIT, and
/// not at all on rollback); the payload is the new version.
pub(super) const NOTIFY: &str = "SELECT pg_notify('trunkline_config', $1)";
/// SQLSTATE `undefined_table`.
const UNDEFINED_TABLE: &str = "42P01";
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub(super) struct Feed {
    version: watch::Sender<u64>,
    /// Dropped with the feed, which wakes the listener task so it ends at once.
    _stop: Option<oneshot::Sender<()>>,
}

impl Feed {
    pub fn new() -> Feed {
        Feed {
            version: watch::Sender::new(0),
            _stop: None,
        }
    }

    /// A feed with the PostgreSQL listener task behind it. `pool` reads the version;
    /// the listener gets its own single connection from `options`.
    pub fn with_listener(pool: PgPool, options: PgConnectOptions) -> Arc<Feed> {
        let (stop, stopped) = oneshot::channel();
        let feed = Arc::new(Feed {
            version: watch::Sender::new(0),
            _stop: Some(stop),
        });
        tokio::spawn(listen(pool, options, Arc::downgrade(&feed), stopped));
        feed
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Raises the value to `version`; an older or equal version (a late notification, a
    /// concurrent write that committed first) changes nothing and wakes nobody.
    pub fn raise(&self, version: u64) {
        self.version.send_if_modified(|current| {
            let newer = version > *current;
            if newer {
                *current = version;
            }
            newer
        });
    }
}

async fn listen(
    pool: PgPool,
    options: PgConnectOptions,
    feed: Weak<Feed>,
    mut stopped: oneshot::Receiver<()>,
) {
    // One connection, kept as long as it lives: LISTEN is per session.
    let listen_pool = PgPoolOptions::new()
        .max_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_lazy_with(options);
    let mut backoff = FIRST_BACKOFF;
    loop {
        let ended = tokio::select! {
            _ = &mut stopped => return,
            ended = follow(&listen_pool, &pool, &feed, &mut backoff) => ended,
        };
        match ended {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "config change listener failed; other instances' writes arrive by the refresh timer meanwhile");
            }
        }
        tokio::select! {
            _ = &mut stopped => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Listens until an error (returned) or until the feed is gone (`Ok`).
async fn follow(
    listen_pool: &PgPool,
    pool: &PgPool,
    feed: &Weak<Feed>,
    backoff: &mut Duration,
) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(listen_pool).await?;
    listener.listen(CHANNEL).await?;
    // Listening: whatever was committed before this point is read now, so nothing is missed.
    if !refresh(pool, feed).await? {
        return Ok(());
    }
    *backoff = FIRST_BACKOFF;
    loop {
        // `None`: the connection dropped and the listener reconnected (eager reconnect) and
        // listens again; what was notified in between is lost, so read the version as well.
        listener.try_recv().await?;
        // A burst of writes needs one read.
        while listener.next_buffered().is_some() {}
        if !refresh(pool, feed).await? {
            return Ok(());
        }
    }
}

/// Reads the stored version and raises the feed; `false` once no `Store` is left.
async fn refresh(pool: &PgPool, feed: &Weak<Feed>) -> Result<bool, sqlx::Error> {
    let found: Result<(i64,), _> = sqlx::query_as(CONFIG_VERSION).fetch_one(pool).await;
    let version = match found {
        Ok((version,)) => version,
        // A database not migrated yet (the listener starts at connect, before `migrate`):
        // nothing to raise; `migrate` publishes the version itself.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(UNDEFINED_TABLE) => {
            return Ok(feed.strong_count() > 0);
        }
        Err(e) => return Err(e),
    };
    let Some(feed) = feed.upgrade() else {
        return Ok(false);
    };
    if let Ok(version) = u64::try_from(version) {
        feed.raise(version);
    }
    Ok(true)
}
