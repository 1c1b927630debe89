//! The reconciler's brain, pure: from what a node should run (the published snapshot), what it
//! runs (`sofia xmlstatus gateway`) and what trunkline last applied to it (durable, from the
//! store), decide the fewest sofia commands that converge it, and afterwards judge whether
//! they worked. No I/O: the supervisor runs the commands and stores the result.
//!
//! FreeSWITCH's rules this encodes (FREESWITCH.md §0.7, §3.2):
//! - `sofia profile P rescan` only **adds** gateways; an existing name is ignored, so a changed
//!   gateway needs `killgw` first. `killgw` then `rescan` re-adds at once (the deleted entry is
//!   evicted, sofia_reg.c:3698-3705);
//! - `killgw G` looks G up globally, whatever P says; it only marks G deleted, and the list form
//!   of `sofia xmlstatus gateway` keeps showing it until it is reaped 1–2 s later;
//! - every command prints `+OK` even when nothing happened, so nothing is trusted until a
//!   later `xmlstatus` shows it; only the named form hides deleted gateways;
//! - gateway names are global across profiles, and trunkline's are unique platform-wide: a
//!   desired name running on another profile is trunkline's gateway in the wrong place.
//!
//! What is never done: kill a gateway whose parameters did not change (a registering trunk
//! would re-register), or touch a gateway trunkline never applied to this node.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::client::ApiCommand;
use super::gateway_status::{GatewayStatus, NamedStatus, proxy_host_port};
use crate::fsxml::sofia::gateway_params;
use crate::model::{Applied, Carrier, Cidr, GatewayName, ProfileName};
use crate::publish::Published;

/// The username sofia uses for a gateway without one (sofia.c parse_gateways, FREESWITCH.md §2.2).
const DEFAULT_USERNAME: &str = "FreeSWITCH";

/// What `sofia xmlstatus gateway` lets us check of a gateway's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observable {
    /// `host:port`, lower case.
    pub proxy: String,
    /// The realm param, else the proxy param (sofia's default), lower case.
    pub realm: String,
    pub username: String,
}

impl Observable {
    fn of(params: &[(&'static str, String)]) -> Observable {
        let get = |name: &str| {
            params
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
        };
        let proxy = get("proxy").unwrap_or_default().to_ascii_lowercase();
        Observable {
            realm: get("realm")
                .map(|r| r.to_ascii_lowercase())
                .unwrap_or_else(|| proxy.clone()),
            username: get("username").unwrap_or_else(|| DEFAULT_USERNAME.to_string()),
            proxy,
        }
    }

    /// Whether a running gateway shows these parameters.
    pub fn shown_by(&self, running: &GatewayStatus) -> bool {
        proxy_host_port(&running.proxy) == self.proxy
            && running.realm.trim().eq_ignore_ascii_case(&self.realm)
            && running.username.trim() == self.username
    }
}

/// A gateway the node should run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredGateway {
    pub name: GatewayName,
    pub profile: ProfileName,
    /// SHA-256 of the params trunkline serves for it: a change FreeSWITCH cannot show
    /// (a password) still changes this.
    pub fingerprint: String,
    pub expect: Observable,
}

impl DesiredGateway {
    pub fn of(carrier: &Carrier) -> DesiredGateway {
        let params = gateway_params(carrier);
        DesiredGateway {
            name: carrier.gateway_name.clone(),
            profile: carrier.profile.clone(),
            fingerprint: fingerprint(params.iter().map(|(n, v)| format!("{n}={v}"))),
            expect: Observable::of(&params),
        }
    }
}

/// Everything one node should run on the profiles trunkline manages there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    pub version: u64,
    pub gateways: BTreeMap<GatewayName, DesiredGateway>,
    /// Fingerprint of the inbound IP list served in acl.conf.
    pub acl: String,
}

impl Desired {
    /// The gateways of `managed` profiles that sofia.conf really serves (carriers skipped from
    /// the document, e.g. for want of a profile template, are left out: a rescan cannot add them).
    pub fn from_published(published: &Published, managed: &[ProfileName]) -> Desired {
        let skipped: BTreeSet<&GatewayName> = published
            .skipped_gateways
            .iter()
            .map(|s| &s.gateway)
            .collect();
        let gateways = published
            .snapshot
            .gateways(None)
            .into_iter()
            .filter(|c| managed.contains(&c.profile) && !skipped.contains(&c.gateway_name))
            .map(|c| (c.gateway_name.clone(), DesiredGateway::of(c)))
            .collect();
        Desired {
            version: published.version(),
            gateways,
            acl: acl_fingerprint(&published.snapshot.inbound_cidrs()),
        }
    }
}

pub fn fingerprint(parts: impl IntoIterator<Item = String>) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update(b"\n");
    }
    hex::encode(hash.finalize())
}

pub fn acl_fingerprint(cidrs: &[Cidr]) -> String {
    fingerprint(cidrs.iter().map(ToString::to_string))
}

/// Why a gateway is in the plan (for logs and the status API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Desired, not running: rescan adds it.
    Add,
    /// Running with other parameters than desired: killgw, then rescan.
    Replace,
    /// Running on another profile than desired: killgw, then rescan of the new profile.
    Move,
    /// Applied by trunkline before, no longer desired: killgw.
    Remove,
}

/// The commands that converge a node, and what to check afterwards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// `killgw`, in gateway order; each with the profile it runs on.
    pub kills: Vec<(ProfileName, GatewayName)>,
    /// One `rescan` per profile.
    pub rescans: BTreeSet<ProfileName>,
    pub reload_acl: bool,
    pub changes: BTreeMap<GatewayName, Change>,
    /// Desired and already running as desired, but not yet recorded as applied (after a
    /// trunkline database loss, or a node that loaded trunkline's sofia.conf at start): record
    /// without touching the node.
    pub adopt: Vec<GatewayName>,
    /// Recorded as applied but neither desired nor running: drop the record.
    pub forget: Vec<GatewayName>,
}

impl Plan {
    /// The commands, in the order they must run: kills before the rescans that re-add, the ACL
    /// last.
    pub fn commands(&self) -> Vec<ApiCommand> {
        let kills = self
            .kills
            .iter()
            .map(|(p, g)| ApiCommand::KillGw(p.clone(), g.clone()));
        let rescans = self.rescans.iter().map(|p| ApiCommand::Rescan(p.clone()));
        let acl = self.reload_acl.then_some(ApiCommand::ReloadAcl);
        kills.chain(rescans).chain(acl).collect()
    }

    /// Whether the node needs a command.
    pub fn touches_node(&self) -> bool {
        !self.kills.is_empty() || !self.rescans.is_empty() || self.reload_acl
    }

    /// Gateways to check one by one afterwards: the named query hides deleted gateways, so it
    /// tells a re-added gateway from its reaped-later predecessor.
    pub fn named_checks(&self) -> Vec<GatewayName> {
        self.changes
            .iter()
            .filter(|(_, c)| **c != Change::Add)
            .map(|(g, _)| g.clone())
            .collect()
    }

    /// How many operations are still to be confirmed (the API's `pending_operations`).
    pub fn pending(&self) -> usize {
        self.changes.len() + usize::from(self.reload_acl)
    }
}

/// The running gateways by name (several entries per name right after killgw + rescan).
pub fn by_name(running: &[GatewayStatus]) -> HashMap<&str, Vec<&GatewayStatus>> {
    let mut out: HashMap<&str, Vec<&GatewayStatus>> = HashMap::new();
    for g in running {
        out.entry(g.name.as_str()).or_default().push(g);
    }
    out
}

/// The plan that takes a node from `running` (the list form of `sofia xmlstatus gateway`) to
/// `desired`, given what trunkline `applied` there before.
pub fn plan(desired: &Desired, running: &[GatewayStatus], applied: &Applied) -> Plan {
    let running = by_name(running);
    let mut plan = Plan::default();
    let names: BTreeSet<&GatewayName> = desired
        .gateways
        .keys()
        .chain(applied.gateways.keys())
        .collect();
    for name in names {
        let want = desired.gateways.get(name);
        let had = applied.gateways.get(name);
        let now = running
            .get(name.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default();
        // The profile a running entry is on, as a command can name it (sofia reports its own
        // spelling; a name our grammar refuses falls back to ours, killgw is global anyway).
        let running_profile = || {
            now.iter()
                .find_map(|g| ProfileName::parse(&g.profile).ok())
                .or_else(|| had.map(|h| h.profile.clone()))
                .or_else(|| want.map(|w| w.profile.clone()))
        };
        match (want, now.is_empty()) {
            (Some(w), true) => {
                plan.rescans.insert(w.profile.clone());
                plan.changes.insert(name.clone(), Change::Add);
            }
            (Some(w), false) => {
                let on_profile: Vec<&&GatewayStatus> = now
                    .iter()
                    .filter(|g| g.profile == w.profile.as_str())
                    .collect();
                let change = if on_profile.is_empty() {
                    Some(Change::Move)
                } else {
                    let shows = on_profile.iter().any(|g| w.expect.shown_by(g));
                    match had {
                        // Unchanged since trunkline applied it and still looking right: leave it.
                        Some(h)
                            if h.fingerprint == w.fingerprint
                                && h.profile == w.profile
                                && shows =>
                        {
                            None
                        }
                        Some(_) => Some(Change::Replace),
                        None if shows => {
                            plan.adopt.push(name.clone());
                            None
                        }
                        None => Some(Change::Replace),
                    }
                };
                if let Some(change) = change {
                    if let Some(p) = running_profile() {
                        plan.kills.push((p, name.clone()));
                    }
                    plan.rescans.insert(w.profile.clone());
                    plan.changes.insert(name.clone(), change);
                }
            }
            (None, false) => {
                // Only here because `had` is Some: trunkline put it there, so it takes it away.
                if let Some(p) = running_profile() {
                    plan.kills.push((p, name.clone()));
                }
                plan.changes.insert(name.clone(), Change::Remove);
            }
            (None, true) => plan.forget.push(name.clone()),
        }
    }
    plan.reload_acl = applied.acl.as_deref() != Some(desired.acl.as_str());
    plan
}

/// The judgement on a plan after it ran.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdict {
    /// Desired gateways seen running with the desired parameters: record as applied.
    pub confirmed: Vec<GatewayName>,
    /// Removed gateways confirmed gone (or marked for deletion): drop the applied record.
    pub gone: Vec<GatewayName>,
    /// What did not converge, and why: retried with backoff.
    pub failures: Vec<(GatewayName, String)>,
}

impl Verdict {
    pub fn is_success(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Checks the plan's changes against the node after the commands ran: `running` is a fresh list
/// form, `named` the named form for every gateway of [`Plan::named_checks`].
pub fn verify(
    plan: &Plan,
    desired: &Desired,
    running: &[GatewayStatus],
    named: &HashMap<GatewayName, NamedStatus>,
) -> Verdict {
    let running = by_name(running);
    let mut verdict = Verdict::default();
    for (name, change) in &plan.changes {
        let outcome = match (change, desired.gateways.get(name)) {
            (Change::Remove, _) => match named.get(name) {
                Some(NamedStatus::Absent) => Ok(true),
                Some(NamedStatus::Running(_)) => Err("still running after killgw".to_string()),
                Some(NamedStatus::Unreadable(text)) => {
                    Err(format!("unexpected status output: {text}"))
                }
                None => Err("not checked".to_string()),
            },
            (_, None) => Err("no longer desired".to_string()),
            (Change::Add, Some(w)) => {
                let now = running
                    .get(name.as_str())
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                check_running(w, now.iter().copied())
            }
            (_, Some(w)) => match named.get(name) {
                Some(NamedStatus::Running(g)) => check_running(w, std::iter::once(g.as_ref())),
                Some(NamedStatus::Absent) => Err("not running after rescan".to_string()),
                Some(NamedStatus::Unreadable(text)) => {
                    Err(format!("unexpected status output: {text}"))
                }
                None => Err("not checked".to_string()),
            },
        };
        match outcome {
            Ok(true) => verdict.gone.push(name.clone()),
            Ok(false) => verdict.confirmed.push(name.clone()),
            Err(why) => verdict.failures.push((name.clone(), why)),
        }
    }
    verdict
}

/// `Ok(false)` when one of `entries` runs `w` as desired (false: not "gone").
fn check_running<'a>(
    w: &DesiredGateway,
    entries: impl Iterator<Item = &'a GatewayStatus>,
) -> Result<bool, String> {
    let entries: Vec<&GatewayStatus> = entries.collect();
    if entries.is_empty() {
        return Err("not running after rescan".to_string());
    }
    let on_profile: Vec<&&GatewayStatus> = entries
        .iter()
        .filter(|g| g.profile == w.profile.as_str())
        .collect();
    if on_profile.is_empty() {
        return Err(format!(
            "running on profile {} instead of {}",
            entries[0].profile, w.profile
        ));
    }
    if on_profile.iter().any(|g| w.expect.shown_by(g)) {
        Ok(false)
    } else {
        let g = on_profile[0];
        Err(format!(
            "runs proxy {} realm {} username {}, expected proxy {} realm {} username {}",
            proxy_host_port(&g.proxy),
            g.realm,
            g.username,
            w.expect.proxy,
            w.expect.realm,
            w.expect.username
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::carrier;
    use crate::model::{AppliedGateway, Host, SipUser};

    fn profile(p: &str) -> ProfileName {
        ProfileName::parse(p).unwrap()
    }

    fn gw(g: &str) -> GatewayName {
        GatewayName::parse(g).unwrap()
    }

    fn desired(carriers: &[Carrier]) -> Desired {
        Desired {
            version: 1,
            gateways: carriers
                .iter()
                .map(|c| (c.gateway_name.clone(), DesiredGateway::of(c)))
                .collect(),
            acl: acl_fingerprint(&[]),
        }
    }

    /// What sofia shows for a carrier it loaded from trunkline's sofia.conf.
    fn running_as(c: &Carrier) -> GatewayStatus {
        let e = DesiredGateway::of(c).expect;
        GatewayStatus {
            name: c.gateway_name.to_string(),
            profile: c.profile.to_string(),
            proxy: format!("sip:{}", e.proxy),
            realm: e.realm,
            username: e.username,
            state: "NOREG".into(),
            status: "UP".into(),
            ..Default::default()
        }
    }

    fn applied(carriers: &[Carrier]) -> Applied {
        Applied {
            gateways: carriers
                .iter()
                .map(|c| {
                    let d = DesiredGateway::of(c);
                    (
                        d.name.clone(),
                        AppliedGateway {
                            name: d.name,
                            profile: d.profile,
                            fingerprint: d.fingerprint,
                        },
                    )
                })
                .collect(),
            acl: Some(acl_fingerprint(&[])),
        }
    }

    fn wire(plan: &Plan) -> Vec<String> {
        plan.commands().iter().map(ApiCommand::wire).collect()
    }

    #[test]
    fn a_converged_node_gets_no_command() {
        let cs = [carrier("alpha", 1), carrier("bravo", 2)];
        let running: Vec<_> = cs.iter().map(running_as).collect();
        let plan = plan(&desired(&cs), &running, &applied(&cs));
        assert!(!plan.touches_node(), "{plan:?}");
        assert!(plan.changes.is_empty() && plan.adopt.is_empty() && plan.forget.is_empty());
        assert_eq!(plan.pending(), 0);
    }

    #[test]
    fn a_new_carrier_is_one_rescan() {
        let old = carrier("alpha", 1);
        let new = carrier("bravo", 2);
        let plan = plan(
            &desired(&[old.clone(), new]),
            &[running_as(&old)],
            &applied(&[old]),
        );
        assert_eq!(wire(&plan), ["sofia profile external rescan"]);
        assert_eq!(plan.changes[&gw("bravo")], Change::Add);
        assert!(plan.named_checks().is_empty());
    }

    #[test]
    fn changed_params_are_killgw_then_rescan() {
        let before = carrier("alpha", 1);
        let mut after = before.clone();
        after.remote_port = 5080;
        let plan = plan(
            &desired(&[after]),
            &[running_as(&before)],
            &applied(&[before]),
        );
        assert_eq!(
            wire(&plan),
            [
                "sofia profile external killgw alpha",
                "sofia profile external rescan"
            ]
        );
        assert_eq!(plan.changes[&gw("alpha")], Change::Replace);
        assert_eq!(plan.named_checks(), [gw("alpha")]);
    }

    #[test]
    fn a_change_freeswitch_cannot_show_is_still_applied() {
        let mut before = carrier("alpha", 1);
        before.register = true;
        before.auth_username = Some(SipUser::parse("acct").unwrap());
        before.auth_password = Some(crate::model::Password::parse("old-secret").unwrap());
        let mut after = before.clone();
        after.auth_password = Some(crate::model::Password::parse("new-secret").unwrap());
        let plan = plan(
            &desired(&[after]),
            &[running_as(&before)],
            &applied(&[before]),
        );
        assert_eq!(
            wire(&plan),
            [
                "sofia profile external killgw alpha",
                "sofia profile external rescan"
            ]
        );
    }

    #[test]
    fn a_change_outside_the_gateway_params_touches_nothing() {
        let before = carrier("alpha", 1);
        let mut after = before.clone();
        after.add_prefix = crate::model::Digits::parse("99").unwrap();
        after.leg_progress_timeout_seconds = Some(9);
        let plan = plan(
            &desired(&[after]),
            &[running_as(&before)],
            &applied(&[before]),
        );
        assert!(!plan.touches_node(), "{plan:?}");
    }

    #[test]
    fn a_profile_move_kills_on_the_old_profile_and_rescans_the_new() {
        let before = carrier("alpha", 1);
        let mut after = before.clone();
        after.profile = profile("carriers");
        let plan = plan(
            &desired(&[after]),
            &[running_as(&before)],
            &applied(&[before]),
        );
        assert_eq!(
            wire(&plan),
            [
                "sofia profile external killgw alpha",
                "sofia profile carriers rescan"
            ]
        );
        assert_eq!(plan.changes[&gw("alpha")], Change::Move);
    }

    #[test]
    fn an_archived_carrier_that_trunkline_applied_is_killed() {
        let gone = carrier("alpha", 1);
        let kept = carrier("bravo", 2);
        let running = [running_as(&gone), running_as(&kept)];
        let plan = plan(
            &desired(std::slice::from_ref(&kept)),
            &running,
            &applied(&[gone, kept]),
        );
        assert_eq!(wire(&plan), ["sofia profile external killgw alpha"]);
        assert_eq!(plan.changes[&gw("alpha")], Change::Remove);
    }

    #[test]
    fn a_gateway_trunkline_never_applied_is_left_alone() {
        let mine = carrier("alpha", 1);
        let foreign = carrier("operator-test", 9);
        let running = [running_as(&mine), running_as(&foreign)];
        let plan = plan(
            &desired(std::slice::from_ref(&mine)),
            &running,
            &applied(&[mine]),
        );
        assert!(!plan.touches_node(), "{plan:?}");
    }

    #[test]
    fn a_desired_gateway_already_running_as_desired_is_adopted_without_a_command() {
        let c = carrier("alpha", 1);
        let mut none = applied(&[]);
        none.acl = Some(acl_fingerprint(&[]));
        let plan = plan(&desired(std::slice::from_ref(&c)), &[running_as(&c)], &none);
        assert!(!plan.touches_node());
        assert_eq!(plan.adopt, [gw("alpha")]);
    }

    #[test]
    fn an_unrecorded_gateway_running_other_params_is_replaced() {
        let mut c = carrier("alpha", 1);
        let stale = running_as(&c);
        c.remote_host = Host::parse("sip.new.example").unwrap();
        let plan = plan(
            &desired(&[c]),
            &[stale],
            &Applied {
                acl: Some(acl_fingerprint(&[])),
                ..Default::default()
            },
        );
        assert_eq!(
            wire(&plan),
            [
                "sofia profile external killgw alpha",
                "sofia profile external rescan"
            ]
        );
    }

    #[test]
    fn a_recorded_gateway_that_the_node_no_longer_runs_is_re_added() {
        // The node restarted without it (its sofia.conf came from elsewhere), or an operator
        // killed it: applied says it is there, the node says it is not.
        let c = carrier("alpha", 1);
        let plan = plan(&desired(std::slice::from_ref(&c)), &[], &applied(&[c]));
        assert_eq!(wire(&plan), ["sofia profile external rescan"]);
    }

    #[test]
    fn a_recorded_gateway_neither_desired_nor_running_is_forgotten() {
        let c = carrier("alpha", 1);
        let plan = plan(&desired(&[]), &[], &applied(&[c]));
        assert!(!plan.touches_node());
        assert_eq!(plan.forget, [gw("alpha")]);
    }

    #[test]
    fn inbound_ip_changes_are_one_reloadacl() {
        let c = carrier("alpha", 1);
        let mut want = desired(std::slice::from_ref(&c));
        want.acl = acl_fingerprint(&[Cidr::parse("203.0.113.10/32").unwrap()]);
        let plan = plan(&want, &[running_as(&c)], &applied(&[c]));
        assert_eq!(wire(&plan), ["reloadacl"]);
        let never = Applied {
            acl: None,
            ..applied(&[])
        };
        assert!(super::plan(&desired(&[]), &[], &never).reload_acl);
    }

    #[test]
    fn a_burst_coalesces_into_one_rescan_per_profile() {
        let before: Vec<Carrier> = (0..50).map(|i| carrier(&format!("gw-{i:02}"), i)).collect();
        let mut after = before.clone();
        for c in after.iter_mut().take(20) {
            c.remote_port = 5099;
        }
        after.extend((50..80).map(|i| carrier(&format!("gw-{i:02}"), i)));
        after[70].profile = profile("carriers");
        let running: Vec<_> = before.iter().map(running_as).collect();
        let plan = plan(&desired(&after), &running, &applied(&before));
        let commands = wire(&plan);
        assert_eq!(commands.len(), 20 + 2, "{commands:?}");
        assert!(commands[..20].iter().all(|c| c.contains(" killgw gw-")));
        assert_eq!(
            commands[20..],
            [
                "sofia profile carriers rescan",
                "sofia profile external rescan"
            ]
        );
    }

    #[test]
    fn a_desired_name_running_on_another_profile_is_moved_even_if_unrecorded() {
        let mut c = carrier("alpha", 1);
        let on_internal = GatewayStatus {
            profile: "internal".into(),
            ..running_as(&c)
        };
        c.profile = profile("external");
        let plan = plan(&desired(&[c]), &[on_internal], &Applied::default());
        assert_eq!(
            plan.commands()[0].wire(),
            "sofia profile internal killgw alpha"
        );
    }

    #[test]
    fn after_killgw_and_rescan_a_deleted_duplicate_does_not_confuse_the_planner() {
        let before = carrier("alpha", 1);
        let mut after = before.clone();
        after.remote_port = 5080;
        // The list shows the deleted old entry and the new one; trunkline recorded the new one.
        let running = [running_as(&before), running_as(&after)];
        let plan = plan(
            &desired(std::slice::from_ref(&after)),
            &running,
            &applied(&[after]),
        );
        assert!(!plan.touches_node(), "{plan:?}");
    }

    #[test]
    fn verification_confirms_adds_replacements_and_removals() {
        let added = carrier("added", 1);
        let before = carrier("changed", 2);
        let mut changed = before.clone();
        changed.remote_port = 5080;
        let removed = carrier("removed", 3);
        let want = desired(&[added.clone(), changed.clone()]);
        let running_before = [running_as(&before), running_as(&removed)];
        let plan = plan(&want, &running_before, &applied(&[before.clone(), removed]));
        assert_eq!(plan.named_checks(), [gw("changed"), gw("removed")]);
        let running_after = [
            running_as(&added),
            running_as(&before),
            running_as(&changed),
        ];
        let named = HashMap::from([
            (
                gw("changed"),
                NamedStatus::Running(Box::new(running_as(&changed))),
            ),
            (gw("removed"), NamedStatus::Absent),
        ]);
        let verdict = verify(&plan, &want, &running_after, &named);
        assert!(verdict.is_success(), "{verdict:?}");
        assert_eq!(verdict.confirmed, [gw("added"), gw("changed")]);
        assert_eq!(verdict.gone, [gw("removed")]);
    }

    #[test]
    fn verification_fails_when_the_node_still_runs_old_params() {
        let before = carrier("alpha", 1);
        let mut after = before.clone();
        after.remote_port = 5080;
        let want = desired(std::slice::from_ref(&after));
        let plan = plan(
            &want,
            &[running_as(&before)],
            &applied(std::slice::from_ref(&before)),
        );
        // A rescan that ignored the duplicate: the node still runs the old port.
        let named = HashMap::from([(
            gw("alpha"),
            NamedStatus::Running(Box::new(running_as(&before))),
        )]);
        let verdict = verify(&plan, &want, &[running_as(&before)], &named);
        assert_eq!(verdict.failures.len(), 1);
        assert!(
            verdict.failures[0]
                .1
                .contains("expected proxy sip.example.net:5080"),
            "{verdict:?}"
        );
        let absent = HashMap::from([(gw("alpha"), NamedStatus::Absent)]);
        assert!(!verify(&plan, &want, &[], &absent).is_success());
    }

    #[test]
    fn verification_fails_for_an_add_that_did_not_appear_or_a_kill_that_did_not_take() {
        let c = carrier("alpha", 1);
        let want = desired(std::slice::from_ref(&c));
        let plan = plan(&want, &[], &Applied::default());
        assert!(!verify(&plan, &want, &[], &HashMap::new()).is_success());
        let gone = carrier("bravo", 2);
        let plan = super::plan(
            &desired(&[]),
            &[running_as(&gone)],
            &applied(std::slice::from_ref(&gone)),
        );
        let named = HashMap::from([(
            gw("bravo"),
            NamedStatus::Running(Box::new(running_as(&gone))),
        )]);
        assert!(!verify(&plan, &desired(&[]), &[], &named).is_success());
    }

    #[test]
    fn observable_defaults_follow_sofia() {
        let mut c = carrier("alpha", 1);
        let e = DesiredGateway::of(&c).expect;
        assert_eq!(
            (e.proxy.as_str(), e.realm.as_str(), e.username.as_str()),
            ("sip.example.net:5060", "sip.example.net:5060", "FreeSWITCH")
        );
        c.realm = Some(Host::parse("Realm.Example").unwrap());
        c.auth_username = Some(SipUser::parse("acct7").unwrap());
        let e = DesiredGateway::of(&c).expect;
        assert_eq!(
            (e.realm.as_str(), e.username.as_str()),
            ("realm.example", "acct7")
        );
    }
}
