//! One attempt record: what happened to one outbound leg trunkline routed, as the node's
//! `CHANNEL_HANGUP_COMPLETE` for that leg told it (`esl::hangup`). Plain data: the store
//! keeps it, the API shows it, the quality tables count it.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// One leg of one call, from the node's own hangup event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// UUIDv7, given when the event was read: id order is arrival order.
    pub id: Uuid,
    /// The call: the Unique-ID of the channel whose dialplan fetch trunkline answered (the
    /// leg's `originating_leg_uuid`).
    pub call_id: Uuid,
    /// The leg's own Unique-ID. One record per leg: a repeated event is written once.
    pub leg_id: Uuid,
    /// The node the event came from; `None` when the node is no longer configured.
    pub switch_id: Option<Uuid>,
    /// From the leg's `trunkline_leg_tenant`; `None` = platform scope.
    pub tenant_id: Option<Uuid>,
    /// From `trunkline_leg_route`; `None` for a forced carrier.
    pub route_id: Option<Uuid>,
    /// From `trunkline_leg_carrier`.
    pub carrier_id: Uuid,
    /// `sip_gateway_name` as the node reported it.
    pub gateway: String,
    /// The number the leg dialled, as the node reported it (digits, `+`, `*`, `#` only).
    pub number: String,
    /// From `trunkline_leg_attempt`: the leg's place in the call's order, 1-based.
    pub attempt: u32,
    /// The carrier's final SIP status: 200 for an answered leg, the failure status otherwise;
    /// `None` when the carrier sent no final answer (timeout, gateway down, cancelled).
    pub sip_status: Option<u16>,
    /// FreeSWITCH's hangup cause name, e.g. `NORMAL_CLEARING`.
    pub cause: String,
    /// The Q.850 cause code FreeSWITCH gave the hangup.
    pub q850: Option<u16>,
    pub started_at: DateTime<Utc>,
    /// The first 180 or 183; `None` when the carrier never signalled progress.
    pub progress_at: Option<DateTime<Utc>>,
    pub answered_at: Option<DateTime<Utc>>,
    pub ended_at: DateTime<Utc>,
    pub billable_seconds: u32,
    /// Who ended the leg: `sip_hangup_disposition` (`send_bye`, `recv_bye`, `recv_refuse`,
    /// `send_cancel`, …), `None` when the node set none.
    pub hangup_by: Option<HangupBy>,
}

/// Who ended a leg, from FreeSWITCH's `sip_hangup_disposition` (mod_sofia.c, sofia.c).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HangupBy {
    /// The carrier: `recv_bye`, `recv_refuse`, `recv_cancel`.
    Carrier,
    /// The node (the caller's side, or a timeout): `send_bye`, `send_refuse`, `send_cancel`.
    Switch,
}

impl HangupBy {
    /// Reads `sip_hangup_disposition`; anything else is `None`.
    pub fn from_disposition(s: &str) -> Option<HangupBy> {
        match s {
            "recv_bye" | "recv_refuse" | "recv_cancel" => Some(HangupBy::Carrier),
            "send_bye" | "send_refuse" | "send_cancel" => Some(HangupBy::Switch),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            HangupBy::Carrier => "carrier",
            HangupBy::Switch => "switch",
        }
    }

    pub fn parse(s: &str) -> Option<HangupBy> {
        match s {
            "carrier" => Some(HangupBy::Carrier),
            "switch" => Some(HangupBy::Switch),
            _ => None,
        }
    }
}

/// A class of SIP outcome, the attempts list's `status` filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub enum StatusClass {
    #[serde(rename = "2xx")]
    Answered,
    #[serde(rename = "3xx")]
    Redirected,
    #[serde(rename = "4xx")]
    ClientError,
    #[serde(rename = "5xx")]
    ServerError,
    #[serde(rename = "6xx")]
    GlobalError,
    /// No final SIP answer from the carrier.
    #[serde(rename = "none")]
    NoAnswer,
}

impl StatusClass {
    pub fn parse(s: &str) -> Option<StatusClass> {
        Some(match s {
            "2xx" => StatusClass::Answered,
            "3xx" => StatusClass::Redirected,
            "4xx" => StatusClass::ClientError,
            "5xx" => StatusClass::ServerError,
            "6xx" => StatusClass::GlobalError,
            "none" => StatusClass::NoAnswer,
            _ => return None,
        })
    }

    /// The statuses of the class, `None` for [`StatusClass::NoAnswer`].
    pub fn range(self) -> Option<(u16, u16)> {
        match self {
            StatusClass::Answered => Some((200, 299)),
            StatusClass::Redirected => Some((300, 399)),
            StatusClass::ClientError => Some((400, 499)),
            StatusClass::ServerError => Some((500, 599)),
            StatusClass::GlobalError => Some((600, 699)),
            StatusClass::NoAnswer => None,
        }
    }
}

impl Attempt {
    /// Post-dial delay: start to the first progress, else to the answer.
    pub fn pdd(&self) -> Option<chrono::Duration> {
        self.progress_at
            .or(self.answered_at)
            .map(|t| t - self.started_at)
    }

    pub fn answered(&self) -> bool {
        self.answered_at.is_some()
    }
}
