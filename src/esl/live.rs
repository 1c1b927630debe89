//! What the supervisors know right now, per switch, for the API: connection state, Core-UUID,
//! last successful sync, pending operations, every gateway as the node last reported it
//! (xmlstatus, then `sofia::gateway_state` events), and each gateway's last reconcile result.
//! In memory only: it is rebuilt from the node on every connection.

use std::collections::HashMap;
use std::sync::RwLock;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::gateway_status::GatewayStatus;
use crate::model::{GatewayState, PingStatus, Switch};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    Connected,
    Connecting,
    AuthFailed,
    Down,
    Disabled,
    /// Another trunkline instance holds this node's lease and acts on it.
    Standby,
}

/// Whether the last pass left a gateway as intended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PassResult {
    Ok,
    Failed,
}

/// The outcome of the last reconcile pass for one gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct GatewayResult {
    /// `ok` or `failed`.
    pub result: PassResult,
    pub detail: Option<String>,
    pub at: DateTime<Utc>,
}

impl GatewayResult {
    pub fn ok() -> Self {
        GatewayResult {
            result: PassResult::Ok,
            detail: None,
            at: Utc::now(),
        }
    }

    pub fn failed(detail: String) -> Self {
        GatewayResult {
            result: PassResult::Failed,
            detail: Some(detail),
            at: Utc::now(),
        }
    }
}

/// One switch's live view.
#[derive(Debug, Clone)]
pub struct SwitchLive {
    pub connection: ConnectionState,
    pub last_error: Option<String>,
    pub core_uuid: Option<String>,
    pub last_sync_at: Option<DateTime<Utc>>,
    /// The configuration version the last converged pass brought the node to.
    pub synced_version: Option<u64>,
    pub pending_operations: usize,
    pub gateways: HashMap<String, GatewayStatus>,
    /// When each gateway that is `DOWN` was first seen down (the status page's "since when").
    pub down_since: HashMap<String, DateTime<Utc>>,
    pub results: HashMap<String, GatewayResult>,
}

impl SwitchLive {
    /// Keeps `down_since` in step with the gateways' status: set when one is first seen
    /// `DOWN`, dropped when it is up again or gone.
    fn track_down(&mut self) {
        let now = Utc::now();
        let gateways = &self.gateways;
        self.down_since
            .retain(|name, _| gateways.get(name).is_some_and(|g| g.status.is_down()));
        for g in gateways.values() {
            if g.status.is_down() {
                self.down_since.entry(g.name.clone()).or_insert(now);
            }
        }
    }
}

impl Default for SwitchLive {
    fn default() -> Self {
        SwitchLive {
            connection: ConnectionState::Down,
            last_error: None,
            core_uuid: None,
            last_sync_at: None,
            synced_version: None,
            pending_operations: 0,
            gateways: HashMap::new(),
            down_since: HashMap::new(),
            results: HashMap::new(),
        }
    }
}

impl SwitchLive {
    /// The node's connection as the API and the status page show it: a switch disabled in the
    /// configuration is `disabled`, whatever its last session was.
    pub fn connection_of(&self, switch: &Switch) -> ConnectionState {
        if switch.enabled {
            self.connection
        } else {
            ConnectionState::Disabled
        }
    }
}

/// Every switch's live view. Short critical sections, never held across an await.
#[derive(Debug, Default)]
pub struct LiveState {
    switches: RwLock<HashMap<Uuid, SwitchLive>>,
}

impl LiveState {
    fn with(&self, id: Uuid, f: impl FnOnce(&mut SwitchLive)) {
        let mut all = self.switches.write().unwrap_or_else(|e| e.into_inner());
        f(all.entry(id).or_default());
    }

    pub fn get(&self, id: Uuid) -> Option<SwitchLive> {
        self.switches
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }

    pub fn remove(&self, id: Uuid) {
        self.switches
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    pub fn set_connection(&self, id: Uuid, state: ConnectionState, error: Option<String>) {
        self.with(id, |s| {
            s.connection = state;
            if error.is_some() || state == ConnectionState::Connected {
                s.last_error = error;
            }
        });
    }

    pub fn set_core_uuid(&self, id: Uuid, core_uuid: &str) {
        self.with(id, |s| s.core_uuid = Some(core_uuid.to_string()));
    }

    pub fn set_pending(&self, id: Uuid, pending: usize) {
        self.with(id, |s| s.pending_operations = pending);
    }

    /// Replaces the gateway table with a fresh `sofia xmlstatus gateway` list. Of duplicate
    /// names (a deleted gateway not yet reaped, and its replacement), the last listed wins.
    pub fn set_gateways(&self, id: Uuid, running: &[GatewayStatus]) {
        self.with(id, |s| {
            s.gateways = running
                .iter()
                .map(|g| (g.name.clone(), g.clone()))
                .collect();
            s.track_down();
        });
    }

    /// A `sofia::gateway_state` event (FREESWITCH.md §3.3).
    /// An event without a state keeps the one known; only `UP` and `DOWN` move the status.
    pub fn gateway_state(
        &self,
        id: Uuid,
        gateway: &str,
        state: Option<GatewayState>,
        ping_status: Option<PingStatus>,
    ) {
        self.with(id, |s| {
            if let Some(g) = s.gateways.get_mut(gateway) {
                if let Some(state) = state {
                    g.state = state;
                }
                if let Some(p @ (PingStatus::Up | PingStatus::Down)) = ping_status {
                    g.status = p;
                }
            }
            s.track_down();
        });
    }

    pub fn record_pass(
        &self,
        id: Uuid,
        converged: Option<u64>,
        results: HashMap<String, GatewayResult>,
        pending: usize,
        error: Option<String>,
    ) {
        self.with(id, |s| {
            s.results.extend(results);
            s.pending_operations = pending;
            if let Some(version) = converged {
                s.last_sync_at = Some(Utc::now());
                s.synced_version = Some(version);
            }
            s.last_error = error;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway(name: &str, status: &str) -> GatewayStatus {
        GatewayStatus {
            name: name.into(),
            status: status.into(),
            state: "NOREG".into(),
            ..GatewayStatus::default()
        }
    }

    #[test]
    fn a_gateway_is_down_since_it_was_first_seen_down_until_it_is_up_or_gone() {
        let live = LiveState::default();
        let id = Uuid::nil();
        live.set_gateways(id, &[gateway("alpha", "UP"), gateway("bravo", "DOWN")]);
        let first = live.get(id).unwrap().down_since;
        assert_eq!(first.keys().collect::<Vec<_>>(), ["bravo"]);

        // Still down on the next read: the same moment, not a newer one.
        live.set_gateways(id, &[gateway("alpha", "UP"), gateway("bravo", "DOWN")]);
        assert_eq!(live.get(id).unwrap().down_since, first);

        live.gateway_state(
            id,
            "alpha",
            Some(GatewayState::Noreg),
            Some(PingStatus::Down),
        );
        live.gateway_state(id, "bravo", Some(GatewayState::Noreg), Some(PingStatus::Up));
        let now = live.get(id).unwrap().down_since;
        assert_eq!(now.keys().collect::<Vec<_>>(), ["alpha"]);

        live.set_gateways(id, &[]);
        assert!(live.get(id).unwrap().down_since.is_empty(), "gone");
    }
}
