//! API tokens: only the SHA-256 of each secret is stored. Tokens are not configuration: writing
//! them neither raises the configuration version nor notifies other instances.

use uuid::Uuid;

use super::exec::args;
use super::rows::{TokenRow, json, now, ts};
use super::{Store, StoreError, tenants};
use crate::model::{ApiToken, NewApiToken};

macro_rules! columns {
    () => {
        "id, token_hash, tenant_id, role, scopes, created_at, revoked_at"
    };
}

const BY_HASH: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM api_tokens WHERE token_hash = $1"
);
const INSERT: &str = concat!(
    "INSERT INTO api_tokens (",
    columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, NULL) RETURNING ",
    columns!()
);
/// Revoking twice keeps the first revocation time.
const REVOKE: &str = "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1";

impl Store {
    pub async fn create_token(&self, t: &NewApiToken) -> Result<ApiToken, StoreError> {
        let mut tx = self.db.begin_write().await?;
        tenants::check_exists(&mut tx, t.tenant_id).await?;
        let args = args![
            Uuid::now_v7(),
            t.token_hash.clone(),
            t.tenant_id,
            t.role.as_str().to_string(),
            json(&t.scopes),
            ts(now()),
        ];
        let row: TokenRow = tx.exec().fetch_one(INSERT, args).await?;
        let token = row.into_model()?;
        tx.commit().await?;
        Ok(token)
    }

    /// The token with this hash, revoked or not (the caller decides what a revoked token means).
    pub async fn find_token_by_hash(&self, hash: &str) -> Result<Option<ApiToken>, StoreError> {
        let row: Option<TokenRow> = self
            .db
            .conn()
            .await?
            .exec()
            .fetch_optional(BY_HASH, args![hash.to_string()])
            .await?;
        row.map(TokenRow::into_model).transpose()
    }

    /// Marks the token revoked; [`StoreError::NotFound`] if there is no such token.
    pub async fn revoke_token(&self, id: Uuid) -> Result<(), StoreError> {
        let changed = self
            .db
            .conn()
            .await?
            .exec()
            .execute(REVOKE, args![id, ts(now())])
            .await?;
        if changed == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}
