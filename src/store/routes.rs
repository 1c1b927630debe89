//! Outbound routes. A route names an existing carrier (ON DELETE RESTRICT); an enabled route
//! needs an active carrier and no route may point at an archived one. The API checks the same
//! rules with friendlier messages first; they are enforced again here, under the carrier's row
//! lock, because only the writing transaction sees the carrier as it is at commit.

use uuid::Uuid;

use super::exec::{Args, Tx, args};
use super::list::Select;
use super::rows::{RouteRow, cost_columns, json, matcher_columns, now, ts};
use super::{NewestFirst, Page, PageRequest, RouteFilter, Store, StoreError, carriers, tenants};
use crate::model::{CarrierStatus, NewRoute, Route};

macro_rules! columns {
    () => {
        "id, tenant_id, name, match_type, prefix, regex, carrier_id, priority, strip_prefix, \
         add_prefix, enabled, cost_micros, cost_currency, weight, caller_prefix, caller_regex, \
         schedule, created_at, updated_at, detail"
    };
}

macro_rules! select {
    () => {
        concat!("SELECT ", columns!(), " FROM outbound_routes")
    };
}

/// Every route, for the dataset.
pub(super) const ALL: &str = concat!(select!(), " ORDER BY id");
const GET: &str = concat!(select!(), " WHERE id = $1");
const INSERT: &str = concat!(
    "INSERT INTO outbound_routes (",
    columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
     $18, $18, $19) RETURNING ",
    columns!()
);
const UPDATE: &str = concat!(
    "UPDATE outbound_routes SET tenant_id = $2, name = $3, match_type = $4, prefix = $5, \
     regex = $6, carrier_id = $7, priority = $8, strip_prefix = $9, add_prefix = $10, \
     enabled = $11, cost_micros = $12, cost_currency = $13, weight = $14, caller_prefix = $15, \
     caller_regex = $16, schedule = $17, updated_at = $18, detail = $19 WHERE id = $1 RETURNING ",
    columns!()
);
const DELETE: &str = "DELETE FROM outbound_routes WHERE id = $1";

/// `$1` id, `$2`…`$17` the writable fields in column order, `$18` the time of the write,
/// `$19` `detail`.
fn write_args(id: Uuid, r: &NewRoute) -> Args {
    let (prefix, regex) = matcher_columns(&r.matcher);
    let criteria = &r.criteria;
    let (cost_micros, cost_currency) = cost_columns(criteria.cost.as_ref());
    args![
        id,
        r.tenant_id,
        r.name.to_string(),
        r.matcher.match_type().as_str().to_string(),
        prefix,
        regex,
        r.carrier_id,
        r.priority,
        r.strip_prefix.to_string(),
        r.add_prefix.to_string(),
        r.enabled,
        cost_micros,
        cost_currency,
        criteria.weight.map(|w| u32::from(w.get())),
        criteria
            .caller_prefix
            .as_ref()
            .map(|p| p.as_str().to_string()),
        criteria.caller_regex.as_ref().map(ToString::to_string),
        criteria.schedule.as_ref().map(json),
        ts(now()),
        r.detail.to_string(),
    ]
}

/// The references of a route, checked inside the writing transaction.
async fn check_references(tx: &mut Tx, r: &NewRoute) -> Result<(), StoreError> {
    tenants::check_exists(tx, r.tenant_id).await?;
    carriers::lock(tx, r.carrier_id, false).await?;
    let refused = |detail: &str| StoreError::Invalid {
        field: "carrier_id",
        detail: detail.into(),
    };
    match carriers::get_in(tx, r.carrier_id).await? {
        None => Err(refused("no such carrier")),
        Some(c) if c.status == CarrierStatus::Archived => Err(refused("the carrier is archived")),
        Some(c) if r.enabled && c.status != CarrierStatus::Active => {
            Err(refused("an enabled route needs an active carrier"))
        }
        Some(_) => Ok(()),
    }
}

impl Store {
    pub async fn create_route(&self, r: &NewRoute) -> Result<Route, StoreError> {
        let mut tx = self.begin_config().await?;
        check_references(&mut tx, r).await?;
        let row: RouteRow = tx
            .exec()
            .fetch_one(INSERT, write_args(Uuid::now_v7(), r))
            .await?;
        let route = row.into_model()?;
        self.commit_config(tx).await?;
        Ok(route)
    }

    pub async fn get_route(&self, id: Uuid) -> Result<Option<Route>, StoreError> {
        self.get_row::<RouteRow>(GET, id)
            .await?
            .map(RouteRow::into_model)
            .transpose()
    }

    /// Replaces the writable fields; [`StoreError::NotFound`] if there is no such route.
    pub async fn update_route(&self, id: Uuid, r: &NewRoute) -> Result<Route, StoreError> {
        let mut tx = self.begin_config().await?;
        Self::require_row::<RouteRow>(&mut tx, GET, id).await?;
        check_references(&mut tx, r).await?;
        let row: RouteRow = tx.exec().fetch_one(UPDATE, write_args(id, r)).await?;
        let route = row.into_model()?;
        self.commit_config(tx).await?;
        Ok(route)
    }

    pub async fn delete_route(&self, id: Uuid) -> Result<(), StoreError> {
        self.delete_config_row(DELETE, id).await
    }

    pub async fn list_routes(
        &self,
        f: &RouteFilter,
        p: &PageRequest,
    ) -> Result<Page<Route>, StoreError> {
        let mut conn = self.db.conn().await?;
        filtered(f)
            .page(&mut conn, p, |r: &RouteRow| &r.id, RouteRow::into_model)
            .await
    }

    /// [`Store::list_routes`] newest first (the VoIPBIN API's order and page token).
    pub async fn list_routes_newest_first(
        &self,
        f: &RouteFilter,
        p: &NewestFirst,
    ) -> Result<Vec<Route>, StoreError> {
        let mut conn = self.db.conn().await?;
        filtered(f)
            .newest_first(&mut conn, p, RouteRow::into_model)
            .await
    }
}

/// The routes a filter selects.
fn filtered(f: &RouteFilter) -> Select {
    let mut select = Select::from(select!());
    select
        .scope(f.scope)
        .and_if("carrier_id = {}", f.carrier_id)
        .and_if(
            "match_type = {}",
            f.match_type.map(|m| m.as_str().to_string()),
        );
    select
}
