//! The Event Socket seen by the rest of trunkline: one small trait, [`EslConnection`], the
//! commands we send ([`ApiCommand`], built only from validated newtypes), the events we care
//! about ([`SwitchEvent`]) and the one error type of this layer ([`EslError`]).
//!
//! [`FsConnection`] implements the trait over `freeswitch-esl-tokio`; it is the **only** place
//! that crate is used (DEPENDENCIES.md: it churns fast, so it must be replaceable in one file).
//! Reconnection and liveness policy are the supervisor's, not this file's.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use freeswitch_esl_tokio as fs;
use tokio::sync::Mutex;

use uuid::Uuid;

use super::hangup::{self, LegEvent};
use crate::model::{GatewayName, GatewayState, PingStatus, ProfileName};

/// The events trunkline follows: the hangup of every leg (to learn from the legs it routed) and
/// the sofia gateway events (FREESWITCH.md §3.3). JSON, because plain events carry URL-encoded
/// values (§3.1).
const SUBSCRIPTION: &str =
    "CHANNEL_HANGUP_COMPLETE CUSTOM sofia::gateway_state sofia::gateway_add sofia::gateway_delete";

/// Filters that keep the node from sending what trunkline would throw away: once a connection
/// has a filter, mod_event_socket drops every event that matches none of them (observed on
/// FreeSWITCH 1.10.12: filters OR together, a `/…/` value is a regex). So only the hangups of
/// legs carrying our tag, and the gateway events; an A-leg's hangup (≈ 12 KB of JSON) is never
/// built for us.
const FILTERS: [(&str, &str); 2] = [
    ("variable_trunkline_leg_carrier", "/./"),
    ("Event-Subclass", "/^sofia::gateway_/"),
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EslError {
    /// TCP connect failed or the switch did not greet in time.
    #[error("cannot reach the switch: {0}")]
    Unreachable(String),
    /// The switch refused the password (`-ERR invalid`, then it disconnects, mod_event_socket.c
    /// L1756-1762). Retrying quickly will not help.
    #[error("the switch refused the Event Socket password")]
    Auth,
    #[error("no answer from the switch within {0:?}")]
    Timeout(Duration),
    #[error("connection lost: {0}")]
    Disconnected(String),
    /// mod_event_socket refused the command itself (a `-ERR` reply, not api output).
    #[error("command refused: {0}")]
    Refused(String),
    /// The api output says the command failed (`-ERR …`, `Invalid Profile`, …).
    #[error("{command} failed: {output}")]
    Failed { command: String, output: String },
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl EslError {
    /// Whether the connection is unusable after this error.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, EslError::Failed { .. } | EslError::Refused(_))
    }
}

/// Where and how to reach one switch.
#[derive(Clone)]
pub struct EslTarget {
    pub host: String,
    pub port: u16,
    pub password: String,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
}

impl std::fmt::Debug for EslTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EslTarget({}:{}, password: ***)", self.host, self.port)
    }
}

/// The api commands trunkline sends. Every argument is a validated newtype, so a command is
/// one line with no whitespace inside an argument (FREESWITCH.md §3.1: a command ends at the
/// first newline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiCommand {
    /// `status`: the liveness probe.
    Status,
    /// `global_getvar core_uuid`: changes when FreeSWITCH restarts.
    CoreUuid,
    Rescan(ProfileName),
    KillGw(ProfileName, GatewayName),
    ReloadAcl,
    /// `sofia xmlstatus gateway`: every gateway, deleted-but-not-reaped ones included.
    GatewayList,
    /// `sofia xmlstatus gateway <g>`: one gateway, `Invalid Gateway!` when absent or deleted.
    Gateway(GatewayName),
}

impl ApiCommand {
    pub fn wire(&self) -> String {
        match self {
            ApiCommand::Status => "status".into(),
            ApiCommand::CoreUuid => "global_getvar core_uuid".into(),
            ApiCommand::Rescan(p) => format!("sofia profile {p} rescan"),
            ApiCommand::KillGw(p, g) => format!("sofia profile {p} killgw {g}"),
            ApiCommand::ReloadAcl => "reloadacl".into(),
            ApiCommand::GatewayList => "sofia xmlstatus gateway".into(),
            ApiCommand::Gateway(g) => format!("sofia xmlstatus gateway {g}"),
        }
    }

    /// The metrics label.
    pub fn label(&self) -> &'static str {
        match self {
            ApiCommand::Status => "status",
            ApiCommand::CoreUuid => "core_uuid",
            ApiCommand::Rescan(_) => "rescan",
            ApiCommand::KillGw(..) => "killgw",
            ApiCommand::ReloadAcl => "reloadacl",
            ApiCommand::GatewayList | ApiCommand::Gateway(_) => "xmlstatus",
        }
    }

    /// Reads the api output (FREESWITCH.md §3.2). `+OK` proves only that the command ran, never
    /// that it changed anything; the reconciler verifies separately.
    pub fn check(&self, output: &str) -> Result<(), EslError> {
        let ok = match self {
            // `Reload XML [..]\n+OK scan complete`; `Invalid Profile [P]` has no -ERR.
            ApiCommand::Rescan(_) => output.contains("+OK"),
            // An already deleted or absent gateway is what we wanted.
            ApiCommand::KillGw(..) => output.contains("+OK") || output.contains("no such gateway"),
            // `-ERR [<err>]` means the ACLs were NOT reloaded.
            ApiCommand::ReloadAcl => output.trim_start().starts_with("+OK"),
            ApiCommand::Status | ApiCommand::CoreUuid => !output.trim_start().starts_with("-ERR"),
            ApiCommand::GatewayList | ApiCommand::Gateway(_) => {
                !output.trim_start().starts_with("-ERR")
            }
        };
        if ok {
            Ok(())
        } else {
            Err(EslError::Failed {
                command: self.wire(),
                output: output.trim().chars().take(200).collect(),
            })
        }
    }
}

/// An event, reduced to what the supervisor uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwitchEvent {
    /// The hangup of a leg (ours or not, see [`LegEvent`]).
    LegHangup(LegEvent),
    GatewayAdd {
        gateway: String,
        profile: String,
    },
    GatewayDelete {
        gateway: String,
        profile: String,
    },
    GatewayState {
        gateway: String,
        /// `None` when the event carries none.
        state: Option<GatewayState>,
        ping_status: Option<PingStatus>,
    },
    /// The library dropped `events` events (its queue was full): the caller must re-read the
    /// state, and count the leg hangups among them as lost.
    Lost {
        events: u64,
    },
    /// Anything else the subscription delivered.
    Other,
}

impl SwitchEvent {
    /// Reads a sofia event from its headers (FREESWITCH.md §3.3), whatever carried it: the
    /// library's event here, an in-memory double in the tests.
    pub fn from_headers<'e>(header: impl Fn(&str) -> Option<&'e str>) -> SwitchEvent {
        if header("Event-Name") == Some(hangup::HANGUP_COMPLETE) {
            // The node is the supervisor's to name; the id is the arrival order.
            return SwitchEvent::LegHangup(hangup::read(&header, None, Uuid::now_v7()));
        }
        let owned = |name: &str| header(name).map(str::to_string);
        let gateway = owned("Gateway").unwrap_or_default();
        let profile = || owned("profile-name").unwrap_or_default();
        match header("Event-Subclass") {
            Some("sofia::gateway_add") => SwitchEvent::GatewayAdd {
                gateway,
                profile: profile(),
            },
            Some("sofia::gateway_delete") => SwitchEvent::GatewayDelete {
                gateway,
                profile: profile(),
            },
            Some("sofia::gateway_state") => SwitchEvent::GatewayState {
                gateway,
                state: header("State")
                    .filter(|s| !s.trim().is_empty())
                    .map(GatewayState::parse),
                ping_status: header("Ping-Status").map(PingStatus::parse),
            },
            _ => SwitchEvent::Other,
        }
    }
}

/// One authenticated, subscribed Event Socket connection. Both methods take `&self` so a
/// supervisor can wait for an event and send a command at once.
pub trait EslConnection: Send + Sync + Sized + 'static {
    /// Connects, authenticates and subscribes to the sofia gateway events.
    fn open(target: &EslTarget) -> impl Future<Output = Result<Self, EslError>> + Send;
    /// Runs an api command and returns its output text.
    fn api(&self, command: &ApiCommand) -> impl Future<Output = Result<String, EslError>> + Send;
    /// The next event; `Err` once the connection is gone.
    fn next_event(&self) -> impl Future<Output = Result<SwitchEvent, EslError>> + Send;
    fn close(&self) -> impl Future<Output = ()> + Send;
}

/// [`EslConnection`] over `freeswitch-esl-tokio`.
pub struct FsConnection {
    client: fs::EslClient,
    events: Mutex<fs::EslEventStream>,
    command_timeout: Duration,
    /// The client's dropped-event count when last reported.
    dropped: AtomicU64,
}

/// Events the library holds for us before it drops new ones (and we count them lost). A
/// parsed leg hangup takes 50-80 KB (its 7-11 KB of JSON as owned headers), so this bounds a
/// flood's memory at about 160 MB; it is a second of 2,000 hangups a second, far more than a
/// reader that keeps up (it never waits on the database) ever holds.
const EVENT_QUEUE: usize = 2048;

fn from_fs(e: fs::EslError, timeout: Duration) -> EslError {
    match e {
        fs::EslError::AuthenticationFailed { .. } => EslError::Auth,
        fs::EslError::Timeout { .. } => EslError::Timeout(timeout),
        fs::EslError::CommandFailed { reply_text } => EslError::Refused(reply_text),
        fs::EslError::AccessDenied { reason } => {
            EslError::Unreachable(format!("rejected by the switch's ACL: {reason}"))
        }
        e if e.is_connection_error() => EslError::Disconnected(e.to_string()),
        e => EslError::Protocol(e.to_string()),
    }
}

impl EslConnection for FsConnection {
    async fn open(target: &EslTarget) -> Result<Self, EslError> {
        let options = fs::EslConnectOptions::new()
            .with_connect_timeout(target.connect_timeout)
            .with_event_queue_size(EVENT_QUEUE);
        let connect = fs::EslClient::connect_with_auth(
            &target.host,
            target.port,
            fs::AuthMethod::password(target.password.clone()),
            options,
        );
        // The library bounds connect and each handshake read; this bounds the whole.
        let (client, events) = tokio::time::timeout(target.connect_timeout * 3, connect)
            .await
            .map_err(|_| EslError::Timeout(target.connect_timeout * 3))?
            .map_err(|e| match e {
                fs::EslError::Io(io) => EslError::Unreachable(io.to_string()),
                fs::EslError::ConnectionClosed => {
                    EslError::Unreachable("closed during the handshake".into())
                }
                e => from_fs(e, target.connect_timeout),
            })?;
        client.set_command_timeout(target.command_timeout);
        for (header, value) in FILTERS {
            client
                .filter_raw(header, value)
                .await
                .map_err(|e| from_fs(e, target.command_timeout))?;
        }
        client
            .subscribe_events_raw(fs::EventFormat::Json, SUBSCRIPTION)
            .await
            .map_err(|e| from_fs(e, target.command_timeout))?;
        Ok(FsConnection {
            client,
            events: Mutex::new(events),
            command_timeout: target.command_timeout,
            dropped: AtomicU64::new(0),
        })
    }

    async fn api(&self, command: &ApiCommand) -> Result<String, EslError> {
        let response = self
            .client
            .api(&command.wire())
            .await
            .map_err(|e| from_fs(e, self.command_timeout))?;
        if response.reply_status() == fs::ReplyStatus::Err {
            return Err(EslError::Refused(
                response.reply_text().unwrap_or("-ERR").to_string(),
            ));
        }
        Ok(response.body().unwrap_or("").to_string())
    }

    async fn next_event(&self) -> Result<SwitchEvent, EslError> {
        let mut events = self.events.lock().await;
        loop {
            match events.recv().await {
                None => return Err(EslError::Disconnected(format!("{:?}", events.status()))),
                Some(Err(fs::EslError::QueueFull)) => {
                    // A notice stands for every event dropped since the last one; the client
                    // counts them, and a notice whose drops were already counted adds none.
                    let dropped = self.client.dropped_event_count();
                    let before = self.dropped.swap(dropped, Ordering::Relaxed);
                    if dropped > before {
                        return Ok(SwitchEvent::Lost {
                            events: dropped - before,
                        });
                    }
                }
                // One event that does not parse (bad JSON, a body that is not an object) is
                // counted and skipped: the connection's framing is intact, and reconnecting
                // would lose every event sent meanwhile. The library calls a body that is not
                // a JSON object a protocol error but keeps the session: its status says which.
                // Should it end the session after all, the next read says so.
                Some(Err(e))
                    if !e.is_connection_error()
                        || events.status() == fs::ConnectionStatus::Connected =>
                {
                    tracing::debug!(error = %e, "an event that does not parse, skipped");
                    metrics::counter!("trunkline_events_malformed_total").increment(1);
                }
                Some(Err(e)) => return Err(from_fs(e, self.command_timeout)),
                Some(Ok(event)) => {
                    return Ok(SwitchEvent::from_headers(|name| event.header_str(name)));
                }
            }
        }
    }

    async fn close(&self) {
        let _ = self.client.disconnect().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_single_lines_built_from_validated_names() {
        let p = ProfileName::parse("external").unwrap();
        let g = GatewayName::parse("alpha-1").unwrap();
        assert_eq!(
            ApiCommand::Rescan(p.clone()).wire(),
            "sofia profile external rescan"
        );
        assert_eq!(
            ApiCommand::KillGw(p, g.clone()).wire(),
            "sofia profile external killgw alpha-1"
        );
        assert_eq!(
            ApiCommand::Gateway(g).wire(),
            "sofia xmlstatus gateway alpha-1"
        );
        assert!(GatewayName::parse("a b").is_err() && GatewayName::parse("a\nb").is_err());
    }

    #[test]
    fn outputs_are_read_as_freeswitch_prints_them() {
        let p = ProfileName::parse("external").unwrap();
        let g = GatewayName::parse("alpha").unwrap();
        let rescan = ApiCommand::Rescan(p.clone());
        assert!(
            rescan
                .check("Reload XML [Success]\n+OK scan complete\n")
                .is_ok()
        );
        assert!(rescan.check("Invalid Profile [external]").is_err());
        assert!(
            rescan
                .check("Reload XML [Success]\n-ERR cannot find config for profile external\n")
                .is_err()
        );
        let kill = ApiCommand::KillGw(p, g);
        assert!(kill.check("+OK gateway marked for deletion.\n").is_ok());
        assert!(kill.check("-ERR no such gateway.\n").is_ok());
        assert!(kill.check("Invalid Profile [external]").is_err());
        assert!(ApiCommand::ReloadAcl.check("+OK acl reloaded\n").is_ok());
        assert!(ApiCommand::ReloadAcl.check("-ERR [parse error]\n").is_err());
    }
}
