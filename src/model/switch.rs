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
