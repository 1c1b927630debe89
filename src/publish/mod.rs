//! Publishing: the one way a configuration version becomes what FreeSWITCH is answered from.
//!
//! - [`published`]: the routing snapshot and the sofia.conf / acl.conf documents rendered from
//!   one dataset (pure).
//! - [`build`]: builds it and reports it (carriers left out of sofia.conf, the version gauge);
//!   used at start-up, by `route explain` and by the [`Publisher`] after every committed change.
//! - [`Publisher`]: rebuilds from the database and swaps the result in, one rebuild at a time.
//! - [`load_templates`]: the templates, read once: the operator's directory, or the defaults
//!   built into the binary ([`BUILT_IN_TEMPLATES`]).
//!
//! The xml_curl endpoint and the Event Socket both read [`Published`]; neither builds one.

pub mod published;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use arc_swap::ArcSwap;
use tokio::sync::{Mutex, watch};

pub use published::{PublishSettings, Published, Templates};

use crate::fsxml::acl::AclTemplate;
use crate::fsxml::sofia::ProfileTemplates;
use crate::memory::release_freed_memory;
use crate::model::Dataset;
use crate::store::Store;

/// Builds what a dataset publishes and reports it: every carrier left out of sofia.conf is
/// logged (at start-up as after a write) and the version gauge is set.
pub fn build(
    dataset: Dataset,
    templates: &Templates,
    settings: &PublishSettings,
) -> anyhow::Result<Published> {
    let published = Published::build(dataset, templates, settings)
        .context("rendering documents from the new snapshot")?;
    for skipped in &published.skipped_gateways {
        tracing::warn!(?skipped, "carrier left out of sofia.conf");
    }
    metrics::gauge!("trunkline_snapshot_version").set(published.version() as f64);
    Ok(published)
}

/// Rebuilds the published snapshot from the database and swaps it in. One rebuild at a time;
/// a caller that finds the snapshot already at its version returns at once, so a burst of
/// writes costs few rebuilds.
pub struct Publisher {
    store: Store,
    target: Arc<ArcSwap<Published>>,
    templates: Arc<Templates>,
    settings: PublishSettings,
    lock: Mutex<()>,
    /// Whether the last rebuild attempt failed (the database unreachable): /readyz says so while
    /// the xml_curl endpoint keeps answering from the last good snapshot.
    stale: watch::Sender<bool>,
}

impl Publisher {
    /// Reads the operator's templates, loads the configuration and publishes its first build:
    /// what `serve` starts from and what `route explain` shows.
    pub async fn start(
        store: Store,
        templates: &TemplateSource,
        template_vars: &BTreeMap<String, String>,
        publish_settings: PublishSettings,
    ) -> anyhow::Result<Publisher> {
        let templates = load_templates(templates, template_vars)?;
        let dataset = store
            .load_dataset()
            .await
            .context("loading the configuration")?;
        let first = build(dataset, &templates, &publish_settings).context("the first documents")?;
        release_freed_memory();
        Ok(Publisher {
            store,
            target: Arc::new(ArcSwap::from_pointee(first)),
            templates: Arc::new(templates),
            settings: publish_settings,
            lock: Mutex::new(()),
            stale: watch::Sender::new(false),
        })
    }

    /// The templates every build renders with (read once at start).
    pub fn templates(&self) -> &Templates {
        &self.templates
    }

    /// What xml_curl fetches are answered from, swapped after every rebuild.
    pub fn published(&self) -> Arc<ArcSwap<Published>> {
        self.target.clone()
    }

    /// Brings the published snapshot to at least `version`.
    pub async fn refresh_to(&self, version: u64) -> anyhow::Result<()> {
        let _guard = self.lock.lock().await;
        if self.target.load().version() >= version {
            return Ok(());
        }
        self.rebuild().await
    }

    /// Reloads unconditionally when the database's version differs from the published one
    /// (the safety net for lost notifications).
    pub async fn refresh_if_changed(&self) -> anyhow::Result<()> {
        let _guard = self.lock.lock().await;
        let version = match self.store.config_version().await {
            Ok(v) => v,
            Err(e) => {
                self.set_stale(true);
                return Err(e.into());
            }
        };
        if self.target.load().version() == version && !*self.stale.borrow() {
            return Ok(());
        }
        self.rebuild().await
    }

    async fn rebuild(&self) -> anyhow::Result<()> {
        let started = Instant::now();
        let dataset = match self.store.load_dataset().await {
            Ok(d) => d,
            Err(e) => {
                self.set_stale(true);
                return Err(e.into());
            }
        };
        // At platform size a build takes seconds of CPU: on a blocking thread it leaves the
        // runtime's workers to the xml_curl fetches, which keep reading the old snapshot.
        let (templates, settings) = (self.templates.clone(), self.settings.clone());
        let published = tokio::task::spawn_blocking(move || build(dataset, &templates, &settings))
            .await
            .context("the snapshot build stopped")??;
        let version = published.version();
        self.target.store(Arc::new(published));
        tokio::task::spawn_blocking(release_freed_memory);
        self.set_stale(false);
        metrics::histogram!("trunkline_snapshot_rebuild_seconds")
            .record(started.elapsed().as_secs_f64());
        tracing::debug!(version, elapsed = ?started.elapsed(), "snapshot published");
        Ok(())
    }

    pub fn is_stale(&self) -> bool {
        *self.stale.borrow()
    }

    /// The flag and the `trunkline_snapshot_stale` gauge change together, so /readyz and the
    /// metrics never disagree (the timer's version check used to set only the flag).
    fn set_stale(&self, stale: bool) {
        self.stale.send_replace(stale);
        metrics::gauge!("trunkline_snapshot_stale").set(if stale { 1.0 } else { 0.0 });
    }
}

/// The templates shipped in the binary, by path under a templates directory: what `serve`
/// uses when no `templates` directory is configured, and what `trunkline templates export`
/// writes out for an operator to start from.
pub const BUILT_IN_TEMPLATES: &[(&str, &str)] = &[
    (
        "sofia/external.xml",
        include_str!("../../templates/sofia/external.xml"),
    ),
    ("acl.conf.xml", include_str!("../../templates/acl.conf.xml")),
    (
        "examples/callers.xml",
        include_str!("../../templates/examples/callers.xml"),
    ),
];

/// Where the templates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateSource {
    /// [`BUILT_IN_TEMPLATES`].
    BuiltIn,
    /// `sofia/<profile>.xml` and `acl.conf.xml` under an operator's directory, which replaces
    /// the built-in ones whole.
    Directory(PathBuf),
}

impl std::fmt::Display for TemplateSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TemplateSource::BuiltIn => f.write_str("built in"),
            TemplateSource::Directory(dir) => write!(f, "{}", dir.display()),
        }
    }
}

/// Reads the templates: (profile, text) of every sofia profile and the acl.conf text.
pub fn load_templates(
    source: &TemplateSource,
    vars: &BTreeMap<String, String>,
) -> anyhow::Result<Templates> {
    let (mut sources, acl_text) = match source {
        TemplateSource::BuiltIn => {
            let profiles = BUILT_IN_TEMPLATES
                .iter()
                .filter_map(|(path, text)| {
                    let profile = path.strip_prefix("sofia/")?.strip_suffix(".xml")?;
                    Some((profile.to_string(), text.to_string()))
                })
                .collect();
            let acl = BUILT_IN_TEMPLATES
                .iter()
                .find(|(path, _)| *path == "acl.conf.xml")
                .map(|(_, text)| text.to_string())
                .unwrap_or_default();
            (profiles, acl)
        }
        TemplateSource::Directory(dir) => read_template_dir(dir)?,
    };
    sources.sort();
    let profiles = ProfileTemplates::load(sources, vars).context("sofia profile templates")?;
    let acl = AclTemplate::load(&acl_text).context("acl template")?;
    Ok(Templates { profiles, acl })
}

fn read_template_dir(dir: &Path) -> anyhow::Result<(Vec<(String, String)>, String)> {
    let sofia_dir = dir.join("sofia");
    let mut sources = Vec::new();
    let entries = std::fs::read_dir(&sofia_dir)
        .with_context(|| format!("reading sofia templates in {}", sofia_dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("xml") {
            continue;
        }
        let profile = path
            .file_stem()
            .and_then(|s| s.to_str())
            .with_context(|| format!("template name {} is not UTF-8", path.display()))?
            .to_string();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        sources.push((profile, text));
    }
    let acl_path = dir.join("acl.conf.xml");
    let acl_text = match std::fs::read_to_string(&acl_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", acl_path.display())),
    };
    Ok((sources, acl_text))
}

/// Writes [`BUILT_IN_TEMPLATES`] under `dir` (created if needed) and returns the files
/// written; refuses, writing nothing, if any of them exists already.
pub fn export_templates(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let files: Vec<(PathBuf, &str)> = BUILT_IN_TEMPLATES
        .iter()
        .map(|(path, text)| (dir.join(path), *text))
        .collect();
    if let Some((existing, _)) = files.iter().find(|(path, _)| path.exists()) {
        anyhow::bail!(
            "{} exists already; nothing was written (export into an empty directory)",
            existing.display()
        );
    }
    for (path, text) in &files {
        let parent = path.parent().expect("a file under the directory");
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(files.into_iter().map(|(path, _)| path).collect())
}
