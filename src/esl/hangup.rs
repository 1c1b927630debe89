//! Reads one leg's `CHANNEL_HANGUP_COMPLETE` into an [`Attempt`]. Pure: the headers come from
//! whatever carried the event (the Event Socket client, a test double). It reads, at the wire
//! edge, so a session hands on a few hundred bytes instead of the event's ~250 headers; what a
//! leg means to trunkline (its carrier, its verdict, its record) is decided in `ingest`.
//!
//! A leg is ours when it carries the `trunkline_leg_*` variables our dial strings put in its
//! `[…]` block (`dialstring::LEG_*`): `variable_<name>` in the event. Everything else about the
//! leg is what FreeSWITCH itself set on it (names checked on FreeSWITCH 1.10.12, see
//! freeswitch-conf/README.md "What trunkline learns from the node's events"):
//! - `variable_originating_leg_uuid`: the A-leg, i.e. the channel whose fetch we answered
//!   (switch_ivr_originate.c sets it on every originated leg);
//! - `variable_sip_invite_failure_status`: the carrier's final failure status (sofia.c, on a
//!   final response ≥ 400; 487 after our own CANCEL); an answered leg has
//!   `variable_answer_uepoch` > 0;
//! - `Caller-Destination-Number`: the number as the leg dialled it (after formatting);
//! - `variable_{start,progress,progress_media,answer,end}_uepoch`, `variable_billsec`;
//! - `variable_sip_hangup_disposition`: who ended the leg.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::dialstring::{LEG_ATTEMPT, LEG_CARRIER, LEG_ROUTE, LEG_TENANT};
use crate::model::{Attempt, HangupBy};

/// What one hangup event is to us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegEvent {
    /// One of our legs, complete.
    Attempt(Box<Attempt>),
    /// Not a leg trunkline routed (an A-leg, another application's call).
    NotOurs,
    /// Carries our variables but cannot be read: counted, never guessed.
    Unattributable(&'static str),
}

/// The name of the event that ends a leg.
pub const HANGUP_COMPLETE: &str = "CHANNEL_HANGUP_COMPLETE";

/// Reads a `CHANNEL_HANGUP_COMPLETE`. `header` looks a header up by name; `switch_id` is the
/// node it came from; `id` the record's id (a UUIDv7 given on arrival).
pub fn read<'e>(
    header: impl Fn(&str) -> Option<&'e str>,
    switch_id: Option<Uuid>,
    id: Uuid,
) -> LegEvent {
    let var = |name: &str| header(&format!("variable_{name}")).filter(|v| !v.is_empty());
    let Some(carrier) = var(LEG_CARRIER) else {
        return LegEvent::NotOurs;
    };
    let uuid = |v: Option<&str>| v.and_then(|v| Uuid::try_parse(v.trim()).ok());
    let Some(carrier_id) = uuid(Some(carrier)) else {
        return LegEvent::Unattributable("trunkline_leg_carrier is not a UUID");
    };
    let Some(call_id) = uuid(var("originating_leg_uuid")) else {
        return LegEvent::Unattributable("no originating_leg_uuid");
    };
    let Some(leg_id) = uuid(header("Unique-ID")) else {
        return LegEvent::Unattributable("no Unique-ID");
    };
    let Some(attempt) = var(LEG_ATTEMPT)
        .and_then(|a| a.parse::<u32>().ok())
        .filter(|a| (1..=1000).contains(a))
    else {
        return LegEvent::Unattributable("trunkline_leg_attempt is not a number");
    };
    // Absent means platform scope or a forced carrier; present but unreadable is not ours.
    let optional = |name: &str| match var(name) {
        None => Ok(None),
        Some(v) => uuid(Some(v)).map(Some).ok_or(()),
    };
    let (Ok(tenant_id), Ok(route_id)) = (optional(LEG_TENANT), optional(LEG_ROUTE)) else {
        return LegEvent::Unattributable("trunkline_leg_tenant or _route is not a UUID");
    };
    let time = |name: &str| {
        var(name)
            .and_then(|v| v.parse::<i64>().ok())
            .filter(|&us| us > 0)
            .and_then(DateTime::<Utc>::from_timestamp_micros)
    };
    let Some(started_at) = time("start_uepoch") else {
        return LegEvent::Unattributable("no start_uepoch");
    };
    let ended_at = time("end_uepoch").unwrap_or(started_at);
    let answered_at = time("answer_uepoch");
    // The first of 180 (progress) and 183 (progress with media).
    let progress_at = match (time("progress_uepoch"), time("progress_media_uepoch")) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let status = |name: &str| {
        var(name)
            .and_then(|v| v.parse::<u16>().ok())
            .filter(|s| (100..=699).contains(s))
    };
    let hangup_by = var("sip_hangup_disposition");
    let sip_status = if answered_at.is_some() {
        Some(200)
    } else if hangup_by == Some("send_cancel") {
        // We cancelled (progress timeout, the caller gave up): the 487 it drew is our doing,
        // and sofia records it as `sip_invite_failure_status=487` (phrase `CANCEL`).
        None
    } else {
        status("sip_invite_failure_status")
    };
    LegEvent::Attempt(Box::new(Attempt {
        id,
        call_id,
        leg_id,
        switch_id,
        tenant_id,
        route_id,
        carrier_id,
        gateway: printable(var("sip_gateway_name").unwrap_or_default(), 64),
        number: printable(header("Caller-Destination-Number").unwrap_or_default(), 40),
        attempt,
        sip_status,
        cause: printable(
            header("Hangup-Cause")
                .or_else(|| var("hangup_cause"))
                .unwrap_or("NONE"),
            64,
        ),
        q850: var("hangup_cause_q850").and_then(|v| v.parse().ok()),
        started_at,
        progress_at,
        answered_at,
        ended_at,
        billable_seconds: var("billsec").and_then(|v| v.parse().ok()).unwrap_or(0),
        hangup_by: hangup_by.and_then(HangupBy::from_disposition),
    }))
}

/// The value cut to `max` characters from the plain set the node uses for names and numbers
/// (letters, digits, `+ * # _ - . @`); anything else is dropped. What the API shows then never
/// carries markup or control characters, whatever a peer put in a header.
fn printable(value: &str, max: usize) -> String {
    value
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "+*#_-.@".contains(*c))
        .take(max)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const CARRIER: &str = "0190d7a4-7c1e-7000-8000-000000000001";
    const CALL: &str = "5b7c2d1e-8f3a-4b6c-9d0e-1f2a3b4c5d6e";
    const LEG: &str = "6c8d3e2f-9a4b-4c7d-8e1f-2a3b4c5d6e7f";

    fn failed_503() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            ("Event-Name", HANGUP_COMPLETE),
            ("Unique-ID", LEG),
            ("Hangup-Cause", "NORMAL_TEMPORARY_FAILURE"),
            ("Caller-Destination-Number", "15551234567"),
            ("variable_trunkline_leg_carrier", CARRIER),
            ("variable_trunkline_leg_attempt", "1"),
            ("variable_originating_leg_uuid", CALL),
            ("variable_sip_gateway_name", "alpha"),
            ("variable_sip_invite_failure_status", "503"),
            ("variable_hangup_cause_q850", "41"),
            ("variable_sip_hangup_disposition", "recv_refuse"),
            ("variable_start_uepoch", "1795356725123456"),
            ("variable_progress_uepoch", "0"),
            ("variable_answer_uepoch", "0"),
            ("variable_end_uepoch", "1795356725223456"),
            ("variable_billsec", "0"),
        ])
    }

    fn read_map(h: &HashMap<&'static str, &'static str>) -> LegEvent {
        read(|n| h.get(n).copied(), None, Uuid::nil())
    }

    #[test]
    fn a_failed_leg_is_read_with_its_status_cause_and_times() {
        let LegEvent::Attempt(a) = read_map(&failed_503()) else {
            panic!("ours")
        };
        assert_eq!(a.carrier_id.to_string(), CARRIER);
        assert_eq!(a.call_id.to_string(), CALL);
        assert_eq!((a.attempt, a.sip_status, a.q850), (1, Some(503), Some(41)));
        assert_eq!(a.cause, "NORMAL_TEMPORARY_FAILURE");
        assert_eq!(a.hangup_by, Some(HangupBy::Carrier));
        assert_eq!((a.tenant_id, a.route_id), (None, None));
        assert_eq!(a.progress_at, None);
        assert_eq!(a.pdd(), None);
        assert_eq!((a.ended_at - a.started_at).num_milliseconds(), 100);
    }

    #[test]
    fn an_answered_leg_is_200_with_its_post_dial_delay() {
        let mut h = failed_503();
        h.remove("variable_sip_invite_failure_status");
        h.insert("variable_progress_uepoch", "1795356725423456");
        h.insert("variable_progress_media_uepoch", "1795356725323456");
        h.insert("variable_answer_uepoch", "1795356726123456");
        h.insert("variable_billsec", "4");
        let LegEvent::Attempt(a) = read_map(&h) else {
            panic!("ours")
        };
        assert_eq!(a.sip_status, Some(200));
        assert_eq!(a.pdd().unwrap().num_milliseconds(), 200, "183 came first");
        assert_eq!(a.billable_seconds, 4);
    }

    /// As FreeSWITCH 1.10.12 reported a leg whose `leg_progress_timeout` fired: we sent the
    /// CANCEL, the carrier's 487 to it is recorded as the failure status.
    #[test]
    fn a_leg_we_cancelled_has_no_carrier_status() {
        let mut h = failed_503();
        h.insert("Hangup-Cause", "PROGRESS_TIMEOUT");
        h.insert("variable_sip_invite_failure_status", "487");
        h.insert("variable_sip_hangup_disposition", "send_cancel");
        let LegEvent::Attempt(a) = read_map(&h) else {
            panic!("ours")
        };
        assert_eq!(a.sip_status, None);
        assert_eq!(a.hangup_by, Some(HangupBy::Switch));
    }

    #[test]
    fn other_channels_are_not_ours_and_damaged_ones_are_unattributable() {
        let mut h = failed_503();
        h.remove("variable_trunkline_leg_carrier");
        assert_eq!(read_map(&h), LegEvent::NotOurs);
        for (name, value) in [
            ("variable_trunkline_leg_carrier", "alpha"),
            ("variable_originating_leg_uuid", ""),
            ("variable_trunkline_leg_attempt", "0"),
            ("variable_trunkline_leg_attempt", "x"),
            ("variable_trunkline_leg_route", "not-a-uuid"),
            ("variable_start_uepoch", "0"),
            ("Unique-ID", "<x>"),
        ] {
            let mut h = failed_503();
            h.insert(name, value);
            assert!(
                matches!(read_map(&h), LegEvent::Unattributable(_)),
                "{name}={value}"
            );
        }
    }

    #[test]
    fn text_from_the_event_is_cut_to_a_plain_alphabet() {
        let mut h = failed_503();
        h.insert("Caller-Destination-Number", "155<script>\r\n${x}");
        h.insert("variable_sip_gateway_name", "al\"pha");
        let LegEvent::Attempt(a) = read_map(&h) else {
            panic!("ours")
        };
        assert_eq!(a.number, "155scriptx");
        assert_eq!(a.gateway, "alpha");
    }
}
