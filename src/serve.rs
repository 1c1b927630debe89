//! The HTTP listeners: accepting connections, and keeping every connection on a deadline so
//! that clients which connect and send nothing, or send half a request, cannot hold the
//! process's file descriptors (and with them every node's calls) for ever.
//!
//! A connection is always in one phase, and each phase but one has a deadline:
//!
//! | phase | from | deadline |
//! |---|---|---|
//! | waiting for a request | accept, or the end of the previous response | `header_timeout` for a new connection, `idle_timeout` on keep-alive |
//! | reading the head | its first byte | `header_timeout` |
//! | reading the body | the end of the head | `body_timeout` |
//! | handling | the end of the body | none (the API's own timeout layer; xml_curl does no I/O) |
//!
//! The phases are plain atomics written by the connection's own task; one sweeper task per
//! listener closes what is past its deadline a few times a second. A fetch therefore costs no
//! timer of its own: the per-request timer that was taken off the xml_curl path for speed
//! (BENCHMARKS.md, HTTP) stays off it.
//!
//! Each listener also holds at most `max_connections`; a connection beyond it makes room by
//! closing the oldest connection waiting for a request, then the oldest one still sending its
//! head, then its body. A listener that serves only xml_curl refuses addresses outside
//! `xmlcurl_allow` as it accepts them, before reading a byte.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tower::ServiceExt;

use crate::model::AllowList;

/// Deadlines and the connection bound of every listener (configuration: `http_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// A request head must be complete this long after the connection opened or after its
    /// first byte. FreeSWITCH's libcurl sends the head in one write as soon as it connects.
    pub header_timeout: Duration,
    /// A request body must be complete this long after its head.
    pub body_timeout: Duration,
    /// A keep-alive connection waits this long for its next request.
    pub idle_timeout: Duration,
    /// Connections held at once, per listener.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4096,
        }
    }
}

/// The most of a request head a connection buffers (hyper's own default is about 400 KB, on
/// every one of up to `http_max_connections` connections per listener). A FreeSWITCH fetch's
/// head is a few hundred bytes, an API request's about one KB; a larger head is answered 431.
/// hyper takes no less than 8 KB here.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// File descriptors kept for everything that is not an HTTP connection: the database pool,
/// the Event Socket connections, the log, the templates.
const RESERVED_FDS: u64 = 256;

/// Raises the soft open-files limit to the hard limit (a systemd service starts at 1,024,
/// fewer than one busy listener needs) and returns (before, after).
#[cfg(unix)]
pub fn raise_open_files_limit() -> io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((before, limit.rlim_cur))
}

#[cfg(not(unix))]
pub fn raise_open_files_limit() -> io::Result<(u64, u64)> {
    Err(io::Error::other("no open-files limit on this platform"))
}

/// The connection bound each of `listeners` can really keep under an open-files limit.
pub fn connections_within(configured: usize, open_files: u64, listeners: usize) -> usize {
    let usable = open_files.saturating_sub(RESERVED_FDS) / listeners.max(1) as u64;
    configured.min(usable.max(1) as usize)
}

/// One bound listener and what it serves.
pub struct Listener {
    /// `http` (API, and xml_curl unless it has its own) or `xmlcurl`: the metrics label.
    pub name: &'static str,
    pub tcp: TcpListener,
    pub router: Router,
    /// Who may connect, applied at accept; only for a listener that serves xml_curl alone.
    pub allow: AllowList,
    pub limits: ConnectionLimits,
}

/// Serves every listener until `shutdown` completes, then lets the requests in flight finish
/// (the deadlines still apply while they do).
pub async fn serve(
    listeners: Vec<Listener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let (stop, stopped) = watch::channel(false);
    let tasks: Vec<_> = listeners
        .into_iter()
        .map(|l| tokio::spawn(serve_listener(l, stopped.clone())))
        .collect();
    shutdown.await;
    let _ = stop.send(true);
    for task in tasks {
        task.await.map_err(io::Error::other)?;
    }
    Ok(())
}

async fn serve_listener(listener: Listener, mut stop: watch::Receiver<bool>) {
    let table = Arc::new(Connections::new(listener.name, &listener.limits));
    let sweeper = tokio::spawn(sweep(table.clone(), sweep_every(&listener.limits)));
    // Every connection task holds a clone of `in_flight`: the listener is done when all have
    // dropped theirs (`all_done.closed()`).
    let (all_done, in_flight) = watch::channel(());
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            accepted = listener.tcp.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                accept_failed(&table, e).await;
                continue;
            }
        };
        if !listener.allow.permits(peer.ip()) {
            metrics::counter!("trunkline_xmlcurl_rejected_total", "why" => "ip").increment(1);
            table.refused.warn(|n| tracing::warn!(%peer, refused = n, "connections from outside xmlcurl_allow refused"));
            continue;
        }
        let connection = table.admit();
        tokio::spawn(serve_connection(
            stream,
            peer,
            listener.router.clone(),
            connection,
            table.clone(),
            stop.clone(),
            in_flight.clone(),
        ));
    }
    // Closed at once, so that new connections are refused (and a load balancer moves on)
    // while the ones in flight finish.
    drop(listener.tcp);
    drop(in_flight);
    all_done.closed().await;
    sweeper.abort();
}

/// An accept error: a connection that went away before it was accepted is nothing; running
/// out of file descriptors makes room by shedding one waiting connection (otherwise the loop
/// would spin on EMFILE).
async fn accept_failed(table: &Connections, e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    ) {
        return;
    }
    let out_of_fds = matches!(e.raw_os_error(), Some(code) if is_out_of_fds(code));
    if out_of_fds {
        table.shed_one("open_files");
    }
    table.accept_errors.warn(|n| tracing::warn!(error = %e, errors = n, listener = table.name, "accepting connections failed"));
    tokio::time::sleep(Duration::from_millis(if out_of_fds { 5 } else { 100 })).await;
}

#[cfg(unix)]
fn is_out_of_fds(code: i32) -> bool {
    code == libc::EMFILE || code == libc::ENFILE
}

#[cfg(not(unix))]
fn is_out_of_fds(_: i32) -> bool {
    false
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    connection: Arc<Connection>,
    table: Arc<Connections>,
    mut stop: watch::Receiver<bool>,
    _in_flight: watch::Receiver<()>,
) {
    let limits = table.limits.clone();
    let io = TokioIo::new(Watched {
        stream,
        connection: connection.clone(),
        header_timeout: limits.header_timeout,
    });
    let on_request = connection.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        let request_phase = RequestPhase::begin(on_request.clone(), &limits, request.body());
        request.extensions_mut().insert(ConnectInfo(peer));
        let request = request.map(|body| {
            Body::new(WatchedBody {
                inner: body,
                phase: request_phase.clone(),
            })
        });
        let router = router.clone();
        async move {
            let response = router.oneshot(request).await?;
            Ok::<_, Infallible>(response.map(|body| WatchedBody {
                inner: body,
                phase: request_phase,
            }))
        }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(io, service);
    tokio::pin!(served);
    let mut stopping = false;
    loop {
        tokio::select! {
            _ = &mut served => break,
            // Past its deadline or shed: dropping the connection closes the socket.
            _ = connection.close.notified() => break,
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                served.as_mut().graceful_shutdown();
            }
        }
    }
    table.remove(connection.id);
}

/// The phase of a connection (see the module's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    Waiting = 0,
    Head = 1,
    Body = 2,
    Handling = 3,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            0 => Phase::Waiting,
            1 => Phase::Head,
            2 => Phase::Body,
            _ => Phase::Handling,
        }
    }
}

/// Milliseconds on the process's monotonic clock.
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

const NO_DEADLINE: u64 = u64::MAX;

/// One accepted connection, as its task and the sweeper see it.
struct Connection {
    /// Accept order: the table's key, so the oldest comes first.
    id: u64,
    phase: AtomicU8,
    deadline_ms: AtomicU64,
    /// Whether a request was ever served (a waiting connection that never sent one is timed
    /// out as a missing head, not as an idle keep-alive).
    served: AtomicBool,
    close: Notify,
}

impl Connection {
    fn enter(&self, phase: Phase, within: Option<Duration>) {
        self.phase.store(phase as u8, Relaxed);
        let deadline = within.map_or(NO_DEADLINE, |d| now_ms() + d.as_millis() as u64);
        self.deadline_ms.store(deadline, Relaxed);
    }

    fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Relaxed))
    }

    /// Why the sweeper closes it, as a metrics label.
    fn timed_out_in(&self) -> &'static str {
        match self.phase() {
            Phase::Waiting if self.served.load(Relaxed) => "idle",
            Phase::Waiting | Phase::Head => "header",
            Phase::Body | Phase::Handling => "body",
        }
    }
}

/// Moves the connection through body → handling → waiting as one request's body is read and
/// its response is written. Shared by the request's body and the response's body; the last
/// one dropped (the response, once hyper has written it) puts the connection back to waiting.
struct RequestPhase {
    connection: Arc<Connection>,
    idle_timeout: Duration,
}

impl RequestPhase {
    fn begin(
        connection: Arc<Connection>,
        limits: &ConnectionLimits,
        body: &Incoming,
    ) -> Arc<RequestPhase> {
        if body.is_end_stream() {
            connection.enter(Phase::Handling, None);
        } else {
            connection.enter(Phase::Body, Some(limits.body_timeout));
        }
        connection.served.store(true, Relaxed);
        Arc::new(RequestPhase {
            connection,
            idle_timeout: limits.idle_timeout,
        })
    }

    fn body_read(&self) {
        if self.connection.phase() == Phase::Body {
            self.connection.enter(Phase::Handling, None);
        }
    }
}

impl Drop for RequestPhase {
    fn drop(&mut self) {
        self.connection
            .enter(Phase::Waiting, Some(self.idle_timeout));
    }
}

/// A request or response body that reports its end to the connection's phase.
struct WatchedBody<B> {
    inner: B,
    phase: Arc<RequestPhase>,
}

impl<B: HttpBody + Unpin> HttpBody for WatchedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || this.inner.is_end_stream() {
            this.phase.body_read();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, noticing the first byte of each request head.
struct Watched {
    stream: TcpStream,
    connection: Arc<Connection>,
    header_timeout: Duration,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before && this.connection.phase() == Phase::Waiting {
            this.connection
                .enter(Phase::Head, Some(this.header_timeout));
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// A warning printed at most once per [`RateLimitedLog::EVERY`], with how many times it
/// happened since the last one.
struct RateLimitedLog {
    last_ms: AtomicU64,
    count: AtomicU64,
}

impl RateLimitedLog {
    const EVERY: Duration = Duration::from_secs(10);

    fn new() -> Self {
        RateLimitedLog {
            last_ms: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn warn(&self, log: impl FnOnce(u64)) {
        let count = self.count.fetch_add(1, Relaxed) + 1;
        let now = now_ms().max(1);
        let last = self.last_ms.load(Relaxed);
        if last != 0 && now < last + Self::EVERY.as_millis() as u64 {
            return;
        }
        if self
            .last_ms
            .compare_exchange(last, now, Relaxed, Relaxed)
            .is_ok()
        {
            self.count.fetch_sub(count, Relaxed);
            log(count);
        }
    }
}

/// The connections of one listener, oldest first.
struct Connections {
    name: &'static str,
    limits: ConnectionLimits,
    open: Mutex<BTreeMap<u64, Arc<Connection>>>,
    next_id: AtomicU64,
    gauge: metrics::Gauge,
    shed_log: RateLimitedLog,
    refused: RateLimitedLog,
    accept_errors: RateLimitedLog,
}

impl Connections {
    fn new(name: &'static str, limits: &ConnectionLimits) -> Self {
        Connections {
            name,
            limits: limits.clone(),
            open: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(0),
            gauge: metrics::gauge!("trunkline_http_connections", "listener" => name),
            shed_log: RateLimitedLog::new(),
            refused: RateLimitedLog::new(),
            accept_errors: RateLimitedLog::new(),
        }
    }

    /// Registers a new connection, first making room if the listener is full.
    fn admit(&self) -> Arc<Connection> {
        let connection = Arc::new(Connection {
            id: self.next_id.fetch_add(1, Relaxed),
            phase: AtomicU8::new(Phase::Waiting as u8),
            deadline_ms: AtomicU64::new(now_ms() + self.limits.header_timeout.as_millis() as u64),
            served: AtomicBool::new(false),
            close: Notify::new(),
        });
        let shed = {
            let mut open = self.open.lock().expect("connection table");
            let shed = (open.len() >= self.limits.max_connections)
                .then(|| self.take_victim(&mut open))
                .flatten();
            open.insert(connection.id, connection.clone());
            self.gauge.set(open.len() as f64);
            shed
        };
        if let Some(victim) = shed {
            self.close_shed(victim, "max_connections");
        }
        connection
    }

    /// Closes the connection that costs least to lose (see [`Connections::take_victim`]).
    fn shed_one(&self, why: &'static str) {
        let victim = {
            let mut open = self.open.lock().expect("connection table");
            let victim = self.take_victim(&mut open);
            self.gauge.set(open.len() as f64);
            victim
        };
        if let Some(victim) = victim {
            self.close_shed(victim, why);
        }
    }

    /// Takes out the connection that costs least to lose: the oldest waiting for a request,
    /// else the oldest still sending its head, else its body. One being handled is never
    /// taken, nor is the connection being admitted (it is not in the table yet).
    fn take_victim(&self, open: &mut BTreeMap<u64, Arc<Connection>>) -> Option<Arc<Connection>> {
        let victim = [Phase::Waiting, Phase::Head, Phase::Body]
            .into_iter()
            .find_map(|phase| open.values().find(|c| c.phase() == phase).cloned())?;
        open.remove(&victim.id)
    }

    fn close_shed(&self, victim: Arc<Connection>, why: &'static str) {
        victim.close.notify_one();
        metrics::counter!("trunkline_http_connections_shed_total", "listener" => self.name, "why" => why)
            .increment(1);
        self.shed_log.warn(|n| {
            tracing::warn!(
                listener = self.name,
                shed = n,
                max_connections = self.limits.max_connections,
                why,
                "listener full: closed the oldest waiting connections"
            )
        });
    }

    fn remove(&self, id: u64) {
        let mut open = self.open.lock().expect("connection table");
        open.remove(&id);
        self.gauge.set(open.len() as f64);
    }

    /// Closes every connection past its deadline.
    fn close_expired(&self) {
        let now = now_ms();
        let expired: Vec<Arc<Connection>> = {
            let mut open = self.open.lock().expect("connection table");
            let ids: Vec<u64> = open
                .values()
                .filter(|c| c.deadline_ms.load(Relaxed) <= now)
                .map(|c| c.id)
                .collect();
            let expired = ids.iter().filter_map(|id| open.remove(id)).collect();
            self.gauge.set(open.len() as f64);
            expired
        };
        for c in expired {
            metrics::counter!("trunkline_http_connections_timed_out_total", "listener" => self.name, "phase" => c.timed_out_in())
                .increment(1);
            c.close.notify_one();
        }
    }
}

/// How often the sweeper looks: a tenth of the shortest deadline, between 50 ms and 1 s, so
/// a connection is closed at most that long after its deadline.
fn sweep_every(limits: &ConnectionLimits) -> Duration {
    let shortest = limits
        .header_timeout
        .min(limits.body_timeout)
        .min(limits.idle_timeout);
    (shortest / 10).clamp(Duration::from_millis(50), Duration::from_secs(1))
}

async fn sweep(table: Arc<Connections>, every: Duration) {
    let mut timer = tokio::time::interval(every);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        timer.tick().await;
        table.close_expired();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_leaves_room_for_everything_else_under_the_open_files_limit() {
        assert_eq!(connections_within(4096, 1024, 1), 768);
        assert_eq!(connections_within(4096, 1024, 2), 384);
        assert_eq!(connections_within(4096, 1_048_576, 2), 4096);
        assert_eq!(connections_within(4096, 100, 1), 1);
    }

    #[test]
    fn the_sweeper_looks_often_enough_for_the_shortest_deadline() {
        let mut limits = ConnectionLimits::default();
        assert_eq!(sweep_every(&limits), Duration::from_secs(1));
        limits.header_timeout = Duration::from_secs(2);
        assert_eq!(sweep_every(&limits), Duration::from_millis(200));
    }

    #[test]
    fn shedding_takes_waiting_connections_first_then_heads_then_bodies_oldest_first() {
        let limits = ConnectionLimits {
            max_connections: 4,
            ..ConnectionLimits::default()
        };
        let table = Connections::new("test", &limits);
        let ids = |t: &Connections| t.open.lock().unwrap().keys().copied().collect::<Vec<_>>();
        let [body, head, handling, waiting] = [(); 4].map(|()| table.admit());
        body.enter(Phase::Body, Some(limits.body_timeout));
        head.enter(Phase::Head, Some(limits.header_timeout));
        handling.enter(Phase::Handling, None);
        // Full: each newcomer is admitted and the cheapest older connection goes.
        let fifth = table.admit();
        assert_eq!(ids(&table), [body.id, head.id, handling.id, fifth.id]);
        assert!(
            !ids(&table).contains(&waiting.id),
            "the waiting one went first"
        );
        let sixth = table.admit();
        assert_eq!(ids(&table), [body.id, head.id, handling.id, sixth.id]);
        sixth.enter(Phase::Handling, None);
        let seventh = table.admit();
        assert_eq!(
            ids(&table),
            [body.id, handling.id, sixth.id, seventh.id],
            "then the head"
        );
        seventh.enter(Phase::Handling, None);
        let eighth = table.admit();
        assert_eq!(
            ids(&table),
            [handling.id, sixth.id, seventh.id, eighth.id],
            "then the body"
        );
        eighth.enter(Phase::Handling, None);
        table.admit();
        assert_eq!(
            ids(&table).len(),
            5,
            "connections being handled are never shed"
        );
    }

    #[test]
    fn expired_connections_are_closed_and_others_kept() {
        let limits = ConnectionLimits::default();
        let table = Connections::new("test", &limits);
        let late = table.admit();
        late.deadline_ms.store(0, Relaxed);
        let fresh = table.admit();
        let handling = table.admit();
        handling.enter(Phase::Handling, None);
        table.close_expired();
        let ids: Vec<u64> = table.open.lock().unwrap().keys().copied().collect();
        assert_eq!(ids, [fresh.id, handling.id]);
        assert_eq!(late.timed_out_in(), "header");
    }
}
