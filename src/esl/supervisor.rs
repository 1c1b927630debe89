//! One background task per enabled switch: take the node's lease, connect, authenticate,
//! subscribe, then reconcile on (re)connection, on every committed configuration change
//! (debounced, so a burst costs one pass), after gateway add/delete events and on a slow timer;
//! check liveness with a periodic `status`; reconnect with capped exponential backoff; after a
//! refused password wait long (no hammering). Never panics; errors are logged and retried.
//!
//! Durability is level-triggered: every pass compares desired (the published snapshot), applied
//! (the store) and actual (`sofia xmlstatus gateway`), and the store is written only after
//! verification. So work missed while the node or trunkline was down is done on the next pass.
//! Events during a disconnection are lost (DEPENDENCIES.md), hence the full re-read on connect.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio::time::Instant;

use super::client::{ApiCommand, EslConnection, EslError, EslTarget, SwitchEvent};
use super::feed::NodeSink;
use super::gateway_status::{GatewayStatus, NamedStatus, parse_gateways, parse_named};
use super::live::{ConnectionState, GatewayResult, LiveState};
use super::reconcile::{Desired, Plan, Verdict, plan, verify};
use crate::model::AppliedGateway;
use crate::model::GatewayName;
use crate::model::Switch;
use crate::publish::{Published, Publisher};
use crate::store::{Store, StoreError};

/// Timings of the supervisors (configurable; see `config.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EslSettings {
    /// Wait after a change before reconciling, so a burst of writes costs one pass.
    pub debounce: Duration,
    /// Full reconcile pass even without a change (the safety net).
    pub resync_every: Duration,
    /// `api status` probe interval; no answer within `command_timeout` drops the connection.
    pub liveness_every: Duration,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Wait after the switch refused the password.
    pub auth_retry: Duration,
    /// How long a node's lease lasts unless renewed: the longest a node waits for another
    /// instance after its holder died. Renewed, and tried for by a standby, every quarter of it
    /// ([`EslSettings::lease_renew_every`]), so a database hiccup shorter than three quarters of
    /// it costs the holder nothing.
    pub lease_ttl: Duration,
}

impl EslSettings {
    /// How often the holder renews its lease and a standby tries to take it.
    pub fn lease_renew_every(&self) -> Duration {
        self.lease_ttl / 4
    }
}

impl Default for EslSettings {
    fn default() -> Self {
        EslSettings {
            debounce: Duration::from_millis(500),
            resync_every: Duration::from_secs(60),
            liveness_every: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(10),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            auth_retry: Duration::from_secs(60),
            lease_ttl: Duration::from_secs(4),
        }
    }
}

/// What every supervisor shares.
pub struct SyncContext {
    pub store: Store,
    pub published: Arc<ArcSwap<Published>>,
    pub publisher: Arc<Publisher>,
    pub settings: EslSettings,
    /// This instance's lease holder id.
    pub instance: String,
    pub live: Arc<LiveState>,
    /// Where every session hands on the leg hangups and gateway states it reads.
    pub sink: Arc<dyn NodeSink>,
}

/// Capped exponential backoff.
struct Backoff {
    next: Duration,
    min: Duration,
    max: Duration,
}

impl Backoff {
    fn new(s: &EslSettings) -> Self {
        Backoff {
            next: s.backoff_min,
            min: s.backoff_min,
            max: s.backoff_max,
        }
    }

    fn next(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    fn reset(&mut self) {
        self.next = self.min;
    }
}

/// Sleeps for `d`; `true` when asked to stop meanwhile.
async fn pause(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = stop.changed() => true,
        _ = tokio::time::sleep(d) => *stop.borrow(),
    }
}

/// The node cannot be driven: this instance's live view and the copy every instance reads
/// both say why.
async fn report_failure(ctx: &SyncContext, switch: &Switch, state: ConnectionState, error: String) {
    record_error(ctx, switch, &error).await;
    ctx.live.set_connection(switch.id, state, Some(error));
    // Its gateways' states are unknown until it is back: none counts as down meanwhile.
    ctx.sink.gateways_down(switch, None, None);
}

/// Hands on the gateways this node reports DOWN, as the live view has them now.
fn report_gateways(ctx: &SyncContext, switch: &Switch) {
    let Some(live) = ctx.live.get(switch.id) else {
        return;
    };
    let down = live
        .gateways
        .values()
        .filter(|g| g.status.is_down())
        .map(|g| g.name.clone())
        .collect();
    ctx.sink
        .gateways_down(switch, live.core_uuid.as_deref(), Some(down));
}

/// Stores the holder's latest error on the node, so that every instance shows it; a database
/// that does not answer costs only the shared copy (the live state has it).
async fn record_error(ctx: &SyncContext, switch: &Switch, error: &str) {
    if let Err(e) = ctx.store.record_switch_error(switch.id, Some(error)).await {
        tracing::debug!(switch = %switch.name, error = %e, "cannot store the switch's last error");
    }
}

/// Waits `d` before the next connection attempt while keeping the node's lease: a node that
/// is down stays with its holder instead of passing between instances at every expiry. `true`
/// when asked to stop meanwhile; returns early if another instance took the lease.
async fn pause_holding(
    ctx: &SyncContext,
    switch: &Switch,
    stop: &mut watch::Receiver<bool>,
    d: Duration,
) -> bool {
    let until = Instant::now() + d;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        if pause(stop, left.min(ctx.settings.lease_renew_every())).await {
            return true;
        }
        let renewed = ctx
            .store
            .take_switch_lease(switch.id, &ctx.instance, ctx.settings.lease_ttl)
            .await;
        if matches!(renewed, Ok(false)) {
            return false;
        }
    }
}

/// The task of one switch, until `stop` turns true.
pub async fn supervise<C: EslConnection>(
    ctx: Arc<SyncContext>,
    switch: Switch,
    mut stop: watch::Receiver<bool>,
) {
    let name = switch.name.to_string();
    let target = EslTarget {
        host: switch.esl_host.to_string(),
        port: switch.esl_port,
        password: switch.esl_password.expose().to_string(),
        connect_timeout: ctx.settings.connect_timeout,
        command_timeout: ctx.settings.command_timeout,
    };
    let mut backoff = Backoff::new(&ctx.settings);
    let connected = metrics::gauge!("trunkline_esl_connected", "switch" => name.clone());
    while !*stop.borrow() {
        match ctx
            .store
            .take_switch_lease(switch.id, &ctx.instance, ctx.settings.lease_ttl)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                ctx.live
                    .set_connection(switch.id, ConnectionState::Standby, None);
                if pause(&mut stop, ctx.settings.lease_renew_every()).await {
                    break;
                }
                continue;
            }
            Err(e) => {
                tracing::warn!(switch = %name, error = %e, "cannot take the switch lease");
                if pause(&mut stop, backoff.next()).await {
                    break;
                }
                continue;
            }
        }
        ctx.live
            .set_connection(switch.id, ConnectionState::Connecting, None);
        let conn = match C::open(&target).await {
            Ok(conn) => conn,
            Err(EslError::Auth) => {
                tracing::error!(switch = %name, "the switch refused the Event Socket password; retrying in {:?}", ctx.settings.auth_retry);
                report_failure(
                    &ctx,
                    &switch,
                    ConnectionState::AuthFailed,
                    EslError::Auth.to_string(),
                )
                .await;
                if pause(&mut stop, ctx.settings.auth_retry).await {
                    break;
                }
                continue;
            }
            Err(e) => {
                let wait = backoff.next();
                tracing::warn!(switch = %name, error = %e, ?wait, "cannot connect to the switch");
                report_failure(&ctx, &switch, ConnectionState::Down, e.to_string()).await;
                if pause_holding(&ctx, &switch, &mut stop, wait).await {
                    break;
                }
                continue;
            }
        };
        tracing::info!(switch = %name, "Event Socket connected");
        ctx.live
            .set_connection(switch.id, ConnectionState::Connected, None);
        connected.set(1.0);
        let ended = session(&ctx, &switch, &conn, &mut stop, &mut backoff).await;
        conn.close().await;
        connected.set(0.0);
        match ended {
            Ok(()) => break,
            Err(e) => {
                let wait = backoff.next();
                tracing::warn!(switch = %name, error = %format!("{e:#}"), ?wait, "Event Socket session ended");
                report_failure(&ctx, &switch, ConnectionState::Down, format!("{e:#}")).await;
                if pause_holding(&ctx, &switch, &mut stop, wait).await {
                    break;
                }
            }
        }
    }
    if let Err(e) = ctx
        .store
        .release_switch_lease(switch.id, &ctx.instance)
        .await
    {
        tracing::warn!(switch = %name, error = %e, "cannot release the switch lease");
    }
}

/// One connected session: `Ok` when asked to stop, `Err` when the connection or the lease is
/// lost.
async fn session<C: EslConnection>(
    ctx: &SyncContext,
    switch: &Switch,
    conn: &C,
    stop: &mut watch::Receiver<bool>,
    backoff: &mut Backoff,
) -> anyhow::Result<()> {
    let core_uuid = run(switch, conn, &ApiCommand::CoreUuid)
        .await?
        .trim()
        .to_string();
    ctx.live.set_core_uuid(switch.id, &core_uuid);
    let mut changes = ctx.store.subscribe();
    changes.borrow_and_update();
    let mut retry = Backoff::new(&ctx.settings);
    let mut due = Some(Instant::now());
    let mut liveness = tokio::time::interval(ctx.settings.liveness_every);
    let mut resync = tokio::time::interval(ctx.settings.resync_every);
    let mut lease = tokio::time::interval(ctx.settings.lease_renew_every());
    // Taken just before the session started; the holder gives the node up before this passes.
    let mut held_until = Instant::now() + ctx.settings.lease_ttl;
    for timer in [&mut liveness, &mut resync, &mut lease] {
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        timer.reset();
    }
    let debounced =
        |due: Option<Instant>| Some(due.unwrap_or_else(|| Instant::now() + ctx.settings.debounce));
    loop {
        let wake = async {
            match due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.changed() => return Ok(()),
            event = conn.next_event() => match event? {
                SwitchEvent::GatewayState { gateway, state, ping_status } => {
                    ctx.live.gateway_state(switch.id, &gateway, state, ping_status);
                    report_gateways(ctx, switch);
                }
                SwitchEvent::LegHangup(leg) => ctx.sink.leg_hangup(switch, leg),
                // Add/delete change what runs (a delete arrives 1-2 s after killgw): re-read.
                SwitchEvent::GatewayAdd { .. } | SwitchEvent::GatewayDelete { .. } => {
                    due = debounced(due);
                }
                SwitchEvent::Lost { events } => {
                    // Leg hangups among them are gone for good: counted (by the sink), not
                    // guessed; the gateway states among them are read again.
                    ctx.sink.events_lost(switch, events);
                    tracing::warn!(switch = %switch.name, events, "events dropped: the event queue was full");
                    due = debounced(due);
                }
                SwitchEvent::Other => {}
            },
            changed = changes.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                changes.borrow_and_update();
                due = debounced(due);
            }
            _ = wake => {
                due = None;
                // A disable or delete made through another instance reaches this one's switch
                // list a moment later; no command goes to the node meanwhile.
                match ctx.store.get_switch(switch.id).await {
                    Ok(s) if !s.enabled => return Ok(()),
                    Err(StoreError::NotFound) => return Ok(()),
                    _ => {}
                }
                match reconcile_once(ctx, switch, conn, &core_uuid).await {
                    Ok(true) => {
                        retry.reset();
                        backoff.reset();
                    }
                    Ok(false) => due = Some(Instant::now() + retry.next()),
                    Err(e) if e.is_fatal() => return Err(e.into()),
                    Err(e) => {
                        tracing::warn!(switch = %switch.name, error = %e, "reconcile failed");
                        due = Some(Instant::now() + retry.next());
                    }
                }
            }
            _ = liveness.tick() => {
                run(switch, conn, &ApiCommand::Status).await.context("liveness probe")?;
            }
            _ = resync.tick() => due = Some(Instant::now()),
            _ = lease.tick() => {
                let renewing = Instant::now();
                match ctx.store.take_switch_lease(switch.id, &ctx.instance, ctx.settings.lease_ttl).await {
                    Ok(true) => held_until = renewing + ctx.settings.lease_ttl,
                    Ok(false) => anyhow::bail!("lost the lease on this switch to another instance"),
                    // The database did not answer: the lease still holds until it expires, so
                    // the node stays driven; give it up before another instance may take it.
                    Err(e) if Instant::now() + ctx.settings.lease_renew_every() < held_until => {
                        tracing::warn!(switch = %switch.name, error = %e, "cannot renew the switch lease; retrying");
                    }
                    Err(e) => return Err(e).context("the switch lease could not be renewed before it expired"),
                }
            }
        }
    }
}

/// Runs one command, counting it; a fatal error (connection gone, timeout) is returned as is.
async fn run<C: EslConnection>(
    switch: &Switch,
    conn: &C,
    command: &ApiCommand,
) -> Result<String, EslError> {
    let result = conn
        .api(command)
        .await
        .and_then(|out| command.check(&out).map(|()| out));
    let label = match &result {
        Ok(_) => "ok",
        Err(e) if e.is_fatal() => "error",
        Err(_) => "failed",
    };
    metrics::counter!("trunkline_esl_commands_total", "switch" => switch.name.to_string(), "command" => command.label(), "result" => label)
        .increment(1);
    tracing::debug!(switch = %switch.name, command = %command.wire(), result = label, "esl command");
    result
}

/// Why a reconcile pass stopped before its end. A fatal Event Socket error (the connection is
/// gone or timed out) ends the session; anything else is retried on the pass's back-off.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error(transparent)]
    Esl(#[from] EslError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PassError {
    pub fn is_fatal(&self) -> bool {
        matches!(self, PassError::Esl(e) if e.is_fatal())
    }
}

/// One reconcile pass: plan, [`execute`], [`check`], [`record`]. `Ok(true)` when the node
/// converged and the store says so. The session runs it on its triggers; the tests run it
/// over an in-memory connection, one pass at a time.
pub async fn reconcile_once<C: EslConnection>(
    ctx: &SyncContext,
    switch: &Switch,
    conn: &C,
    core_uuid: &str,
) -> Result<bool, PassError> {
    // Act on the latest committed configuration, not on a snapshot the publisher has not
    // rebuilt yet.
    let committed = *ctx.store.subscribe().borrow();
    if let Err(e) = ctx.publisher.refresh_to(committed).await {
        tracing::warn!(error = %format!("{e:#}"), "snapshot refresh before reconcile failed");
    }
    let desired = Desired::from_published(&ctx.published.load(), &switch.profiles);
    let state = ctx.store.switch_sync_state(switch.id).await?;
    let running = parse_gateways(&run(switch, conn, &ApiCommand::GatewayList).await?);
    ctx.live.set_gateways(switch.id, &running);
    report_gateways(ctx, switch);
    let plan = plan(&desired, &running, &state.applied);
    ctx.live.set_pending(switch.id, plan.pending());
    let executed = execute(switch, conn, &plan).await?;
    let verdict = check(ctx, switch, conn, &plan, &desired, &running).await?;
    Ok(record(ctx, switch, core_uuid, &plan, &desired, &executed, &verdict).await?)
}

/// What running a plan's commands did.
struct Executed {
    acl_reloaded: bool,
    /// The commands that failed without ending the connection.
    failures: Vec<String>,
}

/// Runs the plan's commands in order; only a fatal error stops it.
async fn execute<C: EslConnection>(
    switch: &Switch,
    conn: &C,
    plan: &Plan,
) -> Result<Executed, EslError> {
    let mut executed = Executed {
        acl_reloaded: false,
        failures: Vec::new(),
    };
    for command in plan.commands() {
        match run(switch, conn, &command).await {
            Ok(_) => executed.acl_reloaded |= command == ApiCommand::ReloadAcl,
            Err(e) if e.is_fatal() => return Err(e),
            Err(e) => executed.failures.push(e.to_string()),
        }
    }
    Ok(executed)
}

/// Reads what the node runs after the commands (the commands print `+OK` even when nothing
/// happened, FREESWITCH.md §3.2) and checks it against the desired gateways. Every read goes
/// through [`run`], so it is counted and logged like any command.
async fn check<C: EslConnection>(
    ctx: &SyncContext,
    switch: &Switch,
    conn: &C,
    plan: &Plan,
    desired: &Desired,
    running: &[GatewayStatus],
) -> Result<Verdict, EslError> {
    if !plan.touches_node() {
        return Ok(verify(plan, desired, running, &HashMap::new()));
    }
    let after = parse_gateways(&run(switch, conn, &ApiCommand::GatewayList).await?);
    let mut named = HashMap::new();
    for g in plan.named_checks() {
        let status = match run(switch, conn, &ApiCommand::Gateway(g.clone())).await {
            Ok(out) => parse_named(&out),
            Err(e) if e.is_fatal() => return Err(e),
            Err(e) => NamedStatus::Unreadable(e.to_string()),
        };
        named.insert(g, status);
    }
    ctx.live.set_gateways(switch.id, &after);
    report_gateways(ctx, switch);
    Ok(verify(plan, desired, &after, &named))
}

/// Stores what was verified (durable, for every instance), then updates the live view, the
/// metrics and the log. `true` when the node converged.
async fn record(
    ctx: &SyncContext,
    switch: &Switch,
    core_uuid: &str,
    plan: &Plan,
    desired: &Desired,
    executed: &Executed,
    verdict: &Verdict,
) -> Result<bool, StoreError> {
    let confirmed: Vec<AppliedGateway> = verdict
        .confirmed
        .iter()
        .chain(plan.adopt.iter())
        .filter_map(|g| desired.gateways.get(g))
        .map(|d| AppliedGateway {
            name: d.name.clone(),
            profile: d.profile.clone(),
            fingerprint: d.fingerprint.clone(),
        })
        .collect();
    let gone: Vec<GatewayName> = verdict
        .gone
        .iter()
        .chain(plan.forget.iter())
        .cloned()
        .collect();
    let acl_pending = plan.reload_acl && !executed.acl_reloaded;
    let converged = verdict.is_success() && executed.failures.is_empty() && !acl_pending;
    ctx.store
        .record_applied(
            switch.id,
            &confirmed,
            &gone,
            executed.acl_reloaded.then_some(desired.acl.as_str()),
            converged.then_some((core_uuid, desired.version)),
        )
        .await?;
    let mut results: HashMap<String, GatewayResult> = HashMap::new();
    for g in &verdict.confirmed {
        results.insert(g.to_string(), GatewayResult::ok());
    }
    for (g, why) in &verdict.failures {
        results.insert(g.to_string(), GatewayResult::failed(why.clone()));
    }
    let error = executed.failures.first().cloned().or_else(|| {
        verdict
            .failures
            .first()
            .map(|(g, why)| format!("{g}: {why}"))
    });
    if let Some(e) = &error {
        // A converged pass clears it (record_applied); a failed one leaves it for every
        // instance's view.
        record_error(ctx, switch, e).await;
    }
    ctx.live.record_pass(
        switch.id,
        converged.then_some(desired.version),
        results,
        verdict.failures.len() + usize::from(acl_pending),
        error,
    );
    let result = if converged { "ok" } else { "failed" };
    metrics::counter!("trunkline_reconcile_total", "switch" => switch.name.to_string(), "result" => result).increment(1);
    if plan.touches_node() || !converged {
        tracing::info!(
            switch = %switch.name,
            version = desired.version,
            commands = plan.commands().len(),
            converged,
            failures = ?verdict.failures,
            "reconcile pass"
        );
    }
    Ok(converged)
}
