//! A fake FreeSWITCH on 127.0.0.1:0 that speaks the real Event Socket framing (FREESWITCH.md
//! §3.1) and models sofia's gateway rules (§0.7, §3.2): it fetches sofia.conf / acl.conf from
//! trunkline's real `POST /freeswitch/xml` endpoint; `rescan` only adds gateways and ignores
//! existing names; `killgw` marks deleted (the named xmlstatus hides it at once, the list keeps
//! it until it is reaped a moment later, then `sofia::gateway_delete` fires); every command
//! prints `+OK` even when it did nothing. It records every command, can refuse the password,
//! go down, drop the connection mid-command and restart (new Core-UUID, gateways reloaded from
//! sofia.conf).
//!
//! [`MemoryConnection`] is the same switch without the socket: an [`EslConnection`] that calls
//! the model directly, so that a test can run one reconcile pass and read the commands it sent,
//! in order, with nothing to wait for. The TCP peer stays the test of the protocol.
//!
//! Leg hangups ([`LegHangup`], [`FakeSwitch::emit_leg_hangup`]) are built from
//! `CHANNEL_HANGUP_COMPLETE` events captured on FreeSWITCH 1.10.12 (`testdata/`, every header as
//! the node sent it, duplicates included; IPs made loopback, ids replaced by `{{…}}` slots), so
//! a test or bench sends what a node sends, at its size (~7 KB failed, ~11 KB answered).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use regex::Regex;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, watch};
use trunkline::esl::client::{ApiCommand, EslConnection, EslError, EslTarget, SwitchEvent};
use trunkline::model::{Host, NewSwitch, Password, ProfileName, SwitchName};
use trunkline::publish::Published;
use uuid::Uuid;

/// How long a killed gateway stays listed before it is reaped (sofia: 1–2 s).
const REAP_AFTER: Duration = Duration::from_millis(300);

#[derive(Debug, Clone)]
pub struct FakeGateway {
    pub name: String,
    pub profile: String,
    pub params: BTreeMap<String, String>,
    pub deleted: bool,
    id: u64,
}

impl FakeGateway {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

struct State {
    password: String,
    refuse_auth: bool,
    down: bool,
    core_uuid: String,
    profiles: Vec<String>,
    gateways: Vec<FakeGateway>,
    next_id: u64,
    commands: Vec<String>,
    auth_attempts: usize,
    acl_fetches: usize,
    /// Execute the next command starting with this, then drop the connection without replying.
    drop_after: Option<String>,
}

#[derive(Clone)]
pub struct FakeSwitch {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<String>,
    /// Bumped to drop every open connection.
    generation: Arc<watch::Sender<u64>>,
    trunkline: Arc<watch::Sender<Option<String>>>,
    /// When set, configuration is read from this snapshot in process instead of over HTTP.
    in_process: Arc<OnceLock<Arc<ArcSwap<Published>>>>,
    http: reqwest::Client,
    /// What became of the events emitted: written, lagged, unheard (see [`EventCounts`]).
    counts: Arc<Counts>,
}

/// The event channel's capacity [`FakeSwitch::start`] gives: a connection that falls further
/// behind than this loses the oldest (counted in [`EventCounts::lagged`]).
pub const EVENT_CAPACITY: usize = 1024;

#[derive(Debug, Default)]
struct Counts {
    emitted: AtomicU64,
    unheard: AtomicU64,
    lagged: AtomicU64,
    unsubscribed: AtomicU64,
    written: AtomicU64,
    raw_written: AtomicU64,
    subscriptions: AtomicU64,
}

/// What became of the events emitted through [`FakeSwitch::emit_raw`] (and the helpers built
/// on it) and of the switch's own gateway events, over every connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventCounts {
    /// Event bodies handed to the switch by `emit_raw`.
    pub emitted: u64,
    /// Emitted while no connection was open: nobody heard them (FreeSWITCH queues events for
    /// its open listeners only).
    pub unheard: u64,
    /// Dropped by the fake itself: a connection fell more than the channel's capacity behind
    /// (`broadcast` lag), before trunkline could read them.
    pub lagged: u64,
    /// Reached a connection that had not subscribed yet (`event json` not received).
    pub unsubscribed: u64,
    /// Event frames written whole to a socket.
    pub written: u64,
    /// Raw frames ([`FakeSwitch::emit_frame`]) written to a socket.
    pub raw_written: u64,
    /// `event json …` commands received: one per (re)subscribed connection.
    pub subscriptions: u64,
}

/// Marks a broadcast item that is a whole wire frame rather than an event body (the channel
/// stays one `String` channel, so frames and events keep their order).
const RAW_FRAME: &str = "\u{0}raw-frame\u{0}";

impl FakeSwitch {
    pub async fn start(password: &str) -> FakeSwitch {
        Self::start_with_event_capacity(password, EVENT_CAPACITY).await
    }

    /// [`FakeSwitch::start`] with an event channel of `capacity` events: what a flood test
    /// needs so that the fake itself does not lag before trunkline sees the events.
    pub async fn start_with_event_capacity(password: &str, capacity: usize) -> FakeSwitch {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let fake = FakeSwitch {
            addr: listener.local_addr().unwrap(),
            state: Arc::new(Mutex::new(State {
                password: password.to_string(),
                refuse_auth: false,
                down: false,
                core_uuid: uuid::Uuid::new_v4().to_string(),
                profiles: vec!["external".into(), "carriers".into()],
                gateways: Vec::new(),
                next_id: 0,
                commands: Vec::new(),
                auth_attempts: 0,
                acl_fetches: 0,
                drop_after: None,
            })),
            events: broadcast::channel(capacity).0,
            generation: Arc::new(watch::channel(0).0),
            trunkline: Arc::new(watch::channel(None).0),
            in_process: Arc::new(OnceLock::new()),
            http: reqwest::Client::new(),
            counts: Arc::default(),
        };
        registry()
            .lock()
            .unwrap()
            .insert(fake.addr.port(), fake.clone());
        let server = fake.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let conn = server.clone();
                tokio::spawn(async move { conn.serve(socket).await });
            }
        });
        fake
    }

    /// This switch as trunkline stores it (`fs1`, the `external` profile), with `password`.
    pub fn as_new_switch(&self, password: &str, enabled: bool) -> NewSwitch {
        NewSwitch {
            name: SwitchName::parse("fs1").unwrap(),
            esl_host: Host::parse("127.0.0.1").unwrap(),
            esl_port: self.addr.port(),
            esl_password: Password::parse(password).unwrap(),
            enabled,
            profiles: vec![ProfileName::external()],
        }
    }

    /// Where trunkline's xml_curl endpoint is (fetches wait until this is known).
    pub fn set_trunkline(&self, base: &str) {
        self.trunkline.send_replace(Some(base.to_string()));
    }

    /// Reads sofia.conf / acl.conf from `published` in process, as trunkline's endpoint would
    /// answer them.
    pub fn read_config_from(&self, published: Arc<ArcSwap<Published>>) {
        let _ = self.in_process.set(published);
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// Every command received since the last call.
    pub fn take_commands(&self) -> Vec<String> {
        self.with(|s| std::mem::take(&mut s.commands))
    }

    pub fn commands(&self) -> Vec<String> {
        self.with(|s| s.commands.clone())
    }

    /// The gateways running (not marked deleted).
    pub fn running(&self) -> Vec<FakeGateway> {
        self.with(|s| s.gateways.iter().filter(|g| !g.deleted).cloned().collect())
    }

    pub fn gateway(&self, name: &str) -> Option<FakeGateway> {
        self.running().into_iter().find(|g| g.name == name)
    }

    pub fn auth_attempts(&self) -> usize {
        self.with(|s| s.auth_attempts)
    }

    pub fn acl_fetches(&self) -> usize {
        self.with(|s| s.acl_fetches)
    }

    pub fn core_uuid(&self) -> String {
        self.with(|s| s.core_uuid.clone())
    }

    pub fn set_password(&self, password: &str) {
        self.with(|s| s.password = password.to_string());
    }

    /// Down: drops every connection and refuses new ones until `up`.
    pub fn down(&self) {
        self.with(|s| s.down = true);
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn up(&self) {
        self.with(|s| s.down = false);
    }

    pub fn drop_connections(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// The profile is gone from the node: sofia answers `Invalid Profile [P]` for it.
    pub fn remove_profile(&self, profile: &str) {
        self.with(|s| s.profiles.retain(|p| p != profile));
    }

    pub fn drop_after(&self, command_prefix: &str) {
        self.with(|s| s.drop_after = Some(command_prefix.to_string()));
    }

    /// A FreeSWITCH restart: connections drop, a new Core-UUID, and the gateways are what
    /// trunkline's full sofia.conf says at load.
    pub async fn restart(&self) {
        self.drop_connections();
        let doc = self.fetch("sofia.conf", None).await.unwrap_or_default();
        self.with(|s| {
            s.core_uuid = uuid::Uuid::new_v4().to_string();
            s.gateways.clear();
            for (profile, name, params) in parse_sofia(&doc) {
                s.next_id += 1;
                let id = s.next_id;
                s.gateways.push(FakeGateway {
                    name,
                    profile,
                    params,
                    deleted: false,
                    id,
                });
            }
        });
    }

    async fn serve(self, socket: TcpStream) {
        if self.with(|s| s.down) {
            return;
        }
        let mut generation = self.generation.subscribe();
        generation.borrow_and_update();
        let mut events = self.events.subscribe();
        let (read, mut write) = socket.into_split();
        let (tx, mut commands) = mpsc::channel::<String>(64);
        tokio::spawn(async move {
            let mut reader = BufReader::new(read);
            loop {
                let mut block = String::new();
                loop {
                    let mut line = String::new();
                    match reader.read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    if line == "\n" || line == "\r\n" {
                        if block.is_empty() {
                            continue;
                        }
                        break;
                    }
                    block.push_str(&line);
                }
                let first = block.lines().next().unwrap_or("").trim_end().to_string();
                if tx.send(first).await.is_err() {
                    return;
                }
            }
        });
        if write
            .write_all(b"Content-Type: auth/request\n\n")
            .await
            .is_err()
        {
            return;
        }
        let Some(auth) = commands.recv().await else {
            return;
        };
        let ok = self.with(|s| {
            s.auth_attempts += 1;
            !s.refuse_auth && auth.strip_prefix("auth ") == Some(s.password.as_str())
        });
        if !ok {
            // mod_event_socket.c L1756-1762: -ERR invalid, then disconnect.
            let _ = write
                .write_all(b"Content-Type: command/reply\nReply-Text: -ERR invalid\n\n")
                .await;
            return;
        }
        if write
            .write_all(b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n")
            .await
            .is_err()
        {
            return;
        }
        let mut subscribed = false;
        loop {
            tokio::select! {
                _ = generation.changed() => return,
                event = events.recv() => {
                    match (subscribed, event) {
                        (true, Ok(json)) => {
                            let (frame, counter) = match json.strip_prefix(RAW_FRAME) {
                                Some(raw) => (raw.to_string(), &self.counts.raw_written),
                                None => (
                                    format!("Content-Length: {}\nContent-Type: text/event-json\n\n{json}", json.len()),
                                    &self.counts.written,
                                ),
                            };
                            if write.write_all(frame.as_bytes()).await.is_err() {
                                return;
                            }
                            counter.fetch_add(1, Ordering::Relaxed);
                        }
                        (false, Ok(_)) => {
                            self.counts.unsubscribed.fetch_add(1, Ordering::Relaxed);
                        }
                        (_, Err(broadcast::error::RecvError::Lagged(n))) => {
                            self.counts.lagged.fetch_add(n, Ordering::Relaxed);
                        }
                        (_, Err(broadcast::error::RecvError::Closed)) => {}
                    }
                }
                command = commands.recv() => {
                    let Some(command) = command else { return };
                    self.with(|s| s.commands.push(command.clone()));
                    let reply = if let Some(rest) = command.strip_prefix("event json ") {
                        subscribed = rest.contains("CUSTOM");
                        self.counts.subscriptions.fetch_add(1, Ordering::Relaxed);
                        "Content-Type: command/reply\nReply-Text: +OK event listener enabled json\n\n".to_string()
                    } else if let Some(api) = command.strip_prefix("api ") {
                        let Some(body) = self.api_or_drop(api).await else {
                            return;
                        };
                        format!("Content-Type: api/response\nContent-Length: {}\n\n{body}", body.len())
                    } else if command.starts_with("filter ") {
                        // Accepted and recorded; the fake sends only what trunkline filters in.
                        "Content-Type: command/reply\nReply-Text: +OK filter added.\n\n".to_string()
                    } else if command == "exit" {
                        let _ = write.write_all(b"Content-Type: command/reply\nReply-Text: +OK bye\n\n").await;
                        return;
                    } else {
                        "Content-Type: command/reply\nReply-Text: -ERR command not found\n\n".to_string()
                    };
                    if write.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    fn emit(&self, subclass: &str, gateway: &str, profile: &str) {
        let json = serde_json::json!({
            "Event-Name": "CUSTOM",
            "Event-Subclass": subclass,
            "Core-UUID": self.core_uuid(),
            "Gateway": gateway,
            "profile-name": profile,
        });
        let _ = self.events.send(json.to_string());
    }

    /// What sofia sends when a gateway's registration or OPTIONS ping changes
    /// (`sofia::gateway_state`, with `State` and `Ping-Status`).
    pub fn report_gateway_state(&self, gateway: &str, state: &str, ping_status: &str) {
        let json = serde_json::json!({
            "Event-Name": "CUSTOM",
            "Event-Subclass": "sofia::gateway_state",
            "Core-UUID": self.core_uuid(),
            "Gateway": gateway,
            "State": state,
            "Ping-Status": ping_status,
        });
        let _ = self.events.send(json.to_string());
    }

    /// Sends any event body as `text/event-json` to every subscribed connection (the framing
    /// is the fake's: `Content-Length` is the body's true length).
    pub fn emit_raw(&self, json: String) {
        self.counts.emitted.fetch_add(1, Ordering::Relaxed);
        if self.events.send(json).is_err() {
            self.counts.unheard.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Writes `frame` to every subscribed connection byte for byte, in order with the events:
    /// for frames no FreeSWITCH writes (a lying `Content-Length`, a missing `Content-Type`).
    pub fn emit_frame(&self, frame: &str) {
        let _ = self.events.send(format!("{RAW_FRAME}{frame}"));
    }

    /// An event-json frame whose body is `body` as it is, bad JSON included.
    pub fn emit_bad_json(&self, body: &str) {
        self.emit_frame(&format!(
            "Content-Length: {}\nContent-Type: text/event-json\n\n{body}",
            body.len()
        ));
    }

    /// One leg's `CHANNEL_HANGUP_COMPLETE` as this node (its Core-UUID) sends it.
    pub fn emit_leg_hangup(&self, leg: &LegHangup) {
        self.emit_raw(leg.render(&self.core_uuid()));
    }

    /// The A-leg's `CHANNEL_HANGUP_COMPLETE` of call `call_id` whose last leg went to
    /// `carrier_id`: it names the carrier only inside the dial string it ran
    /// (`variable_last_arg`), never as `variable_trunkline_leg_carrier`.
    pub fn emit_a_leg_hangup(&self, call_id: Uuid, carrier_id: Uuid) {
        self.emit_raw(render_a_leg(call_id, carrier_id, &self.core_uuid()));
    }

    /// How many events were emitted, written, and lost on the way (see [`EventCounts`]).
    pub fn event_counts(&self) -> EventCounts {
        let c = &self.counts;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        EventCounts {
            emitted: load(&c.emitted),
            unheard: load(&c.unheard),
            lagged: load(&c.lagged),
            unsubscribed: load(&c.unsubscribed),
            written: load(&c.written),
            raw_written: load(&c.raw_written),
            subscriptions: load(&c.subscriptions),
        }
    }

    /// Connections open to this switch (each holds one receiver of the event channel).
    pub fn open_connections(&self) -> usize {
        self.events.receiver_count()
    }

    /// Events emitted and not yet taken by every connection: the fake's own backlog.
    pub fn queued_events(&self) -> usize {
        self.events.len()
    }

    async fn fetch(&self, file: &str, profile: Option<&str>) -> Option<String> {
        let mut body = format!(
            "hostname=fake&section=configuration&tag_name=configuration&key_name=name&key_value={file}&Event-Name=REQUEST_PARAMS"
        );
        if let Some(p) = profile {
            body.push_str(&format!("&profile={p}&reconfig=true"));
        }
        if let Some(published) = self.in_process.get() {
            let answer = trunkline::xmlcurl::answer::answer(
                &published.load(),
                &trunkline::quality::health::HealthView::default(),
                body.as_bytes(),
                chrono::Utc::now(),
            );
            return Some(String::from_utf8_lossy(&answer.xml).into_owned());
        }
        let mut rx = self.trunkline.subscribe();
        let base = rx.wait_for(Option::is_some).await.ok()?.clone()?;
        let resp = self
            .http
            .post(format!("{base}/freeswitch/xml"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .ok()?;
        resp.text().await.ok()
    }

    /// The api output, or `None` when the connection is to drop instead of replying (the
    /// command is carried out all the same).
    async fn api_or_drop(&self, api: &str) -> Option<String> {
        let body = self.api(api).await;
        let drop_now = self.with(|s| match &s.drop_after {
            Some(p) if api.starts_with(p.as_str()) => {
                s.drop_after = None;
                true
            }
            _ => false,
        });
        (!drop_now).then_some(body)
    }

    async fn api(&self, api: &str) -> String {
        let words: Vec<&str> = api.split(' ').collect();
        match words.as_slice() {
            ["status"] => "UP 0 years, 0 days, 0 hours, 1 minute, 0 seconds\nFreeSWITCH (Version 1.10.12) is ready\n".into(),
            ["global_getvar", "core_uuid"] => self.core_uuid(),
            ["reloadacl"] => match self.fetch("acl.conf", None).await {
                Some(doc) if doc.contains("acl.conf") => {
                    self.with(|s| s.acl_fetches += 1);
                    "+OK acl reloaded\n".into()
                }
                _ => "-ERR [fetch failed]\n".into(),
            },
            ["sofia", "xmlstatus", "gateway"] => {
                let all = self.with(|s| s.gateways.clone());
                let mut out = String::from("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<gateways>\n");
                for g in &all {
                    out.push_str(&xml_gateway(g));
                }
                out.push_str("</gateways>\n");
                out
            }
            ["sofia", "xmlstatus", "gateway", name] => match self.gateway(name) {
                Some(g) => format!("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n{}", xml_gateway(&g)),
                None => "Invalid Gateway!\n".into(),
            },
            ["sofia", "profile", profile, rest @ ..] => {
                if !self.with(|s| s.profiles.iter().any(|p| p == profile)) {
                    return format!("Invalid Profile [{profile}]");
                }
                match rest {
                    ["rescan"] => self.rescan(profile).await,
                    ["killgw", name] => self.killgw(name),
                    _ => "-ERR usage\n".into(),
                }
            }
            _ => format!("-ERR {} Command not found!\n", words[0]),
        }
    }

    /// sofia.c:3783-3789: existing, non-deleted names are ignored ("Ignoring duplicate
    /// gateway"); a deleted entry of the same name is evicted (sofia_reg.c:3698-3705).
    async fn rescan(&self, profile: &str) -> String {
        let Some(doc) = self.fetch("sofia.conf", Some(profile)).await else {
            return format!(
                "Reload XML [Success]\n-ERR cannot find config for profile {profile}\n"
            );
        };
        let added = self.with(|s| {
            let mut added = Vec::new();
            for (p, name, params) in parse_sofia(&doc) {
                if p != profile || s.gateways.iter().any(|g| g.name == name && !g.deleted) {
                    continue;
                }
                s.gateways.retain(|g| g.name != name);
                s.next_id += 1;
                let id = s.next_id;
                s.gateways.push(FakeGateway {
                    name: name.clone(),
                    profile: p.clone(),
                    params,
                    deleted: false,
                    id,
                });
                added.push((name, p));
            }
            added
        });
        for (name, p) in added {
            self.emit("sofia::gateway_add", &name, &p);
        }
        "Reload XML [Success]\n+OK scan complete\n".into()
    }

    /// The name is looked up globally; the gateway is only marked, then reaped a moment later.
    fn killgw(&self, name: &str) -> String {
        let marked = self.with(|s| {
            s.gateways
                .iter_mut()
                .find(|g| g.name == name && !g.deleted)
                .map(|g| {
                    g.deleted = true;
                    (g.id, g.profile.clone())
                })
        });
        let Some((id, profile)) = marked else {
            return "-ERR no such gateway.\n".into();
        };
        let fake = self.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(REAP_AFTER).await;
            fake.with(|s| s.gateways.retain(|g| g.id != id));
            fake.emit("sofia::gateway_delete", &name, &profile);
        });
        "+OK gateway marked for deletion.\n".into()
    }
}

/// The fakes by port, so that [`MemoryConnection::open`] finds the one a switch points at.
fn registry() -> &'static Mutex<HashMap<u16, FakeSwitch>> {
    static FAKES: OnceLock<Mutex<HashMap<u16, FakeSwitch>>> = OnceLock::new();
    FAKES.get_or_init(Default::default)
}

/// An Event Socket connection to a [`FakeSwitch`] without the socket: the same model, the same
/// record of commands, the same events, dropped by the same `drop_connections` / `down`.
pub struct MemoryConnection {
    fake: FakeSwitch,
    events: tokio::sync::Mutex<broadcast::Receiver<String>>,
    generation: watch::Receiver<u64>,
}

impl FakeSwitch {
    /// A connection in process, authenticated and subscribed, as [`EslConnection::open`] on
    /// this switch's address gives.
    pub fn connect_in_memory(&self) -> MemoryConnection {
        let mut generation = self.generation.subscribe();
        generation.borrow_and_update();
        MemoryConnection {
            fake: self.clone(),
            events: tokio::sync::Mutex::new(self.events.subscribe()),
            generation,
        }
    }
}

fn dropped() -> EslError {
    EslError::Disconnected("the fake switch dropped the connection".into())
}

impl EslConnection for MemoryConnection {
    async fn open(target: &EslTarget) -> Result<Self, EslError> {
        let fake = registry().lock().unwrap().get(&target.port).cloned();
        let fake =
            fake.ok_or_else(|| EslError::Unreachable("no fake switch on that port".into()))?;
        let accepted = fake.with(|s| {
            if s.down {
                return Err(EslError::Unreachable("connection refused".into()));
            }
            s.auth_attempts += 1;
            if s.refuse_auth || target.password != s.password {
                return Err(EslError::Auth);
            }
            Ok(())
        });
        accepted.map(|()| fake.connect_in_memory())
    }

    async fn api(&self, command: &ApiCommand) -> Result<String, EslError> {
        if self.generation.has_changed().unwrap_or(true) {
            return Err(dropped());
        }
        let wire = command.wire();
        self.fake.with(|s| s.commands.push(format!("api {wire}")));
        self.fake.api_or_drop(&wire).await.ok_or_else(dropped)
    }

    async fn next_event(&self) -> Result<SwitchEvent, EslError> {
        let mut events = self.events.lock().await;
        let mut generation = self.generation.clone();
        tokio::select! {
            _ = generation.changed() => Err(dropped()),
            event = events.recv() => match event {
                Ok(json) => {
                    let event: serde_json::Value = serde_json::from_str(&json)
                        .map_err(|e| EslError::Protocol(e.to_string()))?;
                    Ok(SwitchEvent::from_headers(|name| event.get(name).and_then(|v| v.as_str())))
                }
                Err(broadcast::error::RecvError::Lagged(n)) => Ok(SwitchEvent::Lost { events: n }),
                Err(broadcast::error::RecvError::Closed) => Err(dropped()),
            },
        }
    }

    async fn close(&self) {}
}

/// mod_sofia.c:3240-3284, with realm/username/proxy written raw as FreeSWITCH does.
fn xml_gateway(g: &FakeGateway) -> String {
    let proxy = g.param("proxy").unwrap_or(&g.name).to_string();
    let realm = g
        .param("realm")
        .map(str::to_string)
        .unwrap_or_else(|| proxy.clone());
    let username = g.param("username").unwrap_or("FreeSWITCH");
    let state = if g.deleted {
        "UNREGISTER"
    } else if g.param("register") == Some("true") {
        "REGED"
    } else {
        "NOREG"
    };
    format!(
        "  <gateway>\n    <name>{}</name>\n    <profile>{}</profile>\n    <scheme>Digest</scheme>\n    <realm>{realm}</realm>\n    <username>{username}</username>\n    <password>no</password>\n    <from>&lt;sip:{username}@{realm}&gt;</from>\n    <to>sip:{username}@{realm}</to>\n    <proxy>sip:{proxy}</proxy>\n    <context>public</context>\n    <pingtime>0.00</pingtime>\n    <state>{state}</state>\n    <status>UP</status>\n    <calls-in>0</calls-in>\n    <calls-out>0</calls-out>\n    <failed-calls-in>0</failed-calls-in>\n    <failed-calls-out>0</failed-calls-out>\n  </gateway>\n",
        g.name, g.profile
    )
}

/// (profile, gateway, params) of every gateway in a sofia.conf document. trunkline writes one
/// element per line (FREESWITCH.md §6.4), which is what this relies on.
fn parse_sofia(doc: &str) -> Vec<(String, String, BTreeMap<String, String>)> {
    let profile_re = Regex::new(r#"<profile name="([^"]*)""#).unwrap();
    let gateway_re = Regex::new(r#"<gateway name="([^"]*)""#).unwrap();
    let param_re = Regex::new(r#"<param name="([^"]*)" value="([^"]*)""#).unwrap();
    let mut out = Vec::new();
    let mut profile = String::new();
    let mut current: Option<(String, BTreeMap<String, String>)> = None;
    for line in doc.lines() {
        if let Some(c) = profile_re.captures(line) {
            profile = c[1].to_string();
        } else if let Some(c) = gateway_re.captures(line) {
            current = Some((c[1].to_string(), BTreeMap::new()));
        } else if line.contains("</gateway>") {
            if let Some((name, params)) = current.take() {
                out.push((profile.clone(), name, params));
            }
        } else if let (Some((_, params)), Some(c)) = (current.as_mut(), param_re.captures(line)) {
            params.insert(
                c[1].to_string(),
                c[2].replace("&#36;", "$").replace("&amp;", "&"),
            );
        }
    }
    out
}

/// The captured failed leg (a 503 from gateway `alpha`, refused at once: `recv_refuse`).
pub const LEG_HANGUP_FAILED: &str = include_str!("testdata/leg_hangup_failed.json");
/// The captured answered leg (gateway `beta`: 180, 200, the caller hung up after a second).
pub const LEG_HANGUP_ANSWERED: &str = include_str!("testdata/leg_hangup_answered.json");
/// The captured A-leg of the same call (no `trunkline_*` variables; two JSON arrays).
pub const A_LEG_HANGUP: &str = include_str!("testdata/a_leg_hangup.json");

/// How a leg ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegOutcome {
    /// The carrier refused the INVITE with this final status.
    Failed(u16),
    /// 180 after 20 ms, 200 after 40 ms, the caller hung up a second later.
    Answered,
}

/// One outbound leg's hangup, to render from the captured events. Every field is what
/// trunkline reads; the strings stay strings so that a test can damage them.
#[derive(Debug, Clone)]
pub struct LegHangup {
    /// `variable_trunkline_leg_carrier`.
    pub carrier_id: String,
    /// The A-leg: `variable_originating_leg_uuid` and every other header naming it.
    pub call_id: String,
    /// `Unique-ID`.
    pub leg_id: Uuid,
    /// `variable_trunkline_leg_attempt`.
    pub attempt: u32,
    pub outcome: LegOutcome,
    /// `variable_start_uepoch`, in microseconds.
    pub started_us: i64,
}

impl LegHangup {
    /// A fresh leg (new Unique-ID) of `call_id` to `carrier_id`, started now.
    pub fn new(carrier_id: Uuid, call_id: Uuid, attempt: u32, outcome: LegOutcome) -> LegHangup {
        LegHangup {
            carrier_id: carrier_id.to_string(),
            call_id: call_id.to_string(),
            leg_id: Uuid::new_v4(),
            attempt,
            outcome,
            started_us: chrono::Utc::now().timestamp_micros(),
        }
    }

    /// The event body as the node would send it.
    pub fn render(&self, core_uuid: &str) -> String {
        let (template, end_after_us) = match self.outcome {
            LegOutcome::Failed(_) => (&templates().failed, 100_000),
            LegOutcome::Answered => (&templates().answered, 1_040_000),
        };
        let (cause, q850, phrase) = match self.outcome {
            LegOutcome::Failed(status) => sip_failure(status),
            LegOutcome::Answered => ("NORMAL_CLEARING", 16, "OK"),
        };
        let status = match self.outcome {
            LegOutcome::Failed(status) => status,
            LegOutcome::Answered => 200,
        };
        let leg_id = self.leg_id.to_string();
        template.render(|slot| match slot {
            Slot::CarrierId => self.carrier_id.clone(),
            Slot::CallId => self.call_id.clone(),
            Slot::LegId => leg_id.clone(),
            Slot::CoreUuid => core_uuid.to_string(),
            Slot::Attempt => self.attempt.to_string(),
            Slot::StartUs => self.started_us.to_string(),
            Slot::ProgressUs => (self.started_us + 20_000).to_string(),
            Slot::AnswerUs => (self.started_us + 40_000).to_string(),
            Slot::EndUs => (self.started_us + end_after_us).to_string(),
            Slot::Status => status.to_string(),
            Slot::Phrase => phrase.to_string(),
            Slot::Cause => cause.to_string(),
            Slot::Q850 => q850.to_string(),
        })
    }
}

/// The A-leg hangup of `call_id`, as `node` sends it.
pub fn render_a_leg(call_id: Uuid, carrier_id: Uuid, core_uuid: &str) -> String {
    let (call, carrier) = (call_id.to_string(), carrier_id.to_string());
    templates().a_leg.render(|slot| match slot {
        Slot::CallId => call.clone(),
        Slot::CarrierId => carrier.clone(),
        Slot::CoreUuid => core_uuid.to_string(),
        other => panic!("{other:?} in the A-leg template"),
    })
}

/// Hangup cause, Q.850 code and reason phrase for a carrier's final failure status, as
/// sofia maps them (`sofia_glue_sip_cause_to_freeswitch`); 503 as captured.
fn sip_failure(status: u16) -> (&'static str, u16, &'static str) {
    match status {
        404 => ("UNALLOCATED_NUMBER", 1, "Not Found"),
        403 => ("CALL_REJECTED", 21, "Forbidden"),
        408 => ("RECOVERY_ON_TIMER_EXPIRE", 102, "Request Timeout"),
        480 => ("NO_USER_RESPONSE", 18, "Temporarily Unavailable"),
        486 => ("USER_BUSY", 17, "Busy Here"),
        503 => ("NORMAL_TEMPORARY_FAILURE", 41, "Service Unavailable"),
        _ => ("NORMAL_UNSPECIFIED", 31, "Error"),
    }
}

/// A `{{…}}` slot of a captured event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    CarrierId,
    CallId,
    LegId,
    CoreUuid,
    Attempt,
    StartUs,
    ProgressUs,
    AnswerUs,
    EndUs,
    Status,
    Phrase,
    Cause,
    Q850,
}

/// A captured event cut at its slots once, so that rendering one is a single pass (a bench
/// renders thousands a second in the process it measures).
struct Template {
    parts: Vec<(&'static str, Option<Slot>)>,
}

impl Template {
    fn parse(text: &'static str) -> Template {
        let mut parts = Vec::new();
        let mut rest = text.trim_end();
        while let Some(start) = rest.find("{{") {
            let end = start + rest[start..].find("}}").expect("a closed slot");
            let slot = match &rest[start + 2..end] {
                "CARRIER_ID" => Slot::CarrierId,
                "CALL_ID" => Slot::CallId,
                "LEG_ID" => Slot::LegId,
                "CORE_UUID" => Slot::CoreUuid,
                "ATTEMPT" => Slot::Attempt,
                "START_US" => Slot::StartUs,
                "PROGRESS_US" => Slot::ProgressUs,
                "ANSWER_US" => Slot::AnswerUs,
                "END_US" => Slot::EndUs,
                "STATUS" => Slot::Status,
                "PHRASE" => Slot::Phrase,
                "CAUSE" => Slot::Cause,
                "Q850" => Slot::Q850,
                other => panic!("unknown slot {other}"),
            };
            parts.push((&rest[..start], Some(slot)));
            rest = &rest[end + 2..];
        }
        parts.push((rest, None));
        Template { parts }
    }

    fn render(&self, value: impl Fn(Slot) -> String) -> String {
        let mut out = String::with_capacity(self.parts.iter().map(|(t, _)| t.len() + 40).sum());
        for (text, slot) in &self.parts {
            out.push_str(text);
            if let Some(slot) = slot {
                out.push_str(&value(*slot));
            }
        }
        out
    }
}

struct Templates {
    failed: Template,
    answered: Template,
    a_leg: Template,
}

fn templates() -> &'static Templates {
    static TEMPLATES: OnceLock<Templates> = OnceLock::new();
    TEMPLATES.get_or_init(|| Templates {
        failed: Template::parse(LEG_HANGUP_FAILED),
        answered: Template::parse(LEG_HANGUP_ANSWERED),
        a_leg: Template::parse(A_LEG_HANGUP),
    })
}
