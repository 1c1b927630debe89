//! Plain, valid entities for unit tests and benchmarks: a carrier, a tenant and routes with
//! fixed timestamps and ids from small integers, changed field by field by the test. Not API.

use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;

use super::*;

/// The one timestamp every fixture is created at.
pub fn created() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 14, 0, 0).unwrap()
}

/// An active, outbound, IP-authenticated platform SIP trunk to `sip.example.net`: the written
/// form's defaults, so that a new carrier field needs nothing here.
pub fn carrier(gateway: &str, id: u128) -> Carrier {
    let input = CarrierInput {
        name: gateway.into(),
        gateway_name: Some(gateway.into()),
        remote_host: "sip.example.net".into(),
        ..CarrierInput::defaults()
    };
    Carrier {
        id: Uuid::from_u128(id),
        created_at: created(),
        updated_at: created(),
        archived_at: None,
        fields: NewCarrier::parse(input, &Currency::usd()).expect("a valid fixture"),
    }
}

/// A tenant whose dialplan context is its name.
pub fn tenant(name: &str, id: u128) -> Tenant {
    Tenant {
        id: Uuid::from_u128(id),
        name: DisplayName::parse(name).unwrap(),
        context: Some(ContextName::parse(name).unwrap()),
        features: vec![Feature::SelfServiceCarriers],
        failover_mode: None,
        max_cost: None,
        caller_id_policy: CallerIdPolicy::default(),
        created_at: created(),
        updated_at: created(),
    }
}

fn route(id: u128, tenant: Option<u128>, input: RouteInput) -> Route {
    let input = RouteInput {
        tenant_id: tenant.map(Uuid::from_u128),
        name: format!("route {id}"),
        ..input
    };
    Route {
        id: Uuid::from_u128(id),
        created_at: created(),
        updated_at: created(),
        fields: NewRoute::parse(input, &Currency::usd()).expect("a valid fixture"),
    }
}

/// An enabled prefix route (`""` matches everything) to `carrier`.
pub fn prefix_route(
    id: u128,
    tenant: Option<u128>,
    prefix: &str,
    priority: i64,
    carrier: u128,
) -> Route {
    let input = RouteInput {
        prefix: Some(prefix.into()),
        carrier_id: Uuid::from_u128(carrier),
        priority,
        ..RouteInput::defaults()
    };
    route(id, tenant, input)
}

/// An enabled regex route to `carrier`.
pub fn regex_route(
    id: u128,
    tenant: Option<u128>,
    regex: &str,
    priority: i64,
    carrier: u128,
) -> Route {
    let input = RouteInput {
        match_type: MatchType::Regex,
        regex: Some(regex.into()),
        carrier_id: Uuid::from_u128(carrier),
        priority,
        ..RouteInput::defaults()
    };
    route(id, tenant, input)
}

/// A deterministic platform of `tenants` tenants, `carriers` platform carriers and `routes`
/// routes spread evenly over the tenants, nine prefix routes (2 to 8 digits) to every regex
/// route: the data the benchmarks and the load script run on.
pub fn platform(
    tenants: usize,
    carriers: usize,
    routes: usize,
) -> (Vec<Tenant>, Vec<Carrier>, Vec<Route>) {
    // A small LCG keeps this free of a rand dependency at the call sites and reproducible.
    let mut state: u64 = 0x5eed_1234_abcd_0001;
    let mut next = move |bound: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % bound
    };
    let tenant_list: Vec<Tenant> = (0..tenants)
        .map(|i| tenant(&format!("t{i}"), 0x1000_0000 + i as u128))
        .collect();
    let carrier_list: Vec<Carrier> = (0..carriers)
        .map(|i| carrier(&format!("carrier-{i}"), 0x2000_0000 + i as u128))
        .collect();
    let route_list = (0..routes)
        .map(|i| {
            let owner = Some(0x1000_0000 + (i % tenants.max(1)) as u128);
            let carrier = 0x2000_0000 + next(carriers.max(1) as u64) as u128;
            let priority = next(10) as i64;
            let digits: String = (0..2 + next(7))
                .map(|_| char::from(b'0' + next(10) as u8))
                .collect();
            let id = 0x3000_0000 + i as u128;
            if i % 10 == 9 {
                regex_route(id, owner, &format!("^{digits}[0-9]+$"), priority, carrier)
            } else {
                prefix_route(id, owner, &digits, priority, carrier)
            }
        })
        .collect();
    (tenant_list, carrier_list, route_list)
}
