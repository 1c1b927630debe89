//! FreeSWITCH nodes ("switches") and the reconciler's durable state per node: the gateways
//! trunkline verified there (`switch_gateways`), the ACL it last reloaded, the last successful
//! sync, and the lease that lets one trunkline instance at a time act on a node
//! (`switch_sync`). A switch write is a configuration write all the same: it raises
//! `config_version` and notifies the other instances, so every instance starts, restarts or
//! stops its supervisor for that node within the change feed's latency, not its next
//! safety-net tick.
//!
//! The lease is plain SQL that both backends run the same way: an upsert that takes the row only
//! when it is free, expired or already ours (`ON CONFLICT … DO UPDATE … WHERE`), so exactly one
//! instance gets `rows_affected = 1`. Timestamps are fixed-width RFC 3339 text, so text order is
//! time order.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::exec::args;
use super::rows::{json, now, parse_id, ts};
use super::{Store, StoreError};
use crate::model::{Applied, AppliedGateway};
use crate::model::{GatewayName, Host, Password, ProfileName};
use crate::model::{NewSwitch, Switch, SwitchName};

macro_rules! select {
    () => {
        "SELECT id, name, esl_host, esl_port, esl_password, enabled, profiles, from_config, \
         created_at, updated_at FROM switches"
    };
}

const LIST: &str = concat!(select!(), " ORDER BY id");
const GET: &str = concat!(select!(), " WHERE id = $1");
const BY_NAME: &str = concat!(select!(), " WHERE name = $1");
const INSERT: &str = "INSERT INTO switches (id, name, esl_host, esl_port, esl_password, enabled, profiles, from_config, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)";
const UPDATE: &str = "UPDATE switches SET name = $2, esl_host = $3, esl_port = $4, esl_password = $5, enabled = $6, profiles = $7, from_config = $8, updated_at = $9 WHERE id = $1";
const DELETE_GATEWAYS: &str = "DELETE FROM switch_gateways WHERE switch_id = $1";
const DELETE_SYNC: &str = "DELETE FROM switch_sync WHERE switch_id = $1";
const DELETE: &str = "DELETE FROM switches WHERE id = $1";
const APPLIED: &str = "SELECT gateway_name, profile, fingerprint FROM switch_gateways WHERE switch_id = $1 ORDER BY gateway_name";
const UPSERT_APPLIED: &str = "INSERT INTO switch_gateways (switch_id, gateway_name, profile, fingerprint, applied_at) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (switch_id, gateway_name) DO UPDATE SET profile = excluded.profile, fingerprint = excluded.fingerprint, applied_at = excluded.applied_at";
const FORGET_APPLIED: &str =
    "DELETE FROM switch_gateways WHERE switch_id = $1 AND gateway_name = $2";
const SYNC: &str = "SELECT acl_fingerprint, core_uuid, last_sync_at, synced_version, last_error, lease_holder \
     FROM switch_sync WHERE switch_id = $1";
const ENSURE_SYNC: &str =
    "INSERT INTO switch_sync (switch_id) VALUES ($1) ON CONFLICT (switch_id) DO NOTHING";
const SET_ACL: &str = "UPDATE switch_sync SET acl_fingerprint = $2 WHERE switch_id = $1";
const SET_SYNCED: &str = "UPDATE switch_sync SET core_uuid = $2, last_sync_at = $3, synced_version = $4, last_error = NULL \
     WHERE switch_id = $1";
const SET_ERROR: &str = "UPDATE switch_sync SET last_error = $2 WHERE switch_id = $1";
const TAKE_LEASE: &str = "INSERT INTO switch_sync (switch_id, lease_holder, lease_expires_at) VALUES ($1, $2, $3) \
     ON CONFLICT (switch_id) DO UPDATE SET lease_holder = excluded.lease_holder, lease_expires_at = excluded.lease_expires_at \
     WHERE switch_sync.lease_holder IS NULL OR switch_sync.lease_holder = excluded.lease_holder OR switch_sync.lease_expires_at < $4";
const RELEASE_LEASE: &str = "UPDATE switch_sync SET lease_holder = NULL, lease_expires_at = NULL WHERE switch_id = $1 AND lease_holder = $2";

#[derive(Debug, sqlx::FromRow)]
struct SwitchRow {
    id: String,
    name: String,
    esl_host: String,
    esl_port: i64,
    esl_password: String,
    enabled: bool,
    profiles: String,
    from_config: bool,
    created_at: String,
    updated_at: String,
}

fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("switches.{what}: {detail}"))
}

fn parse_time(what: &str, s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| corrupt(what, e))
}

impl SwitchRow {
    fn into_model(self) -> Result<Switch, StoreError> {
        let profiles: Vec<String> =
            serde_json::from_str(&self.profiles).map_err(|e| corrupt("profiles", e))?;
        Ok(Switch {
            id: parse_id("switches.id", &self.id)?,
            name: SwitchName::parse(&self.name).map_err(|e| corrupt("name", e))?,
            esl_host: Host::parse(&self.esl_host).map_err(|e| corrupt("esl_host", e))?,
            esl_port: u16::try_from(self.esl_port).map_err(|e| corrupt("esl_port", e))?,
            esl_password: Password::parse(&self.esl_password)
                .map_err(|_| corrupt("esl_password", "unparsable"))?,
            enabled: self.enabled,
            profiles: profiles
                .iter()
                .map(|p| ProfileName::parse(p))
                .collect::<Result<_, _>>()
                .map_err(|e| corrupt("profiles", e))?,
            from_config: self.from_config,
            created_at: parse_time("created_at", &self.created_at)?,
            updated_at: parse_time("updated_at", &self.updated_at)?,
        })
    }
}

/// The durable sync state of one switch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncState {
    pub applied: Applied,
    pub core_uuid: Option<String>,
    pub last_sync_at: Option<DateTime<Utc>>,
    /// The configuration version of the last converged pass, by whichever instance made it.
    pub synced_version: Option<u64>,
    /// The lease holder's last error on this node (cleared by a converged pass).
    pub last_error: Option<String>,
    /// The instance holding (or last holding) the node's lease.
    pub lease_holder: Option<String>,
}

fn profiles_json(s: &NewSwitch) -> String {
    json(
        &s.profiles
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
    )
}

impl Store {
    pub async fn list_switches(&self) -> Result<Vec<Switch>, StoreError> {
        let rows = self
            .db
            .conn()
            .await?
            .exec()
            .fetch_all::<SwitchRow>(LIST, args![])
            .await?;
        rows.into_iter().map(SwitchRow::into_model).collect()
    }

    pub async fn get_switch(&self, id: Uuid) -> Result<Switch, StoreError> {
        self.db
            .conn()
            .await?
            .exec()
            .fetch_one::<SwitchRow>(GET, args![id])
            .await?
            .into_model()
    }

    /// Creates a switch; its name must be free.
    pub async fn create_switch(
        &self,
        new: &NewSwitch,
        from_config: bool,
    ) -> Result<Switch, StoreError> {
        let mut tx = self.begin_config().await?;
        let taken = tx
            .exec()
            .fetch_optional::<SwitchRow>(BY_NAME, args![new.name.to_string()])
            .await?;
        if taken.is_some() {
            return Err(name_taken());
        }
        let id = Uuid::now_v7();
        tx.exec()
            .execute(
                INSERT,
                args![
                    id,
                    new.name.to_string(),
                    new.esl_host.to_string(),
                    new.esl_port,
                    new.esl_password.expose().to_string(),
                    new.enabled,
                    profiles_json(new),
                    from_config,
                    ts(now())
                ],
            )
            .await?;
        self.commit_config(tx).await?;
        self.get_switch(id).await
    }

    /// Replaces a switch's fields (PATCH merged by the caller).
    pub async fn update_switch(
        &self,
        id: Uuid,
        new: &NewSwitch,
        from_config: bool,
    ) -> Result<Switch, StoreError> {
        let mut tx = self.begin_config().await?;
        let other = tx
            .exec()
            .fetch_optional::<SwitchRow>(BY_NAME, args![new.name.to_string()])
            .await?;
        if other.is_some_and(|o| o.id != id.hyphenated().to_string()) {
            return Err(name_taken());
        }
        let changed = tx
            .exec()
            .execute(
                UPDATE,
                args![
                    id,
                    new.name.to_string(),
                    new.esl_host.to_string(),
                    new.esl_port,
                    new.esl_password.expose().to_string(),
                    new.enabled,
                    profiles_json(new),
                    from_config,
                    ts(now())
                ],
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::NotFound);
        }
        self.commit_config(tx).await?;
        self.get_switch(id).await
    }

    /// Declares a switch of the configuration file: created, or updated in place by name (its id,
    /// and so its sync state, survives restarts).
    pub async fn upsert_config_switch(&self, new: &NewSwitch) -> Result<Switch, StoreError> {
        let existing = self
            .db
            .conn()
            .await?
            .exec()
            .fetch_optional::<SwitchRow>(BY_NAME, args![new.name.to_string()])
            .await?;
        match existing {
            Some(row) => {
                let id = parse_id("switches.id", &row.id)?;
                self.update_switch(id, new, true).await
            }
            None => self.create_switch(new, true).await,
        }
    }

    /// Deletes a switch and its sync state.
    pub async fn delete_switch(&self, id: Uuid) -> Result<(), StoreError> {
        let mut tx = self.begin_config().await?;
        tx.exec().execute(DELETE_GATEWAYS, args![id]).await?;
        tx.exec().execute(DELETE_SYNC, args![id]).await?;
        if tx.exec().execute(DELETE, args![id]).await? == 0 {
            return Err(StoreError::NotFound);
        }
        self.commit_config(tx).await?;
        Ok(())
    }

    /// What trunkline last verified on the switch.
    pub async fn switch_sync_state(&self, id: Uuid) -> Result<SyncState, StoreError> {
        let mut conn = self.db.conn().await?;
        let rows = conn
            .exec()
            .fetch_all::<(String, String, String)>(APPLIED, args![id])
            .await?;
        let mut gateways = BTreeMap::new();
        for (name, profile, fingerprint) in rows {
            let name = GatewayName::parse(&name).map_err(|e| corrupt("gateway_name", e))?;
            let profile = ProfileName::parse(&profile).map_err(|e| corrupt("profile", e))?;
            gateways.insert(
                name.clone(),
                AppliedGateway {
                    name,
                    profile,
                    fingerprint,
                },
            );
        }
        type SyncRow = (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<i64>,
            Option<String>,
            Option<String>,
        );
        let sync = conn
            .exec()
            .fetch_optional::<SyncRow>(SYNC, args![id])
            .await?;
        let (acl, core_uuid, last_sync_at, synced_version, last_error, lease_holder) =
            sync.unwrap_or_default();
        Ok(SyncState {
            applied: Applied { gateways, acl },
            core_uuid,
            last_sync_at: last_sync_at
                .map(|t| parse_time("last_sync_at", &t))
                .transpose()?,
            synced_version: synced_version
                .map(|v| {
                    u64::try_from(v)
                        .map_err(|_| StoreError::Corrupt("switch_sync.synced_version".into()))
                })
                .transpose()?,
            last_error,
            lease_holder,
        })
    }

    /// Records a verified reconcile in one transaction: gateways confirmed running, gateways
    /// confirmed gone, the ACL when its reload succeeded, and (when the whole plan converged)
    /// the node's Core-UUID, the sync time and the configuration version it was synced to.
    pub async fn record_applied(
        &self,
        id: Uuid,
        confirmed: &[AppliedGateway],
        gone: &[GatewayName],
        acl: Option<&str>,
        synced: Option<(&str, u64)>,
    ) -> Result<(), StoreError> {
        let at = ts(now());
        let mut tx = self.db.begin_write().await?;
        tx.exec().execute(ENSURE_SYNC, args![id]).await?;
        for g in confirmed {
            tx.exec()
                .execute(
                    UPSERT_APPLIED,
                    args![
                        id,
                        g.name.to_string(),
                        g.profile.to_string(),
                        g.fingerprint.clone(),
                        at.clone()
                    ],
                )
                .await?;
        }
        for g in gone {
            tx.exec()
                .execute(FORGET_APPLIED, args![id, g.to_string()])
                .await?;
        }
        if let Some(acl) = acl {
            tx.exec()
                .execute(SET_ACL, args![id, acl.to_string()])
                .await?;
        }
        if let Some((core_uuid, version)) = synced {
            let version = i64::try_from(version)
                .map_err(|_| StoreError::Corrupt("configuration version out of range".into()))?;
            tx.exec()
                .execute(
                    SET_SYNCED,
                    args![id, core_uuid.to_string(), at.clone(), version],
                )
                .await?;
        }
        tx.commit().await
    }

    /// Records the lease holder's latest error on a node (or clears it), for every instance's
    /// view of the node.
    pub async fn record_switch_error(
        &self,
        id: Uuid,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().await?;
        tx.exec().execute(ENSURE_SYNC, args![id]).await?;
        tx.exec()
            .execute(SET_ERROR, args![id, error.map(str::to_string)])
            .await?;
        tx.commit().await
    }

    /// Takes or renews the lease on a switch for `holder` until `now + ttl`; `true` when held.
    pub async fn take_switch_lease(
        &self,
        id: Uuid,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let now = now();
        let until = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(30));
        let mut tx = self.begin_config().await?;
        let taken = tx
            .exec()
            .execute(
                TAKE_LEASE,
                args![id, holder.to_string(), ts(until), ts(now)],
            )
            .await?;
        tx.commit().await?;
        Ok(taken == 1)
    }

    /// Gives the lease up (on shutdown), so another instance takes over without waiting.
    pub async fn release_switch_lease(&self, id: Uuid, holder: &str) -> Result<(), StoreError> {
        self.db
            .conn()
            .await?
            .exec()
            .execute(RELEASE_LEASE, args![id, holder.to_string()])
            .await?;
        Ok(())
    }
}

fn name_taken() -> StoreError {
    StoreError::Conflict {
        field: "name",
        detail: "another switch already has this name".into(),
    }
}
