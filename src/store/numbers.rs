//! Phone numbers: the DID inventory. A number is unique across all tenants; its carrier is
//! optional and the reference is ON DELETE SET NULL (the number outlives its carrier).

use uuid::Uuid;

use super::exec::{Args, Tx, args};
use super::list::Select;
use super::rows::{PhoneNumberRow, json, now, ts};
use super::{Page, PageRequest, PhoneNumberFilter, Store, StoreError, carriers, tenants};
use crate::model::{NewPhoneNumber, PhoneNumber};

macro_rules! columns {
    () => {
        "id, tenant_id, number, carrier_id, capabilities, created_at, updated_at"
    };
}

macro_rules! select {
    () => {
        concat!("SELECT ", columns!(), " FROM phone_numbers")
    };
}

const GET: &str = concat!(select!(), " WHERE id = $1");
/// Every number's owner and capabilities, for the dataset (the snapshot keeps the voice ones).
pub(super) const ALL_OWNERS: &str = "SELECT tenant_id, number, capabilities FROM phone_numbers";
const INSERT: &str = concat!(
    "INSERT INTO phone_numbers (",
    columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING ",
    columns!()
);
const UPDATE: &str = concat!(
    "UPDATE phone_numbers SET tenant_id = $2, number = $3, carrier_id = $4, capabilities = $5, \
     updated_at = $6 WHERE id = $1 RETURNING ",
    columns!()
);
const DELETE: &str = "DELETE FROM phone_numbers WHERE id = $1";

/// `$1` id, `$2`…`$5` the writable fields, `$6` the time of the write.
fn write_args(id: Uuid, n: &NewPhoneNumber) -> Args {
    args![
        id,
        n.tenant_id,
        n.number.to_string(),
        n.carrier_id,
        json(&n.capabilities),
        ts(now()),
    ]
}

async fn check_references(tx: &mut Tx, n: &NewPhoneNumber) -> Result<(), StoreError> {
    tenants::check_exists(tx, Some(n.tenant_id)).await?;
    if let Some(carrier) = n.carrier_id
        && carriers::get_in(tx, carrier).await?.is_none()
    {
        return Err(StoreError::Invalid {
            field: "carrier_id",
            detail: "no such carrier".into(),
        });
    }
    Ok(())
}

impl Store {
    pub async fn create_phone_number(&self, n: &NewPhoneNumber) -> Result<PhoneNumber, StoreError> {
        let mut tx = self.begin_config().await?;
        check_references(&mut tx, n).await?;
        let row: PhoneNumberRow = tx
            .exec()
            .fetch_one(INSERT, write_args(Uuid::now_v7(), n))
            .await?;
        let number = row.into_model()?;
        self.commit_config(tx).await?;
        Ok(number)
    }

    pub async fn get_phone_number(&self, id: Uuid) -> Result<Option<PhoneNumber>, StoreError> {
        self.get_row::<PhoneNumberRow>(GET, id)
            .await?
            .map(PhoneNumberRow::into_model)
            .transpose()
    }

    /// Replaces the writable fields; [`StoreError::NotFound`] if there is no such number.
    pub async fn update_phone_number(
        &self,
        id: Uuid,
        n: &NewPhoneNumber,
    ) -> Result<PhoneNumber, StoreError> {
        let mut tx = self.begin_config().await?;
        Self::require_row::<PhoneNumberRow>(&mut tx, GET, id).await?;
        check_references(&mut tx, n).await?;
        let row: PhoneNumberRow = tx.exec().fetch_one(UPDATE, write_args(id, n)).await?;
        let number = row.into_model()?;
        self.commit_config(tx).await?;
        Ok(number)
    }

    pub async fn delete_phone_number(&self, id: Uuid) -> Result<(), StoreError> {
        self.delete_config_row(DELETE, id).await
    }

    pub async fn list_phone_numbers(
        &self,
        f: &PhoneNumberFilter,
        p: &PageRequest,
    ) -> Result<Page<PhoneNumber>, StoreError> {
        let mut select = Select::from(select!());
        select
            .scope(f.scope)
            .and_if("carrier_id = {}", f.carrier_id);
        let mut conn = self.db.conn().await?;
        select
            .page(
                &mut conn,
                p,
                |r: &PhoneNumberRow| &r.id,
                PhoneNumberRow::into_model,
            )
            .await
    }
}
