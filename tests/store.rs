//! The store on every backend (SQLite always, PostgreSQL when `TEST_DATABASE_URL` is set):
//! round trips, the configuration version and its change feed (NOTIFY across instances on
//! PostgreSQL), unique conflicts naming the field, the carrier lifecycle rules, the foreign key
//! actions, keyset pagination under concurrent inserts, and the migrations of both backends.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use sqlx::{AssertSqlSafe, Connection};
use trunkline::model::*;
use trunkline::store::{
    Backend, CarrierFilter, PageRequest, PhoneNumberFilter, RouteFilter, Store, StoreError,
    TenantFilter, TenantScope,
};
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// Arrange helpers

fn new_tenant(name: &str, context: Option<&str>) -> NewTenant {
    NewTenant {
        name: DisplayName::parse(name).unwrap(),
        context: context.map(|c| ContextName::parse(c).unwrap()),
        features: vec![Feature::SelfServiceCarriers],
        failover_mode: Some(FailoverMode::Exact),
        max_cost: Some(usd("0.05")),
        caller_id_policy: serde_json::from_value(serde_json::json!(
            {"allow": "own_numbers", "foreign": "replace", "default_number": "+4930123456"}
        ))
        .unwrap(),
    }
}

/// A per-minute cost in USD (the routing-criteria columns).
fn usd(rate: &str) -> trunkline::model::Cost {
    trunkline::model::Cost {
        rate: trunkline::model::Rate::parse(rate).unwrap(),
        currency: trunkline::model::Currency::usd(),
    }
}

/// A carrier with every optional field set, so a round trip covers every column.
fn new_carrier(gateway: &str, tenant: Option<Uuid>) -> NewCarrier {
    NewCarrier {
        tenant_id: tenant,
        name: DisplayName::parse(&format!("Carrier {gateway}")).unwrap(),
        gateway_name: GatewayName::parse(gateway).unwrap(),
        carrier_type: CarrierType::RegisterTrunk,
        direction: Direction::Bidirectional,
        status: CarrierStatus::Active,
        remote_host: Host::parse("sip.carrier.example").unwrap(),
        remote_port: 5080,
        transport: Transport::Tls,
        profile: ProfileName::parse("external").unwrap(),
        register: true,
        auth_username: Some(SipUser::parse("acct42").unwrap()),
        auth_password: Some(Password::parse("s3cret-PASS-9").unwrap()),
        realm: Some(Host::parse("carrier.example").unwrap()),
        from_user: Some(SipUser::parse("acct42").unwrap()),
        from_domain: Some(Host::parse("carrier.example").unwrap()),
        caller_id_in_from: true,
        ping_seconds: Some(30),
        inbound_ips: vec![
            Cidr::parse("203.0.113.0/24").unwrap(),
            Cidr::parse("2001:db8::1").unwrap(),
        ],
        strip_prefix: Digits::parse("+").unwrap(),
        add_prefix: Digits::parse("00").unwrap(),
        add_suffix: Digits::parse("#").unwrap(),
        tech_headers: BTreeMap::from([(
            HeaderName::parse("X-Account").unwrap(),
            HeaderValue::parse("42").unwrap(),
        )]),
        attestation_header: Some(HeaderName::parse("X-Attestation").unwrap()),
        failover_codes: Some(FailoverCodes::platform_default()),
        leg_progress_timeout_seconds: Some(8),
        cost: Some(usd("0.0125")),
        detail: trunkline::model::Detail::parse("SBC pair in Frankfurt\nNOC: +49 30 1234").unwrap(),
        caller_id: serde_json::from_value(serde_json::json!(
            {"format": "national", "country_code": "49", "national_prefix": "0",
             "asserted_identity": true, "privacy": true}
        ))
        .unwrap(),
    }
}

fn new_route(name: &str, carrier: Uuid, tenant: Option<Uuid>, enabled: bool) -> NewRoute {
    NewRoute {
        tenant_id: tenant,
        name: DisplayName::parse(name).unwrap(),
        matcher: RouteMatch::Prefix(RoutePrefix::parse("+44").unwrap()),
        carrier_id: carrier,
        priority: 10,
        strip_prefix: Digits::parse("+").unwrap(),
        add_prefix: Digits::parse("9").unwrap(),
        enabled,
        criteria: serde_json::from_value::<trunkline::model::Schedule>(serde_json::json!(
            {"time_zone": "Europe/Berlin", "windows": [{"days": ["mon"], "start": "22:00", "end": "06:00"}]}
        ))
        .map(|schedule| trunkline::model::RouteCriteria {
            schedule: Some(schedule),
            cost: Some(usd("0.000001")),
            weight: Some(trunkline::model::Weight::new(70).unwrap()),
            caller_prefix: Some(trunkline::model::CallerPrefix::parse("+4930").unwrap()),
            caller_regex: Some(trunkline::model::RouteRegex::parse("^49[0-9]+$").unwrap()),
        })
        .unwrap(),
        detail: trunkline::model::Detail::parse("the weekend route").unwrap(),
    }
}

fn new_number(number: &str, tenant: Uuid, carrier: Option<Uuid>) -> NewPhoneNumber {
    NewPhoneNumber {
        tenant_id: tenant,
        number: E164::parse(number).unwrap(),
        carrier_id: carrier,
        capabilities: vec![Capability::Voice, Capability::Sms],
    }
}

fn page(limit: u32) -> PageRequest {
    PageRequest { limit, after: None }
}

async fn version(store: &Store) -> u64 {
    store.config_version().await.unwrap()
}

/// Every row of a list, following `next_after` to the end.
async fn all_pages<T, F, Fut>(limit: u32, mut list: F) -> Vec<T>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: Future<Output = Result<trunkline::store::Page<T>, StoreError>>,
{
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = list(PageRequest { limit, after }).await.unwrap();
        assert!(page.items.len() <= limit as usize);
        out.extend(page.items);
        match page.next_after {
            Some(next) => after = Some(next),
            None => return out,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Connecting and migrating

#[test]
fn both_backends_have_migrations_with_the_same_versions() {
    let versions = |backend: &str| -> BTreeSet<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(backend);
        std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| {
                let name = entry.unwrap().file_name().into_string().unwrap();
                let (version, _) = name
                    .split_once('_')
                    .unwrap_or_else(|| panic!("{name}: no version"));
                version.to_string()
            })
            .collect()
    };

    let sqlite = versions("sqlite");
    let postgres = versions("postgres");

    assert!(!sqlite.is_empty());
    assert_eq!(sqlite, postgres);
}

#[tokio::test]
async fn an_unknown_url_scheme_is_an_invalid_database_url() {
    let refused = Store::connect("mysql://localhost/trunkline").await;

    assert!(
        matches!(
            refused,
            Err(StoreError::Invalid {
                field: "database_url",
                ..
            })
        ),
        "{refused:?}",
        refused = refused.err()
    );
}

#[tokio::test]
async fn an_in_memory_sqlite_database_keeps_its_rows_across_calls() {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    store.migrate().await.unwrap();

    let tenant = store
        .create_tenant(&new_tenant("Acme", None))
        .await
        .unwrap();

    assert_eq!(store.backend(), Backend::Sqlite);
    assert_eq!(store.get_tenant(tenant.id).await.unwrap(), Some(tenant));
    store.ping().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_processes_migrating_one_new_sqlite_file_at_once_all_succeed() {
    // The service starting while an operator runs `trunkline token create` on the same file.
    for round in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("new.db").display());
        let mut stores = Vec::new();
        for _ in 0..4 {
            stores.push(Store::connect(&url).await.unwrap());
        }
        let migrations: Vec<_> = stores
            .iter()
            .cloned()
            .map(|store| tokio::spawn(async move { store.migrate().await }))
            .collect();
        for (i, migration) in migrations.into_iter().enumerate() {
            let result = migration.await.unwrap();
            assert!(result.is_ok(), "round {round}, store {i}: {result:?}");
        }
        assert_eq!(version(&stores[0]).await, version(&stores[3]).await);
    }
}

#[tokio::test]
async fn an_unreachable_postgres_server_is_unavailable() {
    let refused = Store::connect("postgres://trunkline@127.0.0.1:1/trunkline").await;

    assert!(
        matches!(refused, Err(StoreError::Unavailable(_))),
        "{:?}",
        refused.err()
    );
}

#[tokio::test]
async fn migrating_twice_changes_nothing_and_the_version_starts_at_zero() {
    for (label, store) in support::db::backends().await {
        store.migrate().await.unwrap();

        assert_eq!(version(&store).await, 0, "{label}");
        assert_eq!(store.backend().to_string(), label);
        store.ping().await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Tenants

#[tokio::test]
async fn tenants_round_trip_and_each_write_raises_the_version_by_one() {
    for (label, store) in support::db::backends().await {
        let changes = store.subscribe();
        let before = version(&store).await;

        let created = store
            .create_tenant(&new_tenant("Acme", Some("acme")))
            .await
            .unwrap();
        let after_create = version(&store).await;
        let mut changed = new_tenant("Acme Corp", Some("acme-corp"));
        changed.features.clear();
        changed.failover_mode = None;
        let updated = store.update_tenant(created.id, &changed).await.unwrap();
        let after_update = version(&store).await;

        assert_eq!(created.id.get_version_num(), 7, "{label}: ids are UUIDv7");
        assert_eq!(
            store.get_tenant(created.id).await.unwrap(),
            Some(updated.clone()),
            "{label}"
        );
        assert_eq!(created.name.as_str(), "Acme");
        assert_eq!(
            (
                updated.name.as_str(),
                updated.context.as_ref().map(|c| c.as_str())
            ),
            ("Acme Corp", Some("acme-corp"))
        );
        assert!(
            updated.features.is_empty() && updated.failover_mode.is_none(),
            "{label}"
        );
        assert_eq!(updated.created_at, created.created_at, "{label}");
        assert!(updated.updated_at >= created.updated_at, "{label}");
        assert_eq!(after_create, before + 1, "{label}");
        assert_eq!(after_update, before + 2, "{label}");
        assert_eq!(
            *changes.borrow(),
            after_update,
            "{label}: subscribers see the write"
        );
    }
}

#[tokio::test]
async fn a_missing_tenant_is_none_and_updating_it_is_not_found_without_a_version_change() {
    for (label, store) in support::db::backends().await {
        let before = version(&store).await;

        let got = store.get_tenant(Uuid::now_v7()).await.unwrap();
        let updated = store
            .update_tenant(Uuid::now_v7(), &new_tenant("Ghost", None))
            .await;

        assert_eq!(got, None, "{label}");
        assert!(
            matches!(updated, Err(StoreError::NotFound)),
            "{label}: {:?}",
            updated.err()
        );
        assert_eq!(version(&store).await, before, "{label}");
    }
}

#[tokio::test]
async fn a_taken_context_is_a_conflict_naming_context_and_changes_nothing() {
    for (label, store) in support::db::backends().await {
        store
            .create_tenant(&new_tenant("Acme", Some("shared")))
            .await
            .unwrap();
        let beta = store
            .create_tenant(&new_tenant("Beta", None))
            .await
            .unwrap();
        let before = version(&store).await;

        let created = store
            .create_tenant(&new_tenant("Gamma", Some("shared")))
            .await;
        let updated = store
            .update_tenant(beta.id, &new_tenant("Beta", Some("shared")))
            .await;

        for refused in [created.map(|_| ()), updated.map(|_| ())] {
            match refused {
                Err(StoreError::Conflict { field, detail }) => {
                    assert_eq!(field, "context", "{label}");
                    assert!(
                        !detail.contains("shared"),
                        "{label}: the detail never echoes the value"
                    );
                }
                other => panic!("{label}: {other:?}"),
            }
        }
        assert_eq!(version(&store).await, before, "{label}");
        assert_eq!(
            store.get_tenant(beta.id).await.unwrap().unwrap().context,
            None,
            "{label}"
        );
    }
}

#[tokio::test]
async fn listing_tenants_can_be_narrowed_to_one() {
    for (label, store) in support::db::backends().await {
        let acme = store
            .create_tenant(&new_tenant("Acme", None))
            .await
            .unwrap();
        let beta = store
            .create_tenant(&new_tenant("Beta", None))
            .await
            .unwrap();

        let all = store
            .list_tenants(&TenantFilter::default(), &page(10))
            .await
            .unwrap();
        let only = store
            .list_tenants(
                &TenantFilter {
                    only: Some(beta.id),
                },
                &page(10),
            )
            .await
            .unwrap();

        assert_eq!(
            all.items,
            vec![acme, beta.clone()],
            "{label}: in creation order"
        );
        assert_eq!(all.next_after, None, "{label}");
        assert_eq!(only.items, vec![beta], "{label}");
    }
}

// ---------------------------------------------------------------------------------------------
// Carriers

#[tokio::test]
async fn carriers_round_trip_with_every_field() {
    for (label, store) in support::db::backends().await {
        let tenant = store
            .create_tenant(&new_tenant("Acme", None))
            .await
            .unwrap();
        let new = new_carrier("acme-trunk", Some(tenant.id));

        let created = store.create_carrier(&new).await.unwrap();
        let got = store.get_carrier(created.id).await.unwrap();

        assert_eq!(got, Some(created.clone()), "{label}");
        assert_eq!(created.gateway_name, new.gateway_name, "{label}");
        assert_eq!(created.auth_password, new.auth_password, "{label}");
        assert_eq!(created.inbound_ips, new.inbound_ips, "{label}");
        assert_eq!(created.tech_headers, new.tech_headers, "{label}");
        assert_eq!(created.failover_codes, new.failover_codes, "{label}");
        assert_eq!(created.tenant_id, Some(tenant.id), "{label}");
        assert_eq!(created.archived_at, None, "{label}");
    }
}

#[tokio::test]
async fn a_carrier_with_no_optional_fields_round_trips() {
    for (label, store) in support::db::backends().await {
        let mut new = new_carrier("bare", None);
        new.auth_username = None;
        new.auth_password = None;
        new.realm = None;
        new.from_user = None;
        new.from_domain = None;
        new.ping_seconds = None;
        new.inbound_ips.clear();
        new.tech_headers.clear();
        new.attestation_header = None;
        new.failover_codes = None;
        new.leg_progress_timeout_seconds = None;
        new.strip_prefix = Digits::empty();

        let created = store.create_carrier(&new).await.unwrap();

        assert_eq!(
            store.get_carrier(created.id).await.unwrap(),
            Some(created),
            "{label}"
        );
    }
}

#[tokio::test]
async fn a_taken_gateway_name_is_a_conflict_naming_gateway_name_across_tenants() {
    for (label, store) in support::db::backends().await {
        let acme = store
            .create_tenant(&new_tenant("Acme", None))
            .await
            .unwrap();
        let beta = store
            .create_tenant(&new_tenant("Beta", None))
            .await
            .unwrap();
        store
            .create_carrier(&new_carrier("shared-gw", Some(acme.id)))
            .await
            .unwrap();
        let other = store
            .create_carrier(&new_carrier("other-gw", Some(beta.id)))
            .await
            .unwrap();
        let before = version(&store).await;

        let created = store
            .create_carrier(&new_carrier("shared-gw", Some(beta.id)))
            .await;
        let updated = store
            .update_carrier(other.id, &new_carrier("shared-gw", Some(beta.id)))
            .await;

        for refused in [created, updated] {
            match refused {
                Err(StoreError::Conflict { field, detail }) => {
                    assert_eq!(field, "gateway_name", "{label}");
                    assert!(!detail.contains("shared-gw"), "{label}");
                }
                other => panic!("{label}: {other:?}"),
            }
        }
        assert_eq!(version(&store).await, before, "{label}");
    }
}

#[tokio::test]
async fn a_carrier_of_a_missing_tenant_is_invalid_tenant_id() {
    for (label, store) in support::db::backends().await {
        let before = version(&store).await;

        let refused = store
            .create_carrier(&new_carrier("orphan", Some(Uuid::now_v7())))
            .await;

        assert!(
            matches!(
                refused,
                Err(StoreError::Invalid {
                    field: "tenant_id",
                    ..
                })
            ),
            "{label}: {:?}",
            refused.err()
        );
        assert_eq!(version(&store).await, before, "{label}");
    }
}

#[tokio::test]
async fn a_carrier_used_by_an_enabled_route_cannot_be_archived_or_disabled() {
    for (label, store) in support::db::backends().await {
        let carrier = store
            .create_carrier(&new_carrier("busy", None))
            .await
            .unwrap();
        let route = store
            .create_route(&new_route("UK", carrier.id, None, true))
            .await
            .unwrap();
        store
            .create_route(&new_route("UK spare", carrier.id, None, false))
            .await
            .unwrap();
        let before = version(&store).await;
        let mut disabled = new_carrier("busy", None);
        disabled.status = CarrierStatus::Disabled;

        let archived = store.archive_carrier(carrier.id).await;
        let updated = store.update_carrier(carrier.id, &disabled).await;

        for refused in [archived, updated] {
            match refused {
                Err(StoreError::InUse { routes }) => {
                    assert_eq!(
                        routes,
                        vec![(route.id, "UK".to_string())],
                        "{label}: only enabled routes"
                    );
                }
                other => panic!("{label}: {other:?}"),
            }
        }
        assert_eq!(version(&store).await, before, "{label}");
        assert_eq!(
            store.get_carrier(carrier.id).await.unwrap(),
            Some(carrier),
            "{label}"
        );
    }
}

#[tokio::test]
async fn archiving_stamps_archived_at_once_and_reactivating_clears_it() {
    for (label, store) in support::db::backends().await {
        let carrier = store
            .create_carrier(&new_carrier("retiring", None))
            .await
            .unwrap();
        let route = store
            .create_route(&new_route("UK", carrier.id, None, true))
            .await
            .unwrap();
        store.delete_route(route.id).await.unwrap();
        let before = version(&store).await;

        let archived = store.archive_carrier(carrier.id).await.unwrap();
        let after_archive = version(&store).await;
        let again = store.archive_carrier(carrier.id).await.unwrap();
        let after_again = version(&store).await;
        let reactivated = store
            .update_carrier(carrier.id, &new_carrier("retiring", None))
            .await
            .unwrap();

        assert_eq!(archived.status, CarrierStatus::Archived, "{label}");
        assert!(archived.archived_at.is_some(), "{label}");
        assert_eq!(again, archived, "{label}: archiving again changes nothing");
        assert_eq!(after_archive, before + 1, "{label}");
        assert_eq!(
            after_again, after_archive,
            "{label}: a no-op is not a write"
        );
        assert_eq!(reactivated.status, CarrierStatus::Active, "{label}");
        assert_eq!(reactivated.archived_at, None, "{label}");
    }
}

#[tokio::test]
async fn missing_carriers_are_not_found() {
    for (label, store) in support::db::backends().await {
        let id = Uuid::now_v7();

        assert_eq!(store.get_carrier(id).await.unwrap(), None, "{label}");
        assert!(
            matches!(store.archive_carrier(id).await, Err(StoreError::NotFound)),
            "{label}"
        );
        assert!(
            matches!(
                store.update_carrier(id, &new_carrier("ghost", None)).await,
                Err(StoreError::NotFound)
            ),
            "{label}"
        );
    }
}

#[tokio::test]
async fn archived_carriers_are_listed_only_when_asked_for() {
    for (label, store) in support::db::backends().await {
        let active = store
            .create_carrier(&new_carrier("active", None))
            .await
            .unwrap();
        let mut disabled = new_carrier("disabled", None);
        disabled.status = CarrierStatus::Disabled;
        let disabled = store.create_carrier(&disabled).await.unwrap();
        let archived = store
            .create_carrier(&new_carrier("archived", None))
            .await
            .unwrap();
        let archived = store.archive_carrier(archived.id).await.unwrap();
        let list = |status| CarrierFilter {
            scope: TenantScope::All,
            status,
        };

        let default = store.list_carriers(&list(None), &page(10)).await.unwrap();
        let only_archived = store
            .list_carriers(&list(Some(CarrierStatus::Archived)), &page(10))
            .await
            .unwrap();
        let only_disabled = store
            .list_carriers(&list(Some(CarrierStatus::Disabled)), &page(10))
            .await
            .unwrap();

        assert_eq!(default.items, vec![active, disabled.clone()], "{label}");
        assert_eq!(only_archived.items, vec![archived], "{label}");
        assert_eq!(only_disabled.items, vec![disabled], "{label}");
    }
}

// ---------------------------------------------------------------------------------------------
// Routes

#[tokio::test]
async fn routes_round_trip_update_and_delete() {
    for (label, store) in support::db::backends().await {
        let tenant = store
            .create_tenant(&new_tenant("Acme", None))
            .await
            .unwrap();
        let first = store
            .create_carrier(&new_carrier("first", None))
            .await
            .unwrap();
        let second = store
            .create_carrier(&new_carrier("second", Some(tenant.id)))
            .await
            .unwrap();
        let before = version(&store).await;

        let created = store
            .create_route(&new_route("UK", first.id, Some(tenant.id), true))
            .await
            .unwrap();
        let mut changed = new_route("UK mobiles", second.id, Some(tenant.id), false);
        changed.matcher = RouteMatch::Regex(RouteRegex::parse("^447[0-9]{9}$").unwrap());
        changed.priority = -5;
        let updated = store.update_route(created.id, &changed).await.unwrap();
        let got = store.get_route(created.id).await.unwrap();
        store.delete_route(created.id).await.unwrap();

        assert_eq!(
            created.matcher,
            RouteMatch::Prefix(RoutePrefix::parse("+44").unwrap()),
            "{label}"
        );
        assert_eq!(got, Some(updated.clone()), "{label}");
        assert_eq!(updated.matcher, changed.matcher, "{label}");
        assert_eq!(
            (updated.carrier_id, updated.priority, updated.enabled),
            (second.id, -5, false),
            "{label}"
        );
        assert_eq!(store.get_route(created.id).await.unwrap(), None, "{label}");
        assert_eq!(version(&store).await, before + 3, "{label}");
    }
}

#[tokio::test]
async fn route_writes_with_bad_references_change_nothing() {
    for (label, store) in support::db::backends().await {
        let carrier = store
            .create_carrier(&new_carrier("gw", None))
            .await
            .unwrap();
        let mut disabled = new_carrier("off", None);
        disabled.status = CarrierStatus::Disabled;
        let disabled = store.create_carrier(&disabled).await.unwrap();
        let route = store
            .create_route(&new_route("UK", carrier.id, None, true))
            .await
            .unwrap();
        let before = version(&store).await;

        let no_carrier = store
            .create_route(&new_route("X", Uuid::now_v7(), None, true))
            .await;
        let no_tenant = store
            .create_route(&new_route("X", carrier.id, Some(Uuid::now_v7()), true))
            .await;
        let enabled_on_disabled = store
            .update_route(route.id, &new_route("UK", disabled.id, None, true))
            .await;
        let missing = store
            .update_route(Uuid::now_v7(), &new_route("X", carrier.id, None, true))
            .await;
        let deleted = store.delete_route(Uuid::now_v7()).await;

        assert!(
            matches!(
                no_carrier,
                Err(StoreError::Invalid {
                    field: "carrier_id",
                    ..
                })
            ),
            "{label}: {no_carrier:?}"
        );
        assert!(
            matches!(
                no_tenant,
                Err(StoreError::Invalid {
                    field: "tenant_id",
                    ..
                })
            ),
            "{label}: {no_tenant:?}"
        );
        assert!(
            matches!(
                enabled_on_disabled,
                Err(StoreError::Invalid {
                    field: "carrier_id",
                    ..
                })
            ),
            "{label}: {enabled_on_disabled:?}"
        );
        assert!(
            matches!(missing, Err(StoreError::NotFound)),
            "{label}: {missing:?}"
        );
        assert!(
            matches!(deleted, Err(StoreError::NotFound)),
            "{label}: {deleted:?}"
        );
        assert_eq!(
            store.get_route(route.id).await.unwrap(),
            Some(route),
            "{label}"
        );
        assert_eq!(version(&store).await, before, "{label}");
    }
}

#[tokio::test]
async fn routes_are_listed_by_scope_carrier_and_match_type() {
    for (label, store) in support::db::backends().await {
        let acme = store
            .create_tenant(&new_tenant("Acme", None))
            .await
            .unwrap();
        let beta = store
            .create_tenant(&new_tenant("Beta", None))
            .await
            .unwrap();
        let shared = store
            .create_carrier(&new_carrier("shared", None))
            .await
            .unwrap();
        let own = store
            .create_carrier(&new_carrier("own", Some(acme.id)))
            .await
            .unwrap();
        let platform = store
            .create_route(&new_route("Default", shared.id, None, true))
            .await
            .unwrap();
        let acme_route = store
            .create_route(&new_route("Acme UK", own.id, Some(acme.id), true))
            .await
            .unwrap();
        let mut regex = new_route("Beta regex", shared.id, Some(beta.id), true);
        regex.matcher = RouteMatch::Regex(RouteRegex::parse("^1").unwrap());
        let beta_route = store.create_route(&regex).await.unwrap();
        let list = |scope, carrier_id, match_type| RouteFilter {
            scope,
            carrier_id,
            match_type,
        };

        let all = store
            .list_routes(&list(TenantScope::All, None, None), &page(10))
            .await
            .unwrap();
        let acme_only = store
            .list_routes(&list(TenantScope::Tenant(acme.id), None, None), &page(10))
            .await
            .unwrap();
        let acme_and_platform = store
            .list_routes(
                &list(TenantScope::TenantAndPlatform(acme.id), None, None),
                &page(10),
            )
            .await
            .unwrap();
        let on_shared = store
            .list_routes(&list(TenantScope::All, Some(shared.id), None), &page(10))
            .await
            .unwrap();
        let regexes = store
            .list_routes(
                &list(TenantScope::All, None, Some(MatchType::Regex)),
                &page(10),
            )
            .await
            .unwrap();

        assert_eq!(
            all.items,
            vec![platform.clone(), acme_route.clone(), beta_route.clone()],
            "{label}"
        );
        assert_eq!(acme_only.items, vec![acme_route.clone()], "{label}");
        assert_eq!(
            acme_and_platform.items,
            vec![platform.clone(), acme_route],
            "{label}"
        );
        assert_eq!(
            on_shared.items,
            vec![platform, beta_route.clone()],
            "{label}"
        );
        assert_eq!(regexes.items, vec![beta_route], "{label}");
    }
}

// ---------------------------------------------------------------------------------------------
// Phone numbers

#[tokio::test]
async fn phone_numbers_round_trip_update_and_delete() {
    for (label, store) in support::db::backends().await {
        let tenant = store
            .create_tenant(&new_tenant("Acme", None))
            .await
            .unwrap();
        let carrier = store
            .create_carrier(&new_carrier("did-gw", None))
            .await
            .unwrap();
        let before = version(&store).await;

        let created = store
            .create_phone_number(&new_number("+442071234567", tenant.id, None))
            .await
            .unwrap();
        let mut changed = new_number("+442071234568", tenant.id, Some(carrier.id));
        changed.capabilities = vec![Capability::Fax];
        let updated = store
            .update_phone_number(created.id, &changed)
            .await
            .unwrap();
        let got = store.get_phone_number(created.id).await.unwrap();
        let listed = store
            .list_phone_numbers(
                &PhoneNumberFilter {
                    scope: TenantScope::Tenant(tenant.id),
                    carrier_id: Some(carrier.id),
                },
                &page(10),
            )
            .await
            .unwrap();
        store.delete_phone_number(created.id).await.unwrap();

        assert_eq!(got, Some(updated.clone()), "{label}");
        assert_eq!(
            (updated.number.as_str(), updated.carrier_id),
            ("+442071234568", Some(carrier.id)),
            "{label}"
        );
        assert_eq!(updated.capabilities, vec![Capability::Fax], "{label}");
        assert_eq!(listed.items, vec![updated], "{label}");
        assert_eq!(
            store.get_phone_number(created.id).await.unwrap(),
            None,
            "{label}"
        );
        assert!(
            matches!(
                store.delete_phone_number(created.id).await,
                Err(StoreError::NotFound)
            ),
            "{label}"
        );
        assert_eq!(version(&store).await, before + 3, "{label}");
    }
}

#[tokio::test]
async fn a_number_already_in_the_inventory_is_a_conflict_naming_number() {
    for (label, store) in support::db::backends().await {
        let acme = store
            .create_tenant(&new_tenant("Acme", None))
            .await
            .unwrap();
        let beta = store
            .create_tenant(&new_tenant("Beta", None))
            .await
            .unwrap();
        store
            .create_phone_number(&new_number("+15551230000", acme.id, None))
            .await
            .unwrap();
        let before = version(&store).await;

        let refused = store
            .create_phone_number(&new_number("+15551230000", beta.id, None))
            .await;
        let no_carrier = store
            .create_phone_number(&new_number("+15551230001", beta.id, Some(Uuid::now_v7())))
            .await;

        match refused {
            Err(StoreError::Conflict { field, detail }) => {
                assert_eq!(field, "number", "{label}");
                assert!(!detail.contains("5551230000"), "{label}");
            }
            other => panic!("{label}: {other:?}"),
        }
        assert!(
            matches!(
                no_carrier,
                Err(StoreError::Invalid {
                    field: "carrier_id",
                    ..
                })
            ),
            "{label}: {no_carrier:?}"
        );
        assert_eq!(version(&store).await, before, "{label}");
    }
}

/// There is no hard delete of a carrier in the API; the schema still guarantees what a manual
/// delete would do: refused while routes reference the carrier (RESTRICT), and numbers keep
/// existing without a carrier (SET NULL).
#[tokio::test]
async fn deleting_a_carrier_row_is_restricted_by_routes_and_unassigns_its_numbers() {
    for fresh in support::db::fresh().await {
        let (label, store) = (&fresh.label, &fresh.store);
        let tenant = store
            .create_tenant(&new_tenant("Acme", None))
            .await
            .unwrap();
        let carrier = store
            .create_carrier(&new_carrier("doomed", None))
            .await
            .unwrap();
        let route = store
            .create_route(&new_route("UK", carrier.id, None, false))
            .await
            .unwrap();
        let number = store
            .create_phone_number(&new_number("+442070000000", tenant.id, Some(carrier.id)))
            .await
            .unwrap();
        let delete = format!("DELETE FROM carriers WHERE id = '{}'", carrier.id);

        let restricted = raw_sql(&fresh, &delete).await;
        store.delete_route(route.id).await.unwrap();
        let deleted = raw_sql(&fresh, &delete).await;

        assert!(restricted.is_err(), "{label}: routes restrict the delete");
        assert_eq!(deleted.unwrap(), 1, "{label}");
        let kept = store
            .get_phone_number(number.id)
            .await
            .unwrap()
            .expect("the number stays");
        assert_eq!(kept.carrier_id, None, "{label}");
    }
}

/// Runs one statement on its own connection (with foreign keys on, as the store's are).
async fn raw_sql(fresh: &support::db::Fresh, sql: &str) -> Result<u64, sqlx::Error> {
    let sql = AssertSqlSafe(sql.to_string());
    if fresh.label == "sqlite" {
        let options: sqlx::sqlite::SqliteConnectOptions = fresh.url.parse()?;
        let mut conn = sqlx::SqliteConnection::connect_with(&options.foreign_keys(true)).await?;
        Ok(sqlx::query(sql).execute(&mut conn).await?.rows_affected())
    } else {
        let mut conn = sqlx::PgConnection::connect(&fresh.url).await?;
        Ok(sqlx::query(sql).execute(&mut conn).await?.rows_affected())
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens

#[tokio::test]
async fn tokens_round_trip_and_revoke_without_touching_the_version() {
    for (label, store) in support::db::backends().await {
        let tenant = store
            .create_tenant(&new_tenant("Acme", None))
            .await
            .unwrap();
        let before = version(&store).await;
        let new = NewApiToken {
            token_hash: "ab".repeat(32),
            tenant_id: Some(tenant.id),
            role: Role::Admin,
            scopes: vec![Scope::CarriersRead, Scope::OutboundRoutesWrite],
        };

        let created = store.create_token(&new).await.unwrap();
        let found = store.find_token_by_hash(&new.token_hash).await.unwrap();
        store.revoke_token(created.id).await.unwrap();
        let revoked = store
            .find_token_by_hash(&new.token_hash)
            .await
            .unwrap()
            .unwrap();

        assert_eq!(found, Some(created.clone()), "{label}");
        assert_eq!(
            (created.role, created.scopes.clone(), created.revoked_at),
            (Role::Admin, new.scopes, None)
        );
        assert!(revoked.revoked_at.is_some(), "{label}");
        assert_eq!(
            store.find_token_by_hash(&"cd".repeat(32)).await.unwrap(),
            None,
            "{label}"
        );
        assert_eq!(
            version(&store).await,
            before,
            "{label}: tokens are not configuration"
        );
    }
}

#[tokio::test]
async fn token_writes_refuse_duplicates_missing_tenants_and_missing_tokens() {
    for (label, store) in support::db::backends().await {
        let platform = NewApiToken {
            token_hash: "ef".repeat(32),
            tenant_id: None,
            role: Role::PlatformAdmin,
            scopes: Scope::ALL.to_vec(),
        };
        store.create_token(&platform).await.unwrap();

        let duplicate = store.create_token(&platform).await;
        let orphan = store
            .create_token(&NewApiToken {
                token_hash: "01".repeat(32),
                tenant_id: Some(Uuid::now_v7()),
                ..platform
            })
            .await;
        let revoked = store.revoke_token(Uuid::now_v7()).await;

        assert!(
            matches!(
                duplicate,
                Err(StoreError::Conflict {
                    field: "token_hash",
                    ..
                })
            ),
            "{label}: {duplicate:?}"
        );
        assert!(
            matches!(
                orphan,
                Err(StoreError::Invalid {
                    field: "tenant_id",
                    ..
                })
            ),
            "{label}: {orphan:?}"
        );
        assert!(
            matches!(revoked, Err(StoreError::NotFound)),
            "{label}: {revoked:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The dataset, pagination and concurrency

#[tokio::test]
async fn the_dataset_holds_every_row_in_id_order_with_the_current_version() {
    for (label, store) in support::db::backends().await {
        let tenant = store
            .create_tenant(&new_tenant("Acme", Some("acme")))
            .await
            .unwrap();
        let active = store
            .create_carrier(&new_carrier("active", Some(tenant.id)))
            .await
            .unwrap();
        let archived = store
            .create_carrier(&new_carrier("archived", None))
            .await
            .unwrap();
        let archived = store.archive_carrier(archived.id).await.unwrap();
        let route = store
            .create_route(&new_route("UK", active.id, Some(tenant.id), true))
            .await
            .unwrap();

        let dataset = store.load_dataset().await.unwrap();

        assert_eq!(dataset.version, version(&store).await, "{label}");
        assert_eq!(dataset.version, 5, "{label}");
        assert_eq!(dataset.tenants, vec![tenant], "{label}");
        assert_eq!(
            dataset.carriers,
            vec![active, archived],
            "{label}: archived carriers included"
        );
        assert_eq!(dataset.routes, vec![route], "{label}");
    }
}

#[tokio::test]
async fn pages_return_every_existing_row_exactly_once_while_rows_are_inserted() {
    for (label, store) in support::db::backends().await {
        let mut existing = Vec::new();
        for i in 0..23 {
            existing.push(
                store
                    .create_tenant(&new_tenant(&format!("Tenant {i}"), None))
                    .await
                    .unwrap()
                    .id,
            );
        }
        let writer = store.clone();
        let inserting = tokio::spawn(async move {
            for i in 0..20 {
                writer
                    .create_tenant(&new_tenant(&format!("Late {i}"), None))
                    .await
                    .unwrap();
                tokio::task::yield_now().await;
            }
        });

        let seen: Vec<Uuid> = all_pages(4, |p| {
            let store = store.clone();
            async move { store.list_tenants(&TenantFilter::default(), &p).await }
        })
        .await
        .into_iter()
        .map(|t| t.id)
        .collect();
        inserting.await.unwrap();

        let unique: BTreeSet<Uuid> = seen.iter().copied().collect();
        assert_eq!(unique.len(), seen.len(), "{label}: no row twice");
        assert!(
            existing.iter().all(|id| unique.contains(id)),
            "{label}: every existing row"
        );
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(seen, sorted, "{label}: id order");
        let everything = all_pages(7, |p| {
            let store = store.clone();
            async move { store.list_tenants(&TenantFilter::default(), &p).await }
        })
        .await;
        assert_eq!(everything.len(), 43, "{label}");
    }
}

#[tokio::test]
async fn a_page_says_whether_more_follow() {
    for (label, store) in support::db::backends().await {
        let a = store.create_tenant(&new_tenant("A", None)).await.unwrap();
        let b = store.create_tenant(&new_tenant("B", None)).await.unwrap();

        let first = store
            .list_tenants(&TenantFilter::default(), &page(1))
            .await
            .unwrap();
        let exact = store
            .list_tenants(&TenantFilter::default(), &page(2))
            .await
            .unwrap();
        let rest = store
            .list_tenants(
                &TenantFilter::default(),
                &PageRequest {
                    limit: 1,
                    after: first.next_after,
                },
            )
            .await
            .unwrap();

        assert_eq!(
            (first.items, first.next_after),
            (vec![a.clone()], Some(a.id)),
            "{label}"
        );
        assert_eq!((exact.items.len(), exact.next_after), (2, None), "{label}");
        assert_eq!((rest.items, rest.next_after), (vec![b], None), "{label}");
    }
}

#[tokio::test]
async fn concurrent_writes_all_succeed_and_each_raises_the_version_once() {
    for (label, store) in support::db::backends().await {
        let before = version(&store).await;

        let writers: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .create_tenant(&new_tenant(&format!("T{i}"), None))
                        .await
                })
            })
            .collect();
        for writer in writers {
            writer
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("{label}: {e:?}"));
        }

        assert_eq!(version(&store).await, before + 8, "{label}");
        assert_eq!(*store.subscribe().borrow(), before + 8, "{label}");
    }
}

// ---------------------------------------------------------------------------------------------
// The change feed

#[tokio::test]
async fn a_subscriber_is_woken_with_the_new_version_after_a_write() {
    for (label, store) in support::db::backends().await {
        let mut changes = store.subscribe();
        changes.borrow_and_update();

        let tenant = store
            .create_tenant(&new_tenant("Acme", None))
            .await
            .unwrap();
        store
            .update_tenant(tenant.id, &new_tenant("Acme 2", None))
            .await
            .unwrap();

        assert!(changes.has_changed().unwrap(), "{label}");
        // Copy the value out first: a `watch` borrow held across the `.await` below would
        // block the feed's listener task, which raises the same value, on this one thread.
        let seen = *changes.borrow_and_update();
        assert_eq!(seen, version(&store).await, "{label}");
    }
}

#[tokio::test]
async fn a_second_postgres_instance_sees_the_first_ones_writes_through_notify() {
    let Some(first) = support::db::postgres_fresh().await else {
        return;
    };
    let second = Store::connect(&first.url).await.unwrap();
    let mut changes = second.subscribe();
    // The first version can arrive through the read the listener makes once it listens; once
    // seen, the listener is up, so the second one can only come through NOTIFY.
    first
        .store
        .create_tenant(&new_tenant("Acme", None))
        .await
        .unwrap();
    assert_eq!(wait_for_version(&mut changes, 1).await, Ok(1));

    first
        .store
        .create_tenant(&new_tenant("Beta", None))
        .await
        .unwrap();

    assert_eq!(wait_for_version(&mut changes, 2).await, Ok(2));
}

/// The receiver's value once it reaches `at_least`; `Err` after a generous time (a failure
/// guard, not a timing assertion).
async fn wait_for_version(
    changes: &mut tokio::sync::watch::Receiver<u64>,
    at_least: u64,
) -> Result<u64, String> {
    match tokio::time::timeout(
        Duration::from_secs(30),
        changes.wait_for(|v| *v >= at_least),
    )
    .await
    {
        Ok(Ok(version)) => Ok(*version),
        Ok(Err(e)) => Err(format!("feed closed: {e}")),
        Err(_) => Err(format!("version {at_least} never arrived")),
    }
}

#[tokio::test]
async fn postgres_alone_is_available_to_tests_that_need_it() {
    let Some(store) = support::db::postgres().await else {
        return;
    };

    assert_eq!(store.backend(), Backend::Postgres);
    assert_eq!(version(&store).await, 0);
}

/// Switches travel on the change feed like carriers and routes: every write raises the version
/// (other instances learn of it through NOTIFY), a failed one does not.
#[tokio::test]
async fn each_switch_write_raises_the_version_once() {
    for (label, store) in support::db::backends().await {
        let new = |port: u16| trunkline::model::NewSwitch {
            name: trunkline::model::SwitchName::parse("fs1").unwrap(),
            esl_host: Host::parse("127.0.0.1").unwrap(),
            esl_port: port,
            esl_password: Password::parse("s3cret").unwrap(),
            enabled: true,
            profiles: vec![ProfileName::external()],
        };
        let before = version(&store).await;

        let switch = store.create_switch(&new(8021), false).await.unwrap();
        assert_eq!(version(&store).await, before + 1, "{label}: create");
        store
            .update_switch(switch.id, &new(8022), false)
            .await
            .unwrap();
        assert_eq!(version(&store).await, before + 2, "{label}: update");
        assert!(
            store.create_switch(&new(8023), false).await.is_err(),
            "{label}: name taken"
        );
        assert_eq!(
            version(&store).await,
            before + 2,
            "{label}: a refused write"
        );
        store.delete_switch(switch.id).await.unwrap();
        assert_eq!(version(&store).await, before + 3, "{label}: delete");
    }
}

/// What the lease holder verified and its last error are stored where every instance reads
/// them: a converged pass records the version and clears the error.
#[tokio::test]
async fn the_holders_sync_state_is_shared_through_the_store() {
    for (label, store) in support::db::backends().await {
        let switch = store
            .create_switch(
                &trunkline::model::NewSwitch {
                    name: trunkline::model::SwitchName::parse("fs1").unwrap(),
                    esl_host: Host::parse("127.0.0.1").unwrap(),
                    esl_port: 8021,
                    esl_password: Password::parse("s3cret").unwrap(),
                    enabled: true,
                    profiles: vec![ProfileName::external()],
                },
                false,
            )
            .await
            .unwrap();
        assert!(
            store
                .take_switch_lease(switch.id, "instance-a", Duration::from_secs(4))
                .await
                .unwrap()
        );
        store
            .record_switch_error(switch.id, Some("connection refused"))
            .await
            .unwrap();
        let state = store.switch_sync_state(switch.id).await.unwrap();
        assert_eq!(
            state.last_error.as_deref(),
            Some("connection refused"),
            "{label}"
        );
        assert_eq!(state.lease_holder.as_deref(), Some("instance-a"), "{label}");
        assert_eq!(state.synced_version, None, "{label}");

        store
            .record_applied(switch.id, &[], &[], None, Some(("core-1", 7)))
            .await
            .unwrap();

        let state = store.switch_sync_state(switch.id).await.unwrap();
        assert_eq!(state.synced_version, Some(7), "{label}");
        assert_eq!(
            state.last_error, None,
            "{label}: a converged pass clears the error"
        );
        assert_eq!(state.core_uuid.as_deref(), Some("core-1"), "{label}");
    }
}
