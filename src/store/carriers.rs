//! Carriers (SIP trunks) and their lifecycle. `gateway_name` is unique across every tenant
//! (FreeSWITCH gateway names are global). There is no hard delete: archiving keeps the row
//! (routes reference carriers with ON DELETE RESTRICT). A carrier stops being active — disabled
//! or archived — only when no enabled route uses it, else [`StoreError::InUse`] names those
//! routes.
//!
//! On PostgreSQL a status change locks the carrier row (`FOR UPDATE`) and a route write locks
//! the carrier it points at (`FOR SHARE`, in `routes.rs`), so a route enabled concurrently with
//! the carrier's archiving cannot slip past the check. SQLite needs nothing: `BEGIN IMMEDIATE`
//! already runs writers one at a time.

use uuid::Uuid;

use super::exec::{Args, Tx, args};
use super::list::Select;
use super::rows::{CarrierRow, cost_columns, json, now, parse_id, ts};
use super::{CarrierFilter, NewestFirst, Page, PageRequest, Store, StoreError, tenants};
use crate::model::{Carrier, CarrierStatus, NewCarrier};

macro_rules! columns {
    () => {
        "id, tenant_id, name, gateway_name, carrier_type, direction, status, remote_host, \
         remote_port, transport, profile, register, auth_username, auth_password, realm, \
         from_user, from_domain, caller_id_in_from, ping_seconds, inbound_ips, strip_prefix, \
         add_prefix, add_suffix, tech_headers, attestation_header, failover_codes, \
         leg_progress_timeout_seconds, cost_micros, cost_currency, created_at, updated_at, \
         archived_at, detail, caller_id"
    };
}

macro_rules! select {
    () => {
        concat!("SELECT ", columns!(), " FROM carriers")
    };
}

/// Every carrier, archived ones included, for the dataset.
pub(super) const ALL: &str = concat!(select!(), " ORDER BY id");
const GET: &str = concat!(select!(), " WHERE id = $1");
const INSERT: &str = concat!(
    "INSERT INTO carriers (",
    columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
     $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $30, $31, $32, $33) RETURNING ",
    columns!()
);
const UPDATE: &str = concat!(
    "UPDATE carriers SET tenant_id = $2, name = $3, gateway_name = $4, carrier_type = $5, \
     direction = $6, status = $7, remote_host = $8, remote_port = $9, transport = $10, \
     profile = $11, register = $12, auth_username = $13, auth_password = $14, realm = $15, \
     from_user = $16, from_domain = $17, caller_id_in_from = $18, ping_seconds = $19, \
     inbound_ips = $20, strip_prefix = $21, add_prefix = $22, add_suffix = $23, \
     tech_headers = $24, attestation_header = $25, failover_codes = $26, \
     leg_progress_timeout_seconds = $27, cost_micros = $28, cost_currency = $29, \
     updated_at = $30, archived_at = $31, detail = $32, caller_id = $33 \
     WHERE id = $1 RETURNING ",
    columns!()
);
const ARCHIVE: &str = concat!(
    "UPDATE carriers SET status = $2, updated_at = $3, archived_at = $3 WHERE id = $1 RETURNING ",
    columns!()
);
const ENABLED_ROUTES: &str =
    "SELECT id, name FROM outbound_routes WHERE carrier_id = $1 AND enabled ORDER BY id";
/// PostgreSQL only: see the module documentation.
const LOCK_FOR_UPDATE: &str = "SELECT id FROM carriers WHERE id = $1 FOR UPDATE";
const LOCK_FOR_SHARE: &str = "SELECT id FROM carriers WHERE id = $1 FOR SHARE";

/// `$1` id, `$2`…`$29` the writable fields in column order, `$30` the time of the write,
/// `$31` `archived_at`, `$32` `detail`, `$33` `caller_id`.
fn write_args(id: Uuid, c: &NewCarrier, at: &str, archived_at: Option<String>) -> Args {
    let (cost_micros, cost_currency) = cost_columns(c.cost.as_ref());
    args![
        id,
        c.tenant_id,
        c.name.to_string(),
        c.gateway_name.to_string(),
        c.carrier_type.as_str().to_string(),
        c.direction.as_str().to_string(),
        c.status.as_str().to_string(),
        c.remote_host.to_string(),
        c.remote_port,
        c.transport.as_str().to_string(),
        c.profile.to_string(),
        c.register,
        c.auth_username.as_ref().map(ToString::to_string),
        c.auth_password.as_ref().map(|p| p.expose().to_string()),
        c.realm.as_ref().map(ToString::to_string),
        c.from_user.as_ref().map(ToString::to_string),
        c.from_domain.as_ref().map(ToString::to_string),
        c.caller_id_in_from,
        c.ping_seconds,
        json(&c.inbound_ips),
        c.strip_prefix.to_string(),
        c.add_prefix.to_string(),
        c.add_suffix.to_string(),
        json(&c.tech_headers),
        c.attestation_header.as_ref().map(ToString::to_string),
        c.failover_codes.as_ref().map(json),
        c.leg_progress_timeout_seconds,
        cost_micros,
        cost_currency,
        at.to_string(),
        archived_at,
        c.detail.to_string(),
        json(&c.caller_id),
    ]
}

/// Locks a carrier row until the transaction ends (PostgreSQL; a no-op on SQLite).
pub(super) async fn lock(tx: &mut Tx, id: Uuid, exclusive: bool) -> Result<(), StoreError> {
    if matches!(tx, Tx::Postgres(_)) {
        let sql = if exclusive {
            LOCK_FOR_UPDATE
        } else {
            LOCK_FOR_SHARE
        };
        tx.exec()
            .fetch_optional::<(String,)>(sql, args![id])
            .await?;
    }
    Ok(())
}

/// The carrier as the transaction sees it.
pub(super) async fn get_in(tx: &mut Tx, id: Uuid) -> Result<Option<Carrier>, StoreError> {
    let row: Option<CarrierRow> = tx.exec().fetch_optional(GET, args![id]).await?;
    row.map(CarrierRow::into_model).transpose()
}

/// Refuses to take a carrier out of service while enabled routes use it.
async fn check_unused(tx: &mut Tx, id: Uuid) -> Result<(), StoreError> {
    let rows: Vec<(String, String)> = tx.exec().fetch_all(ENABLED_ROUTES, args![id]).await?;
    if rows.is_empty() {
        return Ok(());
    }
    let routes = rows
        .into_iter()
        .map(|(route, name)| Ok((parse_id("outbound_routes.id", &route)?, name)))
        .collect::<Result<_, StoreError>>()?;
    Err(StoreError::InUse { routes })
}

impl Store {
    pub async fn create_carrier(&self, c: &NewCarrier) -> Result<Carrier, StoreError> {
        let mut tx = self.begin_config().await?;
        tenants::check_exists(&mut tx, c.tenant_id).await?;
        let at = ts(now());
        let archived_at = (c.status == CarrierStatus::Archived).then(|| at.clone());
        let args = write_args(Uuid::now_v7(), c, &at, archived_at);
        let row: CarrierRow = tx.exec().fetch_one(INSERT, args).await?;
        let carrier = row.into_model()?;
        self.commit_config(tx).await?;
        Ok(carrier)
    }

    pub async fn get_carrier(&self, id: Uuid) -> Result<Option<Carrier>, StoreError> {
        self.get_row::<CarrierRow>(GET, id)
            .await?
            .map(CarrierRow::into_model)
            .transpose()
    }

    /// Replaces the writable fields. Leaving `active` is refused while enabled routes use the
    /// carrier; `archived` stamps `archived_at` (kept if it already was archived), any other
    /// status clears it.
    pub async fn update_carrier(&self, id: Uuid, c: &NewCarrier) -> Result<Carrier, StoreError> {
        let mut tx = self.begin_config().await?;
        lock(&mut tx, id, true).await?;
        let existing = get_in(&mut tx, id).await?.ok_or(StoreError::NotFound)?;
        if c.status != CarrierStatus::Active {
            check_unused(&mut tx, id).await?;
        }
        tenants::check_exists(&mut tx, c.tenant_id).await?;
        let at = ts(now());
        let archived_at = match c.status {
            CarrierStatus::Archived => {
                Some(existing.archived_at.map(ts).unwrap_or_else(|| at.clone()))
            }
            CarrierStatus::Active | CarrierStatus::Disabled => None,
        };
        let row: CarrierRow = tx
            .exec()
            .fetch_one(UPDATE, write_args(id, c, &at, archived_at))
            .await?;
        let carrier = row.into_model()?;
        self.commit_config(tx).await?;
        Ok(carrier)
    }

    /// Archives the carrier (what DELETE does). Refused while enabled routes use it. Archiving
    /// an archived carrier returns it unchanged and, as nothing changes, does not raise the
    /// configuration version.
    pub async fn archive_carrier(&self, id: Uuid) -> Result<Carrier, StoreError> {
        let mut tx = self.begin_config().await?;
        lock(&mut tx, id, true).await?;
        let existing = get_in(&mut tx, id).await?.ok_or(StoreError::NotFound)?;
        if existing.status == CarrierStatus::Archived {
            return Ok(existing);
        }
        check_unused(&mut tx, id).await?;
        let args = args![id, CarrierStatus::Archived.as_str().to_string(), ts(now())];
        let row: CarrierRow = tx.exec().fetch_one(ARCHIVE, args).await?;
        let carrier = row.into_model()?;
        self.commit_config(tx).await?;
        Ok(carrier)
    }

    pub async fn list_carriers(
        &self,
        f: &CarrierFilter,
        p: &PageRequest,
    ) -> Result<Page<Carrier>, StoreError> {
        let mut conn = self.db.conn().await?;
        filtered(f)
            .page(&mut conn, p, |r: &CarrierRow| &r.id, CarrierRow::into_model)
            .await
    }

    /// [`Store::list_carriers`] newest first (the VoIPBIN API's order and page token).
    pub async fn list_carriers_newest_first(
        &self,
        f: &CarrierFilter,
        p: &NewestFirst,
    ) -> Result<Vec<Carrier>, StoreError> {
        let mut conn = self.db.conn().await?;
        filtered(f)
            .newest_first(&mut conn, p, CarrierRow::into_model)
            .await
    }
}

/// The carriers a filter selects: archived ones only when asked for.
fn filtered(f: &CarrierFilter) -> Select {
    let mut select = Select::from(select!());
    select.scope(f.scope);
    match f.status {
        Some(status) => select.and_if("status = {}", Some(status.as_str().to_string())),
        None => select.raw("status <> 'archived'"),
    };
    select
}
