//! A FreeSWITCH node trunkline keeps in step ("switch"), as configured and as stored: where its
//! Event Socket is, its password, which sofia profiles trunkline manages there, and what
//! trunkline verified it runs ([`Applied`]). Pure data with its validation; persistence is
//! `store/switches.rs`, the Event Socket side `esl/`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::model::{GatewayName, Host, Invalid, Password, ProfileName};

/// The Event Socket port FreeSWITCH listens on by default (event_socket.conf.xml).
pub const DEFAULT_ESL_PORT: u16 = 8021;

/// A switch's name: the label in the API, logs and metrics. Same grammar as a profile name
/// (`^[a-z0-9][a-z0-9_.-]{0,62}$`), so it is safe as a metrics label and a log field.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SwitchName(String);

impl SwitchName {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        ProfileName::parse(s)
            .map(|p| SwitchName(p.to_string()))
            .map_err(|_| Invalid::new("a switch name must match ^[a-z0-9][a-z0-9_.-]{0,62}$"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SwitchName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A switch as written (API body or `[[switches]]` in the configuration file), validated.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSwitch {
    pub name: SwitchName,
    pub esl_host: Host,
    pub esl_port: u16,
    /// Goes on the `auth <password>` line: printable ASCII without spaces (FREESWITCH.md §3.1).
    pub esl_password: Password,
    pub enabled: bool,
    /// The sofia profiles trunkline manages there; never empty.
    pub profiles: Vec<ProfileName>,
}

/// A stored switch.
#[derive(Debug, Clone, PartialEq)]
pub struct Switch {
    pub id: Uuid,
    pub name: SwitchName,
    pub esl_host: Host,
    pub esl_port: u16,
    pub esl_password: Password,
    pub enabled: bool,
    pub profiles: Vec<ProfileName>,
    /// Declared in the configuration file: the file owns it, the API cannot change it.
    pub from_config: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Switch {
    /// Whether a supervisor started for `other` can keep running for this version of the
    /// switch: everything it was started with is the same, the name included (its logs and
    /// metric labels carry it).
    pub fn supervised_as(&self, other: &Switch) -> bool {
        self.name == other.name
            && self.esl_host == other.esl_host
            && self.esl_port == other.esl_port
            && self.esl_password.expose() == other.esl_password.expose()
            && self.enabled == other.enabled
            && self.profiles == other.profiles
    }
}

/// Sorted, without duplicates; `["external"]` when empty.
pub fn normalise_profiles(mut profiles: Vec<ProfileName>) -> Vec<ProfileName> {
    profiles.sort();
    profiles.dedup();
    if profiles.is_empty() {
        profiles.push(ProfileName::external());
    }
    profiles
}

/// Defines a gateway field's enum: the names FreeSWITCH writes, read without regard to case
/// and written back as FreeSWITCH spells them; anything else is kept as written (`Other`), so
/// the API shows what the node said even for a state this list does not know.
macro_rules! node_words {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
            /// A word this list does not know (or none: a truncated report), as written.
            Other(String),
        }

        impl $name {
            pub fn parse(s: &str) -> Self {
                let s = s.trim();
                $(if s.eq_ignore_ascii_case($text) {
                    return $name::$variant;
                })+
                $name::Other(s.to_string())
            }

            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $text,)+
                    $name::Other(s) => s,
                }
            }
        }

        impl Default for $name {
            /// Nothing reported yet: shown as an empty string, as before the node answers.
            fn default() -> Self {
                $name::Other(String::new())
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name::parse(s)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

node_words! {
    /// A sofia gateway's registration state: `<state>` in `sofia xmlstatus gateway` and
    /// `State` in `sofia::gateway_state` (mod_sofia's `sofia_state_names`, sofia_reg.c; the
    /// names of `reg_state_t`, mod_sofia.h). A gateway with `register=false` stays `NOREG`.
    GatewayState {
        Unreged = "UNREGED",
        Trying = "TRYING",
        Register = "REGISTER",
        Reged = "REGED",
        Unregister = "UNREGISTER",
        Failed = "FAILED",
        FailWait = "FAIL_WAIT",
        Expired = "EXPIRED",
        Noreg = "NOREG",
        Down = "DOWN",
        Timeout = "TIMEOUT",
    }
}

node_words! {
    /// Whether sofia counts a gateway reachable: `<status>` in `sofia xmlstatus gateway` and
    /// `Ping-Status` in `sofia::gateway_state` (`sofia_gateway_status_name`, sofia_reg.c),
    /// moved by its OPTIONS pings. `DOWN` is what moves a carrier later at fetch time.
    PingStatus {
        Up = "UP",
        Down = "DOWN",
    }
}

impl PingStatus {
    pub fn is_down(&self) -> bool {
        *self == PingStatus::Down
    }
}

/// What trunkline verified on a node, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedGateway {
    pub name: GatewayName,
    pub profile: ProfileName,
    pub fingerprint: String,
}

/// What trunkline last applied to one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub gateways: BTreeMap<GatewayName, AppliedGateway>,
    pub acl: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn switch() -> Switch {
        Switch {
            id: Uuid::nil(),
            name: SwitchName::parse("fs1").unwrap(),
            esl_host: Host::parse("127.0.0.1").unwrap(),
            esl_port: 8021,
            esl_password: Password::parse("s3cret").unwrap(),
            enabled: true,
            profiles: vec![ProfileName::external()],
            from_config: false,
            created_at: DateTime::<Utc>::MIN_UTC,
            updated_at: DateTime::<Utc>::MIN_UTC,
        }
    }

    #[test]
    fn gateway_words_read_any_case_and_write_as_freeswitch_spells_them() {
        assert_eq!(GatewayState::parse("REGED"), GatewayState::Reged);
        assert_eq!(GatewayState::parse("fail_wait"), GatewayState::FailWait);
        assert_eq!(GatewayState::parse("NOREG").as_str(), "NOREG");
        assert_eq!(
            GatewayState::parse("SOMETHING_NEW"),
            GatewayState::Other("SOMETHING_NEW".into())
        );
        assert_eq!(PingStatus::parse("down"), PingStatus::Down);
        assert!(PingStatus::parse("DOWN").is_down());
        assert!(!PingStatus::parse("UP").is_down());
        assert_eq!(PingStatus::default().as_str(), "");
        assert_eq!(
            serde_json::to_string(&[PingStatus::Up, PingStatus::Other("INVALID".into())]).unwrap(),
            r#"["UP","INVALID"]"#
        );
        assert_eq!(
            serde_json::to_string(&GatewayState::FailWait).unwrap(),
            r#""FAIL_WAIT""#
        );
    }

    #[test]
    fn a_supervisor_keeps_running_only_for_what_it_was_started_with() {
        let running = switch();
        let mut touched = switch();
        touched.updated_at = Utc::now();
        assert!(
            touched.supervised_as(&running),
            "a write that changed nothing"
        );
        let mut renamed = switch();
        renamed.name = SwitchName::parse("fs1-renamed").unwrap();
        assert!(
            !renamed.supervised_as(&running),
            "its logs and labels carry the name"
        );
        let mut moved = switch();
        moved.esl_port = 8022;
        assert!(!moved.supervised_as(&running));
        let mut rekeyed = switch();
        rekeyed.esl_password = Password::parse("other").unwrap();
        assert!(!rekeyed.supervised_as(&running));
    }
}
