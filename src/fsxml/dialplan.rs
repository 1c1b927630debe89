//! Dialplan documents (FREESWITCH.md §1.4, §1.5, §4.3): the default failover form (every leg
//! in one document), the exact form (one leg per fetch, deciding on the real SIP code), and
//! refusals.
//!
//! Shape: `document/section[dialplan]/context/extension/condition` + actions. The condition
//! matches the *validated destination literal*; actions embed only validated newtypes and
//! static strings. Never `${destination_number}`, `$1` or any other caller data (§6.4.1,
//! §1.5: `$1` substitution can also be silently truncated).
//!
//! Pure: no I/O. Which form to use, and the legs, are decided by the caller.

use std::borrow::Cow;
use std::cell::RefCell;

use crate::causes::{self, Cause, CompiledFailover};
use crate::dialstring::bridge_data;
use crate::model::{ContextName, Destination, FailoverCodes, TriedCarriers};
use crate::routing::Leg;

use super::writer::{RenderError, XmlWriter};

pub use super::NOT_FOUND;

const EXTENSION: &str = "trunkline";

/// One dialplan action: a static application name and its data. Data that is the same in every
/// document is borrowed, so a document allocates only for what is its own.
type Action = (&'static str, Cow<'static, str>);

/// Renders the one extension every dialplan document has.
fn document(
    context: &ContextName,
    expression: &str,
    actions: &[Action],
) -> Result<String, RenderError> {
    let mut w = XmlWriter::new();
    w.open("document", &[("type", "freeswitch/xml")])
        .open("section", &[("name", "dialplan")])
        .open("context", &[("name", context.as_str())])
        .open("extension", &[("name", EXTENSION)])
        .open(
            "condition",
            &[("field", "destination_number"), ("expression", expression)],
        );
    for (application, data) in actions {
        w.empty("action", &[("application", application), ("data", data)]);
    }
    w.close().close().close().close().close();
    w.finish()
}

/// `^<destination>$` with the regex metacharacters of the destination alphabet (`+ *`)
/// escaped. If FreeSWITCH's own `destination_number` differs from what we validated (it holds
/// the value one decoding level earlier, §1.2), the call then finds no route instead of being
/// bridged somewhere wrong (§6.4.1). `$` alone, not followed by `{`, is not expanded.
fn destination_expression(destination: &Destination) -> String {
    let mut expr = String::with_capacity(destination.as_str().len() + 4);
    expr.push('^');
    for c in destination.as_str().chars() {
        if matches!(c, '+' | '*') {
            expr.push('\\');
        }
        expr.push(c);
    }
    expr.push('$');
    expr
}

fn set(var: &str, value: impl std::fmt::Display) -> Action {
    ("set", format!("{var}={value}").into())
}

/// The A-leg settings every bridge document starts with (§6.4.4): hang up once an answered
/// bridge ends (the default would go on to the next action), and do not copy the caller's
/// inbound `X-`/`P-` headers to the carrier (§5).
const A_LEG_DEFAULTS: [Action; 2] = [
    ("set", Cow::Borrowed("hangup_after_bridge=true")),
    ("set", Cow::Borrowed("sip_copy_custom_headers=false")),
];

/// The `continue_on_fail` cause names for one leg in the default form: the causes reached
/// only by its failover codes, plus the causes of a carrier that could not be tried at all
/// (GATEWAY_DOWN, INVALID_GATEWAY: killed, unregistered or ping-down gateway, §3.2) and, when
/// the leg has a progress timeout, PROGRESS_TIMEOUT (a carrier that never answered in time).
/// `compiled` is [`causes::compile`] of the leg's failover codes.
pub fn continue_on_fail_causes(leg: &Leg, compiled: &CompiledFailover) -> Vec<&'static str> {
    let mut names = compiled.causes.clone();
    let mut add = |c: Cause| {
        if !names.contains(&c.name) {
            names.push(c.name);
        }
    };
    add(Cause::GATEWAY_DOWN);
    add(Cause::INVALID_GATEWAY);
    if leg.progress_timeout_seconds.is_some() {
        add(Cause::PROGRESS_TIMEOUT);
    }
    names
}

/// What the default form sets before one leg's bridge, worked out once per failover list.
#[derive(Clone)]
struct LegFailover {
    /// The whole `set` data `continue_on_fail=<causes>`.
    continue_on_fail: String,
    /// The causes for `transfer_on_fail` (comma-separated), empty when there are none.
    transfer_causes: String,
}

/// Working a leg's failover out walks every SIP code 400–699, and a platform has a handful of
/// distinct failover lists, so each thread remembers the last few.
fn leg_failover(leg: &Leg) -> LegFailover {
    const REMEMBERED: usize = 16;
    thread_local! {
        static KNOWN: RefCell<Vec<(FailoverCodes, bool, LegFailover)>> = const { RefCell::new(Vec::new()) };
    }
    let key = (&leg.failover_codes, leg.progress_timeout_seconds.is_some());
    KNOWN.with_borrow_mut(|known| {
        if let Some((_, _, value)) = known.iter().find(|(c, t, _)| (c, *t) == key) {
            return value.clone();
        }
        let compiled = causes::compile(&leg.failover_codes);
        let value = LegFailover {
            continue_on_fail: format!(
                "continue_on_fail={}",
                continue_on_fail_causes(leg, &compiled).join(",")
            ),
            transfer_causes: compiled.ambiguous.join(","),
        };
        if known.len() == REMEMBERED {
            known.remove(0);
        }
        known.push((key.0.clone(), key.1, value.clone()));
        value
    })
}

/// The channel variables the follow-up fetch decides on: unset before a bridge whose failure
/// may come back to trunkline, so that fetch sees only this attempt's outcome.
const OUTCOME_VARIABLES: [Action; 2] = [
    (
        "unset",
        Cow::Borrowed("last_bridge_proto_specific_hangup_cause"),
    ),
    ("unset", Cow::Borrowed("originate_disposition")),
];

/// What a leg whose failure may come back to trunkline records on the A-leg before its
/// bridge: its attempt number, and the carriers tried so far in order, this one included
/// (`trunkline_tried`, [`TriedCarriers`]). The follow-up fetch puts those carriers first in that
/// order ([`crate::routing::Decision::keep_tried_first`]), so a carrier whose health changed
/// between the two fetches is neither tried twice nor skipped.
fn attempt_variables(legs: &[Leg], i: usize) -> [Action; 2] {
    let tried: TriedCarriers = legs[..=i].iter().map(|leg| leg.carrier_id).collect();
    [
        set("trunkline_attempt", i + 1),
        set("trunkline_tried", tried),
    ]
}

/// `<destination> XML <context>`: where a leg's failure goes back to trunkline.
fn back_to_trunkline(context: &ContextName, destination: &Destination) -> String {
    format!("{} XML {}", destination.as_str(), context.as_str())
}

/// The default failover form: one document, one `bridge` per leg from `legs[from]` on
/// (`from` is 0 on the first fetch, and the next leg after a failure came back to us).
///
/// Before *each* bridge, `continue_on_fail` lists the causes that only failover codes reach:
/// FreeSWITCH reads it on the A-leg after that bridge fails (§4.3) and moves on to the next
/// bridge by itself. A cause that a failover code shares with another code (503 and 400 are
/// both NORMAL_TEMPORARY_FAILURE; 600 and a callee's 486 are both USER_BUSY, §4.4) goes into
/// `transfer_on_fail` instead, which switch_channel.c `switch_channel_handle_cause` checks
/// after `continue_on_fail`: the call comes back to trunkline with the attempt number, and the
/// next fetch decides on the real SIP code ([`exact_step`]). Every other cause hangs the
/// caller up with the carrier's own answer. Nothing follows the last bridge: the caller then
/// receives the last carrier's SIP code, passed through (observed on FreeSWITCH 1.10.12).
pub fn bridge_document(
    context: &ContextName,
    destination: &Destination,
    legs: &[Leg],
    from: usize,
) -> Result<String, RenderError> {
    if legs.is_empty() {
        return Err(RenderError::NoLegs);
    }
    if from >= legs.len() {
        return Err(RenderError::LegOutOfRange(from));
    }
    // At most six actions a leg: continue_on_fail, transfer_on_fail, the attempt, two unsets
    // and the bridge.
    let mut actions: Vec<Action> = Vec::with_capacity(A_LEG_DEFAULTS.len() + 6 * legs.len());
    actions.extend(A_LEG_DEFAULTS);
    // Written once, and only for a document that has a leg to send back.
    let mut back: Option<String> = None;
    // A follow-up fetch runs on a channel whose previous document set `transfer_on_fail`.
    let mut transfer_set = from > 0;
    for (i, leg) in legs.iter().enumerate().skip(from) {
        let failover = leg_failover(leg);
        actions.push(("set", failover.continue_on_fail.into()));
        let last = i + 1 == legs.len();
        if !last && !failover.transfer_causes.is_empty() {
            actions.push(set(
                "transfer_on_fail",
                format_args!(
                    "{} {}",
                    failover.transfer_causes,
                    back.get_or_insert_with(|| back_to_trunkline(context, destination))
                ),
            ));
            actions.extend(attempt_variables(legs, i));
            actions.extend(OUTCOME_VARIABLES);
            transfer_set = true;
        } else if transfer_set {
            // Otherwise a stale list would send this leg's failure back as the previous one's.
            actions.push(("unset", Cow::Borrowed("transfer_on_fail")));
            transfer_set = false;
        }
        actions.push(("bridge", bridge_data(leg, i + 1).into()));
    }
    document(context, &destination_expression(destination), &actions)
}

/// Why the exact form refuses to go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExactRefusal {
    /// There are no legs to try.
    NoLegs,
    /// `trunkline_attempt` is not an integer in 1..=legs.len().
    InvalidAttempt,
    /// The posted outcome of the last attempt is neither a SIP code 400-699 nor a known cause.
    UnknownOutcome,
}

/// The next step of the exact failover form, decided by [`exact_step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExactStep {
    /// Bridge `legs[leg]` (attempt number `leg + 1`).
    Bridge {
        leg: usize,
    },
    /// Answer the caller with this SIP code (400-699): the carrier's own answer.
    Respond(u16),
    /// Hang up with this cause.
    Hangup(Cause),
    Refuse(ExactRefusal),
}

/// Decides the next exact-form step from the legs and what the follow-up fetch posted.
///
/// `attempt` is the leg just tried (1-based, our own `trunkline_attempt`), `last_sip_cause` is
/// `last_bridge_proto_specific_hangup_cause` (`sip:503`), `originate_disposition` the cause
/// name. Each follow-up moves strictly forward and the attempt must name an existing leg, so
/// a call makes at most `legs.len()` attempts and a transfer loop is impossible.
pub fn exact_step(
    legs: &[Leg],
    attempt: Option<&str>,
    last_sip_cause: Option<&str>,
    originate_disposition: Option<&str>,
) -> ExactStep {
    if legs.is_empty() {
        return ExactStep::Refuse(ExactRefusal::NoLegs);
    }
    let Some(attempt) = attempt else {
        return ExactStep::Bridge { leg: 0 };
    };
    let Some(tried) = parse_attempt(attempt, legs.len()) else {
        return ExactStep::Refuse(ExactRefusal::InvalidAttempt);
    };
    // `tried` is 1-based, so it is also the index of the next leg.
    let next = (tried < legs.len()).then_some(ExactStep::Bridge { leg: tried });
    let disposition = originate_disposition.and_then(causes::cause_by_name);

    // A carrier that could not be tried at all (gateway killed or down, no progress in time)
    // moves on whatever else was posted: after a progress timeout the CANCEL may still draw
    // a 487 from the carrier, which is our doing, not its answer.
    if let Some(cause) = disposition.filter(|c| {
        [
            Cause::GATEWAY_DOWN,
            Cause::INVALID_GATEWAY,
            Cause::PROGRESS_TIMEOUT,
        ]
        .contains(c)
    }) {
        return next.unwrap_or(ExactStep::Hangup(cause));
    }
    if let Some(raw) = last_sip_cause {
        return match causes::parse_sip_cause(raw) {
            Some(code) if (400..=699).contains(&code) => {
                if legs[tried - 1].failover_codes.matches(code) {
                    next.unwrap_or(ExactStep::Respond(code))
                } else {
                    ExactStep::Respond(code)
                }
            }
            _ => ExactStep::Refuse(ExactRefusal::UnknownOutcome),
        };
    }
    match disposition {
        Some(cause) => ExactStep::Hangup(cause),
        None => ExactStep::Refuse(ExactRefusal::UnknownOutcome),
    }
}

/// `^[1-9][0-9]*$` within 1..=max; nothing else (no sign, no spaces).
fn parse_attempt(s: &str, max: usize) -> Option<usize> {
    if s.is_empty() || s.len() > 4 || !s.bytes().all(|b| b.is_ascii_digit()) || s.starts_with('0') {
        return None;
    }
    let n: usize = s.parse().ok()?;
    (1..=max).contains(&n).then_some(n)
}

/// The exact-form document for a step.
///
/// A bridge step sets `continue_on_fail=true` (every outcome comes back to us), records the
/// attempt number, and unsets the previous attempt's outcome variables so that the follow-up
/// fetch sees only this attempt's. Unless it is the last leg, it then `transfer`s back into
/// the same context with the validated destination, which makes FreeSWITCH fetch again.
pub fn exact_document(
    context: &ContextName,
    destination: &Destination,
    legs: &[Leg],
    step: &ExactStep,
) -> Result<String, RenderError> {
    let actions: Vec<Action> = match *step {
        ExactStep::Bridge { leg } => {
            let this = legs.get(leg).ok_or(RenderError::LegOutOfRange(leg))?;
            let mut actions: Vec<Action> = A_LEG_DEFAULTS.into();
            actions.extend([("set", "continue_on_fail=true".into())]);
            actions.extend(attempt_variables(legs, leg));
            actions.extend(OUTCOME_VARIABLES);
            actions.push(("bridge", bridge_data(this, leg + 1).into()));
            if leg + 1 < legs.len() {
                actions.push(("transfer", back_to_trunkline(context, destination).into()));
            }
            actions
        }
        ExactStep::Respond(code) => {
            if !(400..=699).contains(&code) {
                return Err(RenderError::InvalidResponseCode(code));
            }
            vec![("respond", code.to_string().into())]
        }
        ExactStep::Hangup(cause) => {
            // Only names from our table reach `hangup`, whatever built the `Cause`.
            let known =
                causes::cause_by_name(cause.name).ok_or(RenderError::UnknownCause(cause.name))?;
            vec![("hangup", known.name.into())]
        }
        ExactStep::Refuse(ExactRefusal::NoLegs) => {
            return refuse_document(context, RefuseReason::NoRoute);
        }
        ExactStep::Refuse(_) => {
            return refuse_document(context, RefuseReason::FailoverStateInvalid);
        }
    };
    document(context, &destination_expression(destination), &actions)
}

/// Why a call is refused outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefuseReason {
    /// No route matches the destination.
    NoRoute,
    /// The posted destination is not a valid number.
    InvalidDestination,
    /// Routes match, but none of their carriers can take calls now.
    NoUsableCarrier,
    /// The call does not identify a tenant we know.
    UnknownTenant,
    /// The exact-form follow-up carried an attempt or outcome we cannot trust.
    FailoverStateInvalid,
    /// The tenant's caller-ID policy refuses the caller ID the call presents (or it has none).
    CallerIdRefused,
}

impl RefuseReason {
    /// The hangup cause, chosen for what the caller's side sees (sofia `hangup_cause_to_sip`):
    /// - no route → NO_ROUTE_DESTINATION (404): the number is not reachable through us;
    /// - invalid destination → INVALID_NUMBER_FORMAT (484, Address Incomplete);
    /// - no usable carrier → NORMAL_TEMPORARY_FAILURE (503): a temporary condition (carriers
    ///   disabled or down), so the caller may retry later or elsewhere;
    /// - unknown tenant, or a caller ID the tenant's policy refuses → CALL_REJECTED (603
    ///   Decline, mod_sofia.c `hangup_cause_to_sip`; seen on the node): the call is not
    ///   allowed here at all;
    /// - invalid failover state → NORMAL_TEMPORARY_FAILURE (503): we cannot tell what happened,
    ///   so we stop without trying further carriers, and say so as a temporary failure.
    pub fn cause(&self) -> Cause {
        match self {
            Self::NoRoute => Cause::NO_ROUTE_DESTINATION,
            Self::InvalidDestination => Cause::INVALID_NUMBER_FORMAT,
            Self::NoUsableCarrier | Self::FailoverStateInvalid => Cause::NORMAL_TEMPORARY_FAILURE,
            Self::UnknownTenant | Self::CallerIdRefused => Cause::CALL_REJECTED,
        }
    }
}

/// An extension that matches any destination (`^`) and hangs up with the reason's cause.
/// Never "not found": that would make FreeSWITCH fall back to its static dialplan (§1.4).
pub fn refuse_document(context: &ContextName, reason: RefuseReason) -> Result<String, RenderError> {
    document(context, "^", &[("hangup", reason.cause().name.into())])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsxml::testdata::assert_document_is_safe;
    use crate::model::{FailoverCode, FailoverCodes, HeaderName, HeaderValue};
    use uuid::Uuid;

    fn ctx() -> ContextName {
        ContextName::parse("trunkline").unwrap()
    }

    fn dest() -> Destination {
        Destination::parse("+15551234567").unwrap()
    }

    /// A leg of carrier `0000…00<first letter>` on route `…0f`, for tenant `…7e`.
    fn leg(gw: &str, number: &str) -> Leg {
        let mut leg = Leg::plain(Uuid::from_u128(u128::from(gw.as_bytes()[0])), gw, number);
        leg.route_id = Some(Uuid::from_u128(0x0f));
        leg.tenant_id = Some(Uuid::from_u128(0x7e));
        leg
    }

    fn three_legs() -> Vec<Leg> {
        let mut alpha = leg("alpha", "9915551234567");
        alpha.headers = vec![(
            HeaderName::parse("X-Account").unwrap(),
            HeaderValue::parse("42").unwrap(),
        )];
        alpha.progress_timeout_seconds = Some(8);
        let mut bravo = leg("bravo", "15551234567");
        bravo.failover_codes =
            FailoverCodes::new(vec![FailoverCode::Exact(404), FailoverCode::Exact(503)]).unwrap();
        let mut charlie = leg("charlie", "0015551234567");
        charlie.headers = vec![
            (
                HeaderName::parse("X-Tech-Prefix").unwrap(),
                HeaderValue::parse("7788").unwrap(),
            ),
            (
                HeaderName::parse("X-Attestation").unwrap(),
                HeaderValue::parse("A").unwrap(),
            ),
        ];
        vec![alpha, bravo, charlie]
    }

    fn apps(xml: &str) -> Vec<(String, String)> {
        assert_document_is_safe(xml)
    }

    #[test]
    fn single_carrier_snapshot() {
        let xml = bridge_document(&ctx(), &dest(), &[leg("alpha", "15551234567")], 0).unwrap();
        apps(&xml);
        insta::assert_snapshot!(xml);
    }

    #[test]
    fn three_carrier_failover_snapshot() {
        let xml = bridge_document(&ctx(), &dest(), &three_legs(), 0).unwrap();
        apps(&xml);
        insta::assert_snapshot!(xml);
    }

    #[test]
    fn each_bridge_is_preceded_by_its_own_failover_settings_and_nothing_follows_the_last() {
        let xml = bridge_document(&ctx(), &dest(), &three_legs(), 0).unwrap();
        let actions = apps(&xml);
        let owned = |a: &str, d: &str| (a.to_string(), d.to_string());
        assert_eq!(
            actions,
            vec![
                owned("set", "hangup_after_bridge=true"),
                owned("set", "sip_copy_custom_headers=false"),
                // alpha: platform default codes and a progress timeout.
                owned(
                    "set",
                    "continue_on_fail=UNALLOCATED_NUMBER,RECOVERY_ON_TIMER_EXPIRE,NETWORK_OUT_OF_ORDER,GATEWAY_DOWN,INVALID_GATEWAY,PROGRESS_TIMEOUT"
                ),
                owned(
                    "set",
                    "transfer_on_fail=NORMAL_TEMPORARY_FAILURE,SERVICE_NOT_IMPLEMENTED,INTERWORKING,NORMAL_UNSPECIFIED,NO_ROUTE_DESTINATION,INCOMPATIBLE_DESTINATION,CALL_REJECTED +15551234567 XML trunkline"
                ),
                owned("set", "trunkline_attempt=1"),
                owned("set", "trunkline_tried=00000000000000000000000000000061"),
                owned("unset", "last_bridge_proto_specific_hangup_cause"),
                owned("unset", "originate_disposition"),
                owned(
                    "bridge",
                    "[ignore_q850_reason=true,trunkline_leg_carrier=00000000-0000-0000-0000-000000000061,trunkline_leg_attempt=1,trunkline_leg_route=00000000-0000-0000-0000-00000000000f,trunkline_leg_tenant=00000000-0000-0000-0000-00000000007e,sip_h_X-Account=42,leg_progress_timeout=8,origination_caller_id_name=_undef_]sofia/gateway/alpha/9915551234567"
                ),
                // bravo: 404 and 503; 503 shares its cause with 400 and 481.
                owned(
                    "set",
                    "continue_on_fail=UNALLOCATED_NUMBER,GATEWAY_DOWN,INVALID_GATEWAY"
                ),
                owned(
                    "set",
                    "transfer_on_fail=NORMAL_TEMPORARY_FAILURE +15551234567 XML trunkline"
                ),
                owned("set", "trunkline_attempt=2"),
                owned(
                    "set",
                    "trunkline_tried=00000000000000000000000000000061,00000000000000000000000000000062"
                ),
                owned("unset", "last_bridge_proto_specific_hangup_cause"),
                owned("unset", "originate_disposition"),
                owned(
                    "bridge",
                    "[ignore_q850_reason=true,trunkline_leg_carrier=00000000-0000-0000-0000-000000000062,trunkline_leg_attempt=2,trunkline_leg_route=00000000-0000-0000-0000-00000000000f,trunkline_leg_tenant=00000000-0000-0000-0000-00000000007e,origination_caller_id_name=_undef_]sofia/gateway/bravo/15551234567"
                ),
                // charlie, the last: nothing follows, so nothing comes back either.
                owned(
                    "set",
                    "continue_on_fail=UNALLOCATED_NUMBER,RECOVERY_ON_TIMER_EXPIRE,NETWORK_OUT_OF_ORDER,GATEWAY_DOWN,INVALID_GATEWAY"
                ),
                owned("unset", "transfer_on_fail"),
                owned(
                    "bridge",
                    "[ignore_q850_reason=true,trunkline_leg_carrier=00000000-0000-0000-0000-000000000063,trunkline_leg_attempt=3,trunkline_leg_route=00000000-0000-0000-0000-00000000000f,trunkline_leg_tenant=00000000-0000-0000-0000-00000000007e,sip_h_X-Tech-Prefix=7788,sip_h_X-Attestation=A,origination_caller_id_name=_undef_]sofia/gateway/charlie/0015551234567"
                ),
            ]
        );
    }

    #[test]
    fn a_follow_up_document_starts_at_the_next_leg_and_clears_the_previous_transfer() {
        let legs = three_legs();
        let actions = apps(&bridge_document(&ctx(), &dest(), &legs, 2).unwrap());
        let apps_only: Vec<&str> = actions.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(apps_only, ["set", "set", "set", "unset", "bridge"]);
        assert_eq!(actions[3].1, "transfer_on_fail");
        assert!(
            actions[4]
                .1
                .ends_with("sofia/gateway/charlie/0015551234567")
        );
        assert_eq!(
            bridge_document(&ctx(), &dest(), &legs, 3),
            Err(RenderError::LegOutOfRange(3))
        );
    }

    #[test]
    fn failover_settings_never_carry_numbers() {
        let actions = apps(&bridge_document(&ctx(), &dest(), &three_legs(), 0).unwrap());
        for (_, data) in actions.iter().filter(|(a, _)| a == "set") {
            let list = match data.split_once('=') {
                Some(("continue_on_fail", list)) => list,
                Some(("transfer_on_fail", rest)) => rest.split(' ').next().unwrap(),
                _ => continue,
            };
            for name in list.split(',') {
                assert!(causes::cause_by_name(name).is_some(), "{name}");
            }
        }
    }

    /// What FreeSWITCH does when the bridge of leg `index` fails with `cause`, from the
    /// variables the document set by then (switch_channel.c `switch_channel_handle_cause`,
    /// FREESWITCH.md §4.3): `continue_on_fail` first, then `transfer_on_fail`, else hang up.
    #[derive(Debug, PartialEq)]
    enum AfterFailure {
        NextBridge,
        BackToTrunkline { attempt: String },
        HangUp,
    }

    fn after_failure(actions: &[(String, String)], index: usize, cause: Cause) -> AfterFailure {
        let mut vars: std::collections::HashMap<&str, &str> = Default::default();
        let mut bridges = 0;
        for (app, data) in actions {
            match app.as_str() {
                "set" => {
                    let (k, v) = data.split_once('=').unwrap();
                    vars.insert(k, v);
                }
                "unset" => {
                    vars.remove(data.as_str());
                }
                "bridge" if bridges == index => {
                    let listed = |var: &str| {
                        vars.get(var).is_some_and(|v| {
                            let list = v.split(' ').next().unwrap();
                            list == "true" || list.split(',').any(|c| c == cause.name)
                        })
                    };
                    return if listed("continue_on_fail") {
                        AfterFailure::NextBridge
                    } else if listed("transfer_on_fail") {
                        let target = vars["transfer_on_fail"].split_once(' ').unwrap().1;
                        assert_eq!(target, "+15551234567 XML trunkline");
                        AfterFailure::BackToTrunkline {
                            attempt: vars["trunkline_attempt"].to_string(),
                        }
                    } else {
                        AfterFailure::HangUp
                    };
                }
                "bridge" => bridges += 1,
                _ => {}
            }
        }
        panic!("no bridge {index}")
    }

    /// Whether a failure of the first of two legs with this SIP code reaches the second, in
    /// the given form: the first document, FreeSWITCH's handling of the cause, and, when the
    /// call comes back, trunkline's decision on the real SIP code.
    fn first_leg_fails_over(codes: &FailoverCodes, exact: bool, code: u16) -> bool {
        let mut first = leg("alpha", "15551234567");
        first.failover_codes = codes.clone();
        let legs = vec![first, leg("bravo", "15551234567")];
        let xml = if exact {
            exact_document(&ctx(), &dest(), &legs, &ExactStep::Bridge { leg: 0 }).unwrap()
        } else {
            bridge_document(&ctx(), &dest(), &legs, 0).unwrap()
        };
        match after_failure(&apps(&xml), 0, causes::cause_for_sip(code)) {
            // The exact form transfers back whatever happened (`continue_on_fail=true` and
            // a `transfer` after the bridge).
            AfterFailure::NextBridge if exact => {
                exact_step(&legs, Some("1"), Some(&format!("sip:{code}")), None)
                    == ExactStep::Bridge { leg: 1 }
            }
            AfterFailure::NextBridge => true,
            AfterFailure::BackToTrunkline { attempt } => {
                exact_step(&legs, Some(&attempt), Some(&format!("sip:{code}")), None)
                    == ExactStep::Bridge { leg: 1 }
            }
            AfterFailure::HangUp => false,
        }
    }

    #[test]
    fn every_code_400_to_699_fails_over_exactly_when_configured_in_both_forms() {
        let lists: Vec<FailoverCodes> = [
            vec!["404", "408", "5xx", "604", "606", "608"],
            vec!["404", "5xx", "6xx"],
            vec!["503"],
            vec!["4xx"],
            vec!["486", "502"],
        ]
        .iter()
        .map(|l| {
            FailoverCodes::new(l.iter().map(|c| FailoverCode::parse(c).unwrap()).collect()).unwrap()
        })
        .chain([FailoverCodes::platform_default()])
        .collect();
        for codes in &lists {
            for exact in [false, true] {
                for code in 400..=699 {
                    assert_eq!(
                        first_leg_fails_over(codes, exact, code),
                        codes.matches(code),
                        "codes {codes:?}, exact form {exact}, SIP {code}"
                    );
                }
            }
        }
    }

    #[test]
    fn by_default_a_callee_answer_never_reaches_the_next_carrier_in_either_form() {
        let defaults = FailoverCodes::platform_default();
        for exact in [false, true] {
            for code in [486, 600, 603, 607, 487] {
                assert!(!first_leg_fails_over(&defaults, exact, code), "{code}");
            }
            for code in [404, 408, 500, 502, 503, 504, 599, 604, 606, 608] {
                assert!(first_leg_fails_over(&defaults, exact, code), "{code}");
            }
        }
    }

    #[test]
    fn an_untried_carrier_moves_on_without_coming_back() {
        let legs = three_legs();
        let actions = apps(&bridge_document(&ctx(), &dest(), &legs, 0).unwrap());
        for cause in [
            Cause::GATEWAY_DOWN,
            Cause::INVALID_GATEWAY,
            Cause::PROGRESS_TIMEOUT,
        ] {
            assert_eq!(after_failure(&actions, 0, cause), AfterFailure::NextBridge);
        }
        // bravo has no progress timeout; nobody answering in time is never a failover.
        assert_eq!(
            after_failure(&actions, 1, Cause::PROGRESS_TIMEOUT),
            AfterFailure::HangUp
        );
        assert_eq!(
            after_failure(&actions, 0, Cause::NO_ANSWER),
            AfterFailure::HangUp
        );
    }

    #[test]
    fn the_condition_matches_the_escaped_destination_literal() {
        assert_eq!(destination_expression(&dest()), "^\\+15551234567$");
        assert_eq!(
            destination_expression(&Destination::parse("*72#").unwrap()),
            "^\\*72#$"
        );
        let re = regex::Regex::new(&destination_expression(&dest())).unwrap();
        assert!(re.is_match("+15551234567"));
        assert!(!re.is_match("15551234567"));
        assert!(!re.is_match("+155512345678"));
    }

    #[test]
    fn documents_never_reference_caller_data() {
        let legs = three_legs();
        let mut docs = vec![bridge_document(&ctx(), &dest(), &legs, 0).unwrap()];
        for step in [
            ExactStep::Bridge { leg: 0 },
            ExactStep::Bridge { leg: 2 },
            ExactStep::Respond(486),
            ExactStep::Hangup(Cause::GATEWAY_DOWN),
        ] {
            docs.push(exact_document(&ctx(), &dest(), &legs, &step).unwrap());
        }
        for xml in docs {
            for (_, data) in apps(&xml) {
                assert!(!data.contains('$'), "{data}");
            }
            assert!(!xml.contains("destination_number}"));
        }
    }

    #[test]
    fn a_bridge_document_without_legs_is_an_error() {
        assert_eq!(
            bridge_document(&ctx(), &dest(), &[], 0),
            Err(RenderError::NoLegs)
        );
    }

    #[test]
    fn exact_first_step_bridges_leg_zero() {
        assert_eq!(
            exact_step(&three_legs(), None, None, None),
            ExactStep::Bridge { leg: 0 }
        );
    }

    #[test]
    fn exact_failover_code_moves_to_the_next_leg_or_passes_the_code_back() {
        let legs = three_legs();
        assert_eq!(
            exact_step(
                &legs,
                Some("1"),
                Some("sip:503"),
                Some("NORMAL_TEMPORARY_FAILURE")
            ),
            ExactStep::Bridge { leg: 1 }
        );
        assert_eq!(
            exact_step(&legs, Some("3"), Some("sip:503"), None),
            ExactStep::Respond(503)
        );
    }

    #[test]
    fn exact_non_failover_code_is_passed_back_to_the_caller() {
        let legs = three_legs();
        assert_eq!(
            exact_step(&legs, Some("1"), Some("sip:486"), Some("USER_BUSY")),
            ExactStep::Respond(486)
        );
        // bravo fails over on 404 and 503 only: 600 goes back to the caller.
        assert_eq!(
            exact_step(&legs, Some("2"), Some("sip:600"), None),
            ExactStep::Respond(600)
        );
    }

    #[test]
    fn exact_untried_carrier_moves_on_or_hangs_up_with_its_cause() {
        let legs = three_legs();
        for cause in ["GATEWAY_DOWN", "INVALID_GATEWAY", "PROGRESS_TIMEOUT"] {
            assert_eq!(
                exact_step(&legs, Some("1"), None, Some(cause)),
                ExactStep::Bridge { leg: 1 }
            );
            assert_eq!(
                exact_step(&legs, Some("3"), None, Some(cause)),
                ExactStep::Hangup(causes::cause_by_name(cause).unwrap())
            );
        }
        assert_eq!(
            exact_step(&legs, Some("1"), Some("sip:487"), Some("PROGRESS_TIMEOUT")),
            ExactStep::Bridge { leg: 1 }
        );
    }

    #[test]
    fn exact_other_known_cause_hangs_up_with_it() {
        assert_eq!(
            exact_step(&three_legs(), Some("1"), None, Some("NO_ANSWER")),
            ExactStep::Hangup(Cause::NO_ANSWER)
        );
    }

    #[test]
    fn exact_refuses_what_it_cannot_trust() {
        let legs = three_legs();
        for attempt in [
            "0",
            "4",
            "-1",
            "+1",
            " 1",
            "1 ",
            "01",
            "1.0",
            "",
            "99999999999999999999",
        ] {
            assert_eq!(
                exact_step(&legs, Some(attempt), Some("sip:503"), None),
                ExactStep::Refuse(ExactRefusal::InvalidAttempt),
                "{attempt:?}"
            );
        }
        for (sip, disposition) in [
            (Some("sip:5031"), None),
            (Some("503"), None),
            (Some("sip:200"), None),
            (None, Some("user_busy")),
            (None, Some("call accepted")),
            (None, None),
        ] {
            assert_eq!(
                exact_step(&legs, Some("1"), sip, disposition),
                ExactStep::Refuse(ExactRefusal::UnknownOutcome)
            );
        }
        assert_eq!(
            exact_step(&[], None, None, None),
            ExactStep::Refuse(ExactRefusal::NoLegs)
        );
    }

    #[test]
    fn exact_attempts_are_bounded_by_the_number_of_legs() {
        let legs = three_legs();
        let mut attempt: Option<String> = None;
        let mut bridges = 0;
        loop {
            match exact_step(&legs, attempt.as_deref(), Some("sip:503"), None) {
                ExactStep::Bridge { leg } => {
                    bridges += 1;
                    attempt = Some((leg + 1).to_string());
                    assert!(bridges <= legs.len());
                    let xml =
                        exact_document(&ctx(), &dest(), &legs, &ExactStep::Bridge { leg }).unwrap();
                    let has_transfer = apps(&xml).iter().any(|(a, _)| a == "transfer");
                    assert_eq!(has_transfer, leg + 1 < legs.len());
                }
                ExactStep::Respond(503) => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(bridges, 3);
    }

    #[test]
    fn exact_first_step_snapshot() {
        let legs = three_legs();
        let step = exact_step(&legs, None, None, None);
        let xml = exact_document(&ctx(), &dest(), &legs, &step).unwrap();
        let actions = apps(&xml);
        assert_eq!(
            actions.last().unwrap(),
            &("transfer".into(), "+15551234567 XML trunkline".into())
        );
        insta::assert_snapshot!(xml);
    }

    #[test]
    fn exact_after_503_snapshot() {
        let legs = three_legs();
        let step = exact_step(
            &legs,
            Some("1"),
            Some("sip:503"),
            Some("NORMAL_TEMPORARY_FAILURE"),
        );
        let xml = exact_document(&ctx(), &dest(), &legs, &step).unwrap();
        apps(&xml);
        insta::assert_snapshot!(xml);
    }

    #[test]
    fn exact_after_486_snapshot() {
        let legs = three_legs();
        let step = exact_step(&legs, Some("1"), Some("sip:486"), Some("USER_BUSY"));
        let xml = exact_document(&ctx(), &dest(), &legs, &step).unwrap();
        assert_eq!(apps(&xml), vec![("respond".to_string(), "486".to_string())]);
        insta::assert_snapshot!(xml);
    }

    #[test]
    fn exact_after_gateway_down_on_the_last_leg_snapshot() {
        let legs = three_legs();
        let step = exact_step(&legs, Some("3"), None, Some("GATEWAY_DOWN"));
        let xml = exact_document(&ctx(), &dest(), &legs, &step).unwrap();
        assert_eq!(
            apps(&xml),
            vec![("hangup".to_string(), "GATEWAY_DOWN".to_string())]
        );
        insta::assert_snapshot!(xml);
    }

    #[test]
    fn exact_last_leg_has_no_transfer_snapshot() {
        let legs = three_legs();
        let step = exact_step(&legs, Some("2"), None, Some("GATEWAY_DOWN"));
        assert_eq!(step, ExactStep::Bridge { leg: 2 });
        let xml = exact_document(&ctx(), &dest(), &legs, &step).unwrap();
        apps(&xml);
        insta::assert_snapshot!(xml);
    }

    #[test]
    fn exact_documents_refuse_impossible_steps() {
        let legs = three_legs();
        assert_eq!(
            exact_document(&ctx(), &dest(), &legs, &ExactStep::Bridge { leg: 3 }),
            Err(RenderError::LegOutOfRange(3))
        );
        assert_eq!(
            exact_document(&ctx(), &dest(), &legs, &ExactStep::Respond(200)),
            Err(RenderError::InvalidResponseCode(200))
        );
        let forged = Cause {
            name: "NORMAL_CLEARING system id",
            number: 16,
        };
        assert!(exact_document(&ctx(), &dest(), &legs, &ExactStep::Hangup(forged)).is_err());
        let xml = exact_document(
            &ctx(),
            &dest(),
            &legs,
            &ExactStep::Refuse(ExactRefusal::UnknownOutcome),
        )
        .unwrap();
        assert_eq!(
            apps(&xml),
            vec![("hangup".to_string(), "NORMAL_TEMPORARY_FAILURE".to_string())]
        );
    }

    #[test]
    fn refuse_documents_snapshot() {
        let mut all = String::new();
        for reason in [
            RefuseReason::NoRoute,
            RefuseReason::InvalidDestination,
            RefuseReason::NoUsableCarrier,
            RefuseReason::UnknownTenant,
            RefuseReason::FailoverStateInvalid,
        ] {
            let xml = refuse_document(&ctx(), reason).unwrap();
            let actions = apps(&xml);
            assert_eq!(actions.len(), 1);
            assert_eq!(actions[0].0, "hangup");
            assert!(xml.contains("expression=\"^\""));
            all.push_str(&format!("--- {reason:?}\n{xml}"));
        }
        insta::assert_snapshot!(all);
    }
}
