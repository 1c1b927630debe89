//! Attempt records end to end, on every backend (SQLite files always, PostgreSQL when
//! `TEST_DATABASE_URL` is set): records go in through the real recorder and come back through
//! real HTTP — every filter, pages, the call view and `failed_over`, tenant isolation, a repeated
//! leg written once, bad query values refused naming the parameter, retention, and a database
//! outage (SQLite's write lock held by another connection; PostgreSQL refusing connections to
//! the database and its sessions killed) that loses nothing within the bound and counts the rest.
//!
//! Every wait is bounded; no assertion depends on how long anything took.

mod support;

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::{AssertSqlSafe, Connection, PgConnection, SqliteConnection};
use support::app::{TestApp, on_every_backend, test_settings};
use support::process::{eventually, eventually_ok};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use trunkline::app::Application;
use trunkline::model::{Attempt, HangupBy, Scope};
use trunkline::quality::recorder::{self, Recorder, RecorderSettings};
use trunkline::store::{AttemptFilter, PageRequest, Store, TenantScope};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(30);

fn at(minute: u32, second: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 12, minute, second)
        .unwrap()
}

/// Leg `n` of `call`: a 503 from the carrier after 183 at +1.5 s, started at minute `n`.
fn leg(call: Uuid, n: u32, tenant: Option<Uuid>, carrier: Uuid) -> Attempt {
    let started = at(n, 0);
    Attempt {
        id: Uuid::now_v7(),
        call_id: call,
        leg_id: Uuid::new_v4(),
        switch_id: Some(Uuid::new_v4()),
        tenant_id: tenant,
        route_id: Some(Uuid::new_v4()),
        carrier_id: carrier,
        gateway: "alpha".into(),
        number: "+15551234567".into(),
        attempt: n,
        sip_status: Some(503),
        cause: "NORMAL_TEMPORARY_FAILURE".into(),
        q850: Some(41),
        started_at: started,
        progress_at: Some(started + chrono::Duration::milliseconds(1500)),
        answered_at: None,
        ended_at: started + chrono::Duration::seconds(3),
        billable_seconds: 0,
        hangup_by: Some(HangupBy::Carrier),
    }
}

/// A recorder on `store` that flushes quickly, and the sender that stops it.
struct Running {
    recorder: Recorder,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Running {
    fn start(store: &Store, settings: RecorderSettings) -> Running {
        let (stop, rx) = watch::channel(false);
        let (recorder, task) = recorder::spawn(store.clone(), settings, rx);
        Running {
            recorder,
            stop,
            task,
        }
    }

    fn quick(store: &Store) -> Running {
        Self::start(
            store,
            RecorderSettings {
                flush_every: Duration::from_millis(20),
                ..RecorderSettings::default()
            },
        )
    }

    /// Records every attempt and waits until the database has taken them all.
    async fn record_all(&self, attempts: impl IntoIterator<Item = Attempt>) {
        let before = self.recorder.flushed();
        let mut n = 0;
        for a in attempts {
            self.recorder.record(a);
            n += 1;
        }
        tokio::time::timeout(WAIT, self.recorder.wait_flushed(before + n))
            .await
            .expect("the recorder stores the records");
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("the recorder stops")
            .unwrap();
    }
}

/// The ids of a list reply's items, in order.
fn ids(reply: &Value) -> Vec<String> {
    reply["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {reply}"))
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

fn ids_of(attempts: &[&Attempt]) -> Vec<String> {
    attempts.iter().map(|a| a.id.to_string()).collect()
}

#[tokio::test]
async fn a_recorded_attempt_reads_back_with_every_field() {
    on_every_backend(|app| async move {
        // Arrange
        let running = Running::quick(&app.store);
        let call = Uuid::new_v4();
        let carrier = Uuid::new_v4();
        let first = leg(call, 1, None, carrier);
        let mut second = leg(call, 2, None, carrier);
        second.sip_status = Some(200);
        second.cause = "NORMAL_CLEARING".into();
        second.q850 = Some(16);
        second.progress_at = None;
        second.answered_at = Some(second.started_at + chrono::Duration::milliseconds(2250));
        second.billable_seconds = 61;
        second.hangup_by = Some(HangupBy::Switch);
        second.switch_id = None;
        second.route_id = None;
        let version = app.store.config_version().await.unwrap();

        // Act
        running.record_all([first.clone(), second.clone()]).await;
        let reply = app.get("/api/v1/attempts", &app.admin).await;

        // Assert
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        let items = reply.body["items"].as_array().unwrap();
        assert_eq!(items.len(), 2, "{}", reply.text);
        let one = &items[0];
        assert_eq!(one["id"], first.id.to_string());
        assert_eq!(one["call_id"], call.to_string());
        assert_eq!(one["leg_id"], first.leg_id.to_string());
        assert_eq!(one["switch_id"], first.switch_id.unwrap().to_string());
        assert_eq!(one["tenant_id"], Value::Null);
        assert_eq!(one["route_id"], first.route_id.unwrap().to_string());
        assert_eq!(one["carrier_id"], carrier.to_string());
        assert_eq!(one["gateway"], "alpha");
        assert_eq!(one["number"], "+15551234567");
        assert_eq!(one["attempt"], 1);
        assert_eq!(one["sip_status"], 503);
        assert_eq!(one["cause"], "NORMAL_TEMPORARY_FAILURE");
        assert_eq!(one["q850"], 41);
        assert_eq!(one["started_at"], "2025-03-01T12:01:00Z");
        assert_eq!(one["progress_at"], "2025-03-01T12:01:01.500Z");
        assert_eq!(one["answered_at"], Value::Null);
        assert_eq!(one["ended_at"], "2025-03-01T12:01:03Z");
        assert_eq!(one["billable_seconds"], 0);
        assert_eq!(one["pdd_ms"], 1500);
        assert_eq!(one["hangup_by"], "carrier");
        assert_eq!(one["failed_over"], true);
        let two = &items[1];
        assert_eq!(two["switch_id"], Value::Null);
        assert_eq!(two["route_id"], Value::Null);
        assert_eq!(two["sip_status"], 200);
        assert_eq!(two["answered_at"], "2025-03-01T12:02:02.250Z");
        assert_eq!(two["pdd_ms"], 2250, "no progress: the delay to the answer");
        assert_eq!(two["billable_seconds"], 61);
        assert_eq!(two["hangup_by"], "switch");
        assert_eq!(two["failed_over"], false);
        assert_eq!(reply.body["next_cursor"], Value::Null);
        assert_eq!(
            app.store.config_version().await.unwrap(),
            version,
            "attempts are not configuration"
        );
        running.stop().await;
    })
    .await;
}

#[tokio::test]
async fn every_filter_selects_exactly_its_attempts() {
    on_every_backend(|app| async move {
        // Arrange: attempts that differ in one property each from a base one.
        let running = Running::quick(&app.store);
        let carrier = Uuid::new_v4();
        let other_carrier = Uuid::new_v4();
        let base = leg(Uuid::new_v4(), 1, None, carrier);
        let mut by_carrier = leg(Uuid::new_v4(), 1, None, other_carrier);
        by_carrier.started_at = at(10, 0);
        let route = Uuid::new_v4();
        let mut by_route = leg(Uuid::new_v4(), 1, None, carrier);
        by_route.route_id = Some(route);
        by_route.started_at = at(20, 0);
        let mut by_number = leg(Uuid::new_v4(), 1, None, carrier);
        by_number.number = "+4420*#7".into();
        by_number.started_at = at(30, 0);
        // A number that would match `+44_0` if `_` were a LIKE wildcard.
        let mut near_number = leg(Uuid::new_v4(), 1, None, carrier);
        near_number.number = "+4430".into();
        near_number.started_at = at(40, 0);
        let mut ok = leg(Uuid::new_v4(), 1, None, carrier);
        ok.sip_status = Some(200);
        ok.started_at = at(50, 0);
        let mut redirected = leg(Uuid::new_v4(), 1, None, carrier);
        redirected.sip_status = Some(302);
        let mut not_found = leg(Uuid::new_v4(), 1, None, carrier);
        not_found.sip_status = Some(404);
        let mut declined = leg(Uuid::new_v4(), 1, None, carrier);
        declined.sip_status = Some(603);
        let mut silent = leg(Uuid::new_v4(), 1, None, carrier);
        silent.sip_status = None;
        let call = Uuid::new_v4();
        let in_call = leg(call, 1, None, carrier);
        let all = [
            &base,
            &by_carrier,
            &by_route,
            &by_number,
            &near_number,
            &ok,
            &redirected,
            &not_found,
            &declined,
            &silent,
            &in_call,
        ];
        running.record_all(all.iter().map(|a| (*a).clone())).await;

        let list = |query: String| {
            let app = &app;
            async move {
                let reply = app
                    .get(&format!("/api/v1/attempts?{query}"), &app.admin)
                    .await;
                assert_eq!(reply.status, StatusCode::OK, "{query}: {}", reply.text);
                ids(&reply.body)
            }
        };

        // Act and Assert, one filter at a time.
        assert_eq!(list(String::new()).await, ids_of(&all));
        assert_eq!(
            list(format!("carrier_id={other_carrier}")).await,
            ids_of(&[&by_carrier])
        );
        assert_eq!(
            list(format!("route_id={route}")).await,
            ids_of(&[&by_route])
        );
        assert_eq!(
            list("destination_prefix=%2B4420*%23".into()).await,
            ids_of(&[&by_number])
        );
        assert_eq!(
            list("destination_prefix=%2B44".into()).await,
            ids_of(&[&by_number, &near_number])
        );
        assert!(
            list("destination_prefix=4".into()).await.is_empty(),
            "a prefix, not a substring"
        );
        assert_eq!(list("status=2xx".into()).await, ids_of(&[&ok]));
        assert_eq!(list("status=3xx".into()).await, ids_of(&[&redirected]));
        assert_eq!(list("status=4xx".into()).await, ids_of(&[&not_found]));
        assert_eq!(
            list("status=5xx".into()).await,
            ids_of(&[
                &base,
                &by_carrier,
                &by_route,
                &by_number,
                &near_number,
                &in_call
            ])
        );
        assert_eq!(list("status=6xx".into()).await, ids_of(&[&declined]));
        assert_eq!(list("status=none".into()).await, ids_of(&[&silent]));
        assert_eq!(
            list("from=2025-03-01T12:10:00Z&to=2025-03-01T12:30:00Z".into()).await,
            ids_of(&[&by_carrier, &by_route]),
            "from inclusive, to exclusive"
        );
        assert_eq!(
            list("from=2025-03-01T13:20:00%2B01:00".into()).await,
            ids_of(&[&by_route, &by_number, &near_number, &ok]),
            "an offset is the same instant in UTC"
        );
        assert_eq!(list(format!("call_id={call}")).await, ids_of(&[&in_call]));
        assert_eq!(
            list(format!(
                "carrier_id={carrier}&status=2xx&from=2025-03-01T12:45:00Z"
            ))
            .await,
            ids_of(&[&ok]),
            "filters combine"
        );
        running.stop().await;
    })
    .await;
}

#[tokio::test]
async fn pages_walk_every_attempt_once_in_arrival_order() {
    on_every_backend(|app| async move {
        // Arrange
        let running = Running::quick(&app.store);
        let carrier = Uuid::new_v4();
        let attempts: Vec<Attempt> = (0..25)
            .map(|_| leg(Uuid::new_v4(), 1, None, carrier))
            .collect();
        running.record_all(attempts.clone()).await;

        // Act
        let mut seen = Vec::new();
        let mut pages = 0;
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                None => "/api/v1/attempts?limit=10&status=5xx".to_string(),
                Some(c) => format!("/api/v1/attempts?limit=10&status=5xx&cursor={c}"),
            };
            let reply = app.get(&path, &app.admin).await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
            seen.extend(ids(&reply.body));
            pages += 1;
            match reply.body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }

        // Assert
        assert_eq!(pages, 3);
        let expected: Vec<String> = attempts.iter().map(|a| a.id.to_string()).collect();
        assert_eq!(seen, expected);
        running.stop().await;
    })
    .await;
}

#[tokio::test]
async fn the_call_view_lists_legs_in_order_and_marks_those_that_failed_over() {
    on_every_backend(|app| async move {
        // Arrange: a call's third leg arrives first (events are not ordered across legs).
        let running = Running::quick(&app.store);
        let call = Uuid::new_v4();
        let carrier = Uuid::new_v4();
        let legs: Vec<Attempt> = [3, 1, 2].map(|n| leg(call, n, None, carrier)).to_vec();
        let lone = leg(Uuid::new_v4(), 1, None, carrier);
        running
            .record_all(legs.iter().cloned().chain([lone.clone()]))
            .await;

        // Act
        let reply = app
            .get(&format!("/api/v1/calls/{call}/attempts"), &app.admin)
            .await;

        // Assert
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        assert_eq!(reply.body["call_id"], call.to_string());
        let attempts = reply.body["attempts"].as_array().unwrap();
        let order: Vec<(u64, bool)> = attempts
            .iter()
            .map(|a| {
                (
                    a["attempt"].as_u64().unwrap(),
                    a["failed_over"].as_bool().unwrap(),
                )
            })
            .collect();
        assert_eq!(order, [(1, true), (2, true), (3, false)]);
        assert_eq!(attempts[0]["leg_id"], legs[1].leg_id.to_string());
        let single = app
            .get(
                &format!("/api/v1/calls/{}/attempts", lone.call_id),
                &app.admin,
            )
            .await;
        assert_eq!(single.body["attempts"][0]["failed_over"], false);
        let none = app
            .get(
                &format!("/api/v1/calls/{}/attempts", Uuid::new_v4()),
                &app.admin,
            )
            .await;
        assert_eq!(none.status, StatusCode::NOT_FOUND, "{}", none.text);
        assert!(
            none.body["errors"].is_array(),
            "a JSON error: {}",
            none.text
        );
        running.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_tenant_sees_only_its_own_attempts() {
    on_every_backend(|app| async move {
        // Arrange: a call of tenant A, one of tenant B, one of the platform.
        let running = Running::quick(&app.store);
        let a = app.tenant("Alpha", Some("alpha"), false).await;
        let b = app.tenant("Bravo", Some("bravo"), false).await;
        let carrier = Uuid::new_v4();
        let a_call = Uuid::new_v4();
        let a_legs = [
            leg(a_call, 1, Some(a), carrier),
            leg(a_call, 2, Some(a), carrier),
        ];
        let b_leg = leg(Uuid::new_v4(), 1, Some(b), carrier);
        let platform_leg = leg(Uuid::new_v4(), 1, None, carrier);
        running
            .record_all(
                a_legs
                    .iter()
                    .cloned()
                    .chain([b_leg.clone(), platform_leg.clone()]),
            )
            .await;
        let a_token = app.tenant_token(a, &[Scope::AttemptsRead]).await;
        let b_token = app.tenant_token(b, &[Scope::AttemptsRead]).await;
        let b_without_scope = app.tenant_token(b, &[Scope::CarriersRead]).await;

        // Act and Assert: lists.
        let seen_by_a = app.get("/api/v1/attempts", &a_token).await;
        assert_eq!(ids(&seen_by_a.body), ids_of(&[&a_legs[0], &a_legs[1]]));
        let seen_by_b = app.get("/api/v1/attempts", &b_token).await;
        assert_eq!(ids(&seen_by_b.body), ids_of(&[&b_leg]));
        let b_asks_for_a_call = app
            .get(&format!("/api/v1/attempts?call_id={a_call}"), &b_token)
            .await;
        assert!(
            ids(&b_asks_for_a_call.body).is_empty(),
            "{}",
            b_asks_for_a_call.text
        );
        let b_names_a = app
            .get(&format!("/api/v1/attempts?tenant_id={a}"), &b_token)
            .await;
        assert_eq!(
            b_names_a.status,
            StatusCode::NOT_FOUND,
            "{}",
            b_names_a.text
        );
        let everything = app.get("/api/v1/attempts", &app.admin).await;
        assert_eq!(ids(&everything.body).len(), 4);
        let only_a = app
            .get(&format!("/api/v1/attempts?tenant_id={a}"), &app.admin)
            .await;
        assert_eq!(ids(&only_a.body), ids_of(&[&a_legs[0], &a_legs[1]]));

        // The call view.
        let a_sees = app
            .get(&format!("/api/v1/calls/{a_call}/attempts"), &a_token)
            .await;
        assert_eq!(a_sees.status, StatusCode::OK);
        assert_eq!(a_sees.body["attempts"].as_array().unwrap().len(), 2);
        let b_sees = app
            .get(&format!("/api/v1/calls/{a_call}/attempts"), &b_token)
            .await;
        assert_eq!(b_sees.status, StatusCode::NOT_FOUND, "{}", b_sees.text);
        let platform_call = app
            .get(
                &format!("/api/v1/calls/{}/attempts", platform_leg.call_id),
                &a_token,
            )
            .await;
        assert_eq!(platform_call.status, StatusCode::NOT_FOUND);

        // The scope.
        let refused = app.get("/api/v1/attempts", &b_without_scope).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
        let refused = app
            .get(
                &format!("/api/v1/calls/{}/attempts", b_leg.call_id),
                &b_without_scope,
            )
            .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
        running.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_repeated_leg_is_written_once() {
    on_every_backend(|app| async move {
        // Arrange: the same leg's event read twice (two ids, one leg), in one batch and in the
        // next.
        let running = Running::quick(&app.store);
        let first = leg(Uuid::new_v4(), 1, None, Uuid::new_v4());
        let mut again = first.clone();
        again.id = Uuid::now_v7();
        let mut later = first.clone();
        later.id = Uuid::now_v7();

        // Act
        running.record_all([first.clone(), again]).await;
        running.record_all([later]).await;
        let written = app
            .store
            .insert_attempts(std::slice::from_ref(&first))
            .await
            .unwrap();

        // Assert
        assert_eq!(
            written, 0,
            "the store reports nothing written for a known leg"
        );
        let reply = app.get("/api/v1/attempts", &app.admin).await;
        assert_eq!(ids(&reply.body), ids_of(&[&first]));
        running.stop().await;
    })
    .await;
}

#[tokio::test]
async fn bad_query_values_are_refused_naming_the_parameter_and_change_nothing() {
    on_every_backend(|app| async move {
        let running = Running::quick(&app.store);
        let kept = leg(Uuid::new_v4(), 1, None, Uuid::new_v4());
        running.record_all([kept.clone()]).await;
        for (query, field) in [
            ("status=7xx", "status"),
            ("status=5XX", "status"),
            ("from=yesterday", "from"),
            ("from=2025-03-01", "from"),
            ("to=2025-03-01T12:00:00", "to"),
            ("from=2025-03-02T00:00:00Z&to=2025-03-01T00:00:00Z", "from"),
            ("destination_prefix=abc", "destination_prefix"),
            ("destination_prefix=%2B", "destination_prefix"),
            ("destination_prefix=1%25", "destination_prefix"),
            ("destination_prefix=1_", "destination_prefix"),
            (
                "destination_prefix=123456789012345678901234567890123",
                "destination_prefix",
            ),
            ("carrier_id=nope", "carrier_id"),
            ("call_id=1", "call_id"),
            ("cursor=zzz", "cursor"),
            ("colour=red", "colour"),
        ] {
            let reply = app
                .get(&format!("/api/v1/attempts?{query}"), &app.admin)
                .await;
            assert!(
                reply.status == StatusCode::BAD_REQUEST
                    || reply.status == StatusCode::UNPROCESSABLE_ENTITY,
                "{query}: {}",
                reply.text
            );
            assert_eq!(reply.error_fields(), [field], "{query}: {}", reply.text);
            assert!(
                !reply.text.contains("yesterday"),
                "never echoed: {}",
                reply.text
            );
        }
        // Our own checks answer 400, like the query extractor's type errors.
        let reply = app.get("/api/v1/attempts?status=7xx", &app.admin).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        let reply = app
            .get("/api/v1/calls/not-a-call/attempts", &app.admin)
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
        assert_eq!(reply.error_fields(), ["call_id"]);
        let reply = app.get("/api/v1/attempts", &app.admin).await;
        assert_eq!(ids(&reply.body), ids_of(&[&kept]));
        running.stop().await;
    })
    .await;
}

#[tokio::test]
async fn pruning_removes_only_the_records_that_ended_before_the_cutoff() {
    on_every_backend(|app| async move {
        // Arrange: five records that ended before 12:05 and three after.
        let running = Running::quick(&app.store);
        let carrier = Uuid::new_v4();
        let old: Vec<Attempt> = (0..5)
            .map(|_| leg(Uuid::new_v4(), 1, None, carrier))
            .collect();
        let recent: Vec<Attempt> = (0..3)
            .map(|_| {
                let mut a = leg(Uuid::new_v4(), 1, None, carrier);
                a.started_at = at(5, 0);
                a.ended_at = at(5, 0);
                a
            })
            .collect();
        running.record_all(old.iter().chain(&recent).cloned()).await;

        // Act: two rows per statement, so the prune takes three.
        let pruned = app.store.prune_attempts(at(5, 0), 2).await.unwrap();
        let again = app.store.prune_attempts(at(5, 0), 2).await.unwrap();

        // Assert
        assert_eq!(pruned, 5);
        assert_eq!(again, 0);
        let left = app
            .store
            .list_attempts(
                &AttemptFilter::new(TenantScope::All),
                &PageRequest {
                    limit: 100,
                    after: None,
                },
            )
            .await
            .unwrap();
        let left: Vec<Uuid> = left.items.iter().map(|v| v.attempt.id).collect();
        assert_eq!(left, recent.iter().map(|a| a.id).collect::<Vec<_>>());
        running.stop().await;
    })
    .await;
}

#[tokio::test]
async fn the_recorder_prunes_records_older_than_the_retention() {
    on_every_backend(|app| async move {
        // Arrange: a day's retention, pruned every 50 ms.
        let running = Running::start(
            &app.store,
            RecorderSettings {
                flush_every: Duration::from_millis(20),
                retention: Duration::from_secs(24 * 3600),
                prune_every: Duration::from_millis(50),
                ..RecorderSettings::default()
            },
        );
        let carrier = Uuid::new_v4();
        let now = Utc::now();
        let mut stale = leg(Uuid::new_v4(), 1, None, carrier);
        stale.started_at = now - chrono::Duration::hours(25);
        stale.ended_at = now - chrono::Duration::hours(25) + chrono::Duration::seconds(30);
        let mut fresh = leg(Uuid::new_v4(), 1, None, carrier);
        fresh.started_at = now - chrono::Duration::hours(23);
        fresh.ended_at = now - chrono::Duration::hours(23);

        // Act
        running.record_all([stale, fresh.clone()]).await;
        let recorder = running.recorder.clone();
        eventually("the stale record is pruned", WAIT, || {
            let recorder = recorder.clone();
            async move { recorder.pruned() >= 1 }
        })
        .await;

        // Assert
        let reply = app.get("/api/v1/attempts", &app.admin).await;
        assert_eq!(ids(&reply.body), ids_of(&[&fresh]));
        assert_eq!(recorder.pruned(), 1);
        running.stop().await;
    })
    .await;
}

/// The `trunkline_attempts_dropped_total` series of `/metrics` (it has no labels).
async fn dropped_metric(app: &TestApp) -> f64 {
    let reply = app.get("/metrics", &app.admin).await;
    reply
        .text
        .lines()
        .find_map(|l| l.strip_prefix("trunkline_attempts_dropped_total "))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// Makes the database refuse the recorder's writes until the returned guard is released.
enum Outage {
    /// Another connection holds SQLite's write lock.
    Sqlite(SqliteConnection),
    /// The database refuses connections and its sessions were killed.
    Postgres { admin: PgConnection, name: String },
}

impl Outage {
    async fn begin(url: &str) -> Outage {
        if url.starts_with("sqlite:") {
            let mut locker = SqliteConnection::connect(url).await.unwrap();
            sqlx::raw_sql("BEGIN EXCLUSIVE")
                .execute(&mut locker)
                .await
                .unwrap();
            return Outage::Sqlite(locker);
        }
        let server = std::env::var("TEST_DATABASE_URL").unwrap();
        let name = url.rsplit('/').next().unwrap().split('?').next().unwrap();
        let mut admin = PgConnection::connect(&server).await.unwrap();
        // The name is ours (`trunkline_test_<uuid>`), not input: safe to splice.
        sqlx::query(AssertSqlSafe(format!(
            "ALTER DATABASE {name} ALLOW_CONNECTIONS false"
        )))
        .execute(&mut admin)
        .await
        .unwrap();
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(name)
        .execute(&mut admin)
        .await
        .unwrap();
        Outage::Postgres {
            admin,
            name: name.to_string(),
        }
    }

    async fn end(self) {
        match self {
            Outage::Sqlite(mut locker) => {
                sqlx::raw_sql("ROLLBACK")
                    .execute(&mut locker)
                    .await
                    .unwrap();
            }
            Outage::Postgres { mut admin, name } => {
                sqlx::query(AssertSqlSafe(format!(
                    "ALTER DATABASE {name} ALLOW_CONNECTIONS true"
                )))
                .execute(&mut admin)
                .await
                .unwrap();
            }
        }
    }
}

#[tokio::test]
async fn records_wait_out_a_database_outage_and_those_beyond_the_bound_are_dropped_and_counted() {
    for fresh in support::db::fresh().await {
        eprintln!("backend: {}", fresh.label);
        // Arrange: a recorder holding at most five records, and a database that refuses writes.
        let app = TestApp::start(&fresh.label, fresh.store.clone()).await;
        let dropped_before = dropped_metric(&app).await;
        let running = Running::start(
            &fresh.store,
            RecorderSettings {
                flush_every: Duration::from_millis(20),
                max_buffered: 5,
                ..RecorderSettings::default()
            },
        );
        let recorder = running.recorder.clone();
        let outage = Outage::begin(&fresh.url).await;

        // Act: eight records while the database is away; record() returns at once each time.
        let carrier = Uuid::new_v4();
        let attempts: Vec<Attempt> = (0..8)
            .map(|_| leg(Uuid::new_v4(), 1, None, carrier))
            .collect();
        let started = std::time::Instant::now();
        for a in &attempts {
            recorder.record(a.clone());
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "record never waits on the database"
        );
        eventually("a write fails", WAIT, || {
            let recorder = recorder.clone();
            async move { recorder.failures() >= 1 }
        })
        .await;
        assert_eq!(
            recorder.flushed(),
            0,
            "nothing was written during the outage"
        );
        assert_eq!(recorder.buffered(), 5, "the bound holds");
        assert_eq!(
            recorder.dropped(),
            3,
            "beyond the bound, dropped and counted"
        );
        outage.end().await;

        // Assert: the five kept are written once the database is back, and nothing else.
        tokio::time::timeout(WAIT, recorder.wait_flushed(5))
            .await
            .expect("the kept records are written after the outage");
        assert_eq!(recorder.buffered(), 0);
        // The app's own pool may still be reconnecting after the outage.
        let listed = eventually_ok("the API answering again", WAIT, || async {
            let reply = app.get("/api/v1/attempts", &app.admin).await;
            match reply.status == StatusCode::OK {
                true => Ok(reply),
                false => Err(format!("{}: {}", reply.status, reply.text)),
            }
        })
        .await;
        assert_eq!(
            ids(&listed.body),
            ids_of(&attempts[..5].iter().collect::<Vec<_>>())
        );
        assert!(
            dropped_metric(&app).await - dropped_before >= 3.0,
            "the drops show in /metrics"
        );
        running.stop().await;
    }
}

#[tokio::test]
async fn the_applications_recorder_stores_what_it_was_given_before_shutdown() {
    for (label, store) in support::db::backends().await {
        eprintln!("backend: {label}");
        // Arrange: the real application, and a record handed to its state's recorder just
        // before shutdown.
        let app = Application::with_store(test_settings(), store.clone())
            .await
            .expect("app builds");
        let recorder = app.state().recorder.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(app.run(async {
            let _ = rx.await;
        }));
        let attempt = leg(Uuid::new_v4(), 1, None, Uuid::new_v4());

        // Act
        recorder.record(attempt.clone());
        tx.send(()).unwrap();
        tokio::time::timeout(WAIT, served)
            .await
            .expect("shuts down")
            .unwrap()
            .unwrap();

        // Assert
        let stored = store
            .call_attempts(TenantScope::All, attempt.call_id)
            .await
            .unwrap();
        assert_eq!(stored.len(), 1, "flushed at shutdown");
        assert_eq!(stored[0].attempt, attempt);
        assert_eq!(recorder.flushed(), 1);
    }
}

#[tokio::test]
async fn a_batch_larger_than_one_statement_is_written_whole() {
    on_every_backend(|app| async move {
        // Arrange: one flush of 1,201 records, more rows than one INSERT statement carries.
        let running = Running::start(
            &app.store,
            RecorderSettings {
                batch: 2_000,
                flush_every: Duration::from_millis(200),
                ..RecorderSettings::default()
            },
        );
        let carrier = Uuid::new_v4();
        let attempts: Vec<Attempt> = (0..1_201)
            .map(|_| leg(Uuid::new_v4(), 1, None, carrier))
            .collect();

        // Act
        running.record_all(attempts.clone()).await;

        // Assert
        let mut seen = Vec::new();
        let mut page = PageRequest {
            limit: 500,
            after: None,
        };
        loop {
            let found = app
                .store
                .list_attempts(&AttemptFilter::new(TenantScope::All), &page)
                .await
                .unwrap();
            seen.extend(found.items.into_iter().map(|v| v.attempt));
            match found.next_after {
                Some(after) => page.after = Some(after),
                None => break,
            }
        }
        assert_eq!(seen, attempts);
        running.stop().await;
    })
    .await;
}
