//! Tenants: the owners of carriers, routes and numbers. A tenant's `context` is unique (two
//! tenants cannot share a FreeSWITCH dialplan context); there is no delete.

use uuid::Uuid;

use super::exec::{Args, Tx, args};
use super::list::Select;
use super::rows::{TenantRow, cost_columns, json, now, ts};
use super::{Page, PageRequest, Store, StoreError, TenantFilter};
use crate::model::{NewTenant, Tenant};

macro_rules! columns {
    () => {
        "id, name, context, features, failover_mode, max_cost_micros, max_cost_currency, \
         created_at, updated_at, caller_id_policy"
    };
}

macro_rules! select {
    () => {
        concat!("SELECT ", columns!(), " FROM tenants")
    };
}
/// Every tenant, for the dataset.
pub(super) const ALL: &str = concat!(select!(), " ORDER BY id");
const GET: &str = concat!(select!(), " WHERE id = $1");
const EXISTS: &str = "SELECT id FROM tenants WHERE id = $1";
const INSERT: &str = concat!(
    "INSERT INTO tenants (",
    columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9) RETURNING ",
    columns!()
);
const UPDATE: &str = concat!(
    "UPDATE tenants SET name = $2, context = $3, features = $4, failover_mode = $5, ",
    "max_cost_micros = $6, max_cost_currency = $7, updated_at = $8, caller_id_policy = $9 ",
    "WHERE id = $1 RETURNING ",
    columns!()
);

/// `$1` id, `$2`…`$7` the writable fields, `$8` the time of the write, `$9` the caller-ID
/// policy.
fn write_args(id: Uuid, t: &NewTenant) -> Args {
    let (max_cost_micros, max_cost_currency) = cost_columns(t.max_cost.as_ref());
    args![
        id,
        t.name.to_string(),
        t.context.as_ref().map(ToString::to_string),
        json(&t.features),
        t.failover_mode.map(|m| m.as_str().to_string()),
        max_cost_micros,
        max_cost_currency,
        ts(now()),
        json(&t.caller_id_policy),
    ]
}

/// Refuses a reference to a tenant that does not exist, inside the writing transaction (SQLite's
/// foreign key error does not say which key failed).
pub(super) async fn check_exists(tx: &mut Tx, tenant: Option<Uuid>) -> Result<(), StoreError> {
    let Some(id) = tenant else { return Ok(()) };
    match tx
        .exec()
        .fetch_optional::<(String,)>(EXISTS, args![id])
        .await?
    {
        Some(_) => Ok(()),
        None => Err(StoreError::Invalid {
            field: "tenant_id",
            detail: "no such tenant".into(),
        }),
    }
}

impl Store {
    pub async fn create_tenant(&self, t: &NewTenant) -> Result<Tenant, StoreError> {
        let mut tx = self.begin_config().await?;
        let row: TenantRow = tx
            .exec()
            .fetch_one(INSERT, write_args(Uuid::now_v7(), t))
            .await?;
        let tenant = row.into_model()?;
        self.commit_config(tx).await?;
        Ok(tenant)
    }

    pub async fn get_tenant(&self, id: Uuid) -> Result<Option<Tenant>, StoreError> {
        self.get_row::<TenantRow>(GET, id)
            .await?
            .map(TenantRow::into_model)
            .transpose()
    }

    /// Replaces the writable fields; [`StoreError::NotFound`] if there is no such tenant.
    pub async fn update_tenant(&self, id: Uuid, t: &NewTenant) -> Result<Tenant, StoreError> {
        let mut tx = self.begin_config().await?;
        let row: TenantRow = tx.exec().fetch_one(UPDATE, write_args(id, t)).await?;
        let tenant = row.into_model()?;
        self.commit_config(tx).await?;
        Ok(tenant)
    }

    pub async fn list_tenants(
        &self,
        f: &TenantFilter,
        p: &PageRequest,
    ) -> Result<Page<Tenant>, StoreError> {
        let mut select = Select::from(select!());
        select.and_if("id = {}", f.only);
        let mut conn = self.db.conn().await?;
        select
            .page(&mut conn, p, |r: &TenantRow| &r.id, TenantRow::into_model)
            .await
    }
}
