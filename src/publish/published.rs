//! What the xml_curl endpoint answers from: the routing snapshot plus the sofia.conf and acl.conf
//! documents rendered from it. Built once per committed change (never per request) and swapped
//! atomically by the caller, so a fetch never touches the database and never waits for a
//! rebuild. Pure: takes a dataset and templates, returns documents.

use std::collections::HashMap;

use axum::body::Bytes;

use crate::fsxml::acl::{AclTemplate, acl_document};
use crate::fsxml::sofia::{ProfileTemplates, SkippedGateway, sofia_document};
use crate::fsxml::writer::RenderError;
use crate::model::Dataset;
use crate::model::{ContextName, FailoverMode};
use crate::routing::{RoutingSettings, Snapshot};

/// The operator's templates, read once at start-up.
pub struct Templates {
    pub profiles: ProfileTemplates,
    pub acl: AclTemplate,
}

/// Settings the documents depend on (from [`crate::config::Settings`]).
#[derive(Debug, Clone)]
pub struct PublishSettings {
    pub default_context: ContextName,
    pub failover_mode: FailoverMode,
    pub routing: RoutingSettings,
}

pub struct Published {
    pub snapshot: Snapshot,
    pub default_context: ContextName,
    pub failover_mode: FailoverMode,
    /// Carriers that should be gateways but are not in sofia.conf (no template for their
    /// profile, …), for the publisher to log.
    pub skipped_gateways: Vec<SkippedGateway>,
    /// sofia.conf with every profile, for the fetch FreeSWITCH makes when mod_sofia loads.
    sofia_all: Bytes,
    /// sofia.conf with one profile, for `profile=X` fetches (rescan, profile start).
    sofia_by_profile: HashMap<String, Bytes>,
    acl: Bytes,
}

impl Published {
    pub fn build(
        dataset: Dataset,
        templates: &Templates,
        settings: &PublishSettings,
    ) -> Result<Published, RenderError> {
        let snapshot = Snapshot::build(
            dataset.version,
            dataset.tenants,
            dataset.carriers,
            dataset.routes,
            settings.routing.clone(),
        )
        .with_voice_numbers(dataset.voice_numbers);
        let gateways = snapshot.gateways(None);
        let sofia_all = sofia_document(&templates.profiles, &gateways, None)?;
        let mut sofia_by_profile = HashMap::new();
        for name in templates.profiles.names() {
            let doc = sofia_document(&templates.profiles, &gateways, Some(name.as_str()))?;
            sofia_by_profile.insert(name.to_string(), Bytes::from(doc.xml));
        }
        let acl = acl_document(&snapshot.inbound_cidrs(), &templates.acl)?;
        Ok(Published {
            snapshot,
            default_context: settings.default_context.clone(),
            failover_mode: settings.failover_mode,
            skipped_gateways: sofia_all.skipped,
            sofia_all: Bytes::from(sofia_all.xml),
            sofia_by_profile,
            acl: Bytes::from(acl),
        })
    }

    pub fn version(&self) -> u64 {
        self.snapshot.version()
    }

    /// sofia.conf for a fetch; `None` when the profile asked for has no template.
    pub fn sofia(&self, profile: Option<&str>) -> Option<Bytes> {
        match profile {
            None => Some(self.sofia_all.clone()),
            Some(p) => self.sofia_by_profile.get(p).cloned(),
        }
    }

    pub fn acl(&self) -> Bytes {
        self.acl.clone()
    }

    /// Whether trunkline answers dialplan fetches for `context`: its default context and every
    /// tenant's own context.
    pub fn owns_context(&self, context: &str) -> bool {
        context == self.default_context.as_str()
            || self.snapshot.tenant_by_context(context).is_some()
    }
}
