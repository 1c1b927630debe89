//! The command line: `serve`, `check-config`, `migrate`, `tenant create`,
//! `token create|revoke`, `route explain` and `templates export`. Every flag also reads a `TRUNKLINE_*` environment variable (see
//! [`crate::config`]). Each command returns an error with a clear message; `main` prints it and
//! exits 1.

use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use uuid::Uuid;

use crate::access::generate_token;
use crate::app::{Application, shutdown_signal};
use crate::causes;
use crate::config::{
    CommonArgs, DocumentArgs, LogFormat, ServeArgs, Settings, config_file, database_url,
};
use crate::model::{ContextName, DisplayName, Feature, NewApiToken, NewTenant, Role, Scope};
use crate::publish::{Published, Publisher, export_templates, load_templates};
use crate::quality::health::HealthView;
use crate::store::Store;
use crate::xmlcurl::explain::{ExplainRequest, Explanation, explain};

#[derive(Debug, Parser)]
#[command(
    name = "trunkline",
    version,
    about = "Outbound carrier routing for FreeSWITCH"
)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the admin API and the mod_xml_curl endpoint (creates and migrates the database).
    Serve(ServeArgs),
    /// Load and check the configuration and templates as `serve` would, print what it would
    /// use, and exit (non-zero, naming the setting, when something is wrong).
    CheckConfig(ServeArgs),
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Explain routing decisions.
    #[command(subcommand)]
    Route(RouteCommand),
    /// The sofia profile and acl templates built into the binary.
    #[command(subcommand)]
    Templates(TemplatesCommand),
}

#[derive(Debug, Subcommand)]
pub enum TemplatesCommand {
    /// Write the built-in templates under DIR, to edit and then name as `templates = "DIR"`.
    Export { dir: std::path::PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant and print its id.
    Create {
        name: String,
        /// The FreeSWITCH dialplan context of the tenant's outbound calls.
        #[arg(long)]
        context: Option<String>,
        /// A feature to grant (repeatable): `self_service_carriers`.
        #[arg(long = "feature")]
        features: Vec<String>,
        /// trunkline's own context (as `serve --context`), which no tenant may take.
        #[arg(long, env = "TRUNKLINE_CONTEXT")]
        default_context: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it once (only its hash is stored).
    Create(TokenCreateArgs),
    /// Revoke a token by id.
    Revoke { id: Uuid },
}

#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// A platform admin token: every tenant, every scope.
    #[arg(long, conflicts_with_all = ["tenant", "metrics"], required_unless_present_any = ["tenant", "metrics"])]
    pub platform_admin: bool,
    /// A token that reads `/metrics` and nothing else, for Prometheus's scrape (a platform
    /// token: the figures name every tenant's carriers).
    #[arg(long, conflicts_with_all = ["tenant", "scopes"])]
    pub metrics: bool,
    /// A tenant admin token bound to this tenant id.
    #[arg(long)]
    pub tenant: Option<Uuid>,
    /// A scope to grant a tenant token (repeatable), e.g. `carriers:read`; default: all scopes.
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum RouteCommand {
    /// Which carriers a destination will use, why, and the exact XML FreeSWITCH would receive.
    Explain {
        destination: String,
        /// The tenant whose call this is (default: platform scope).
        #[arg(long)]
        tenant: Option<Uuid>,
        /// A forced carrier (the `trunkline_carrier_id` channel variable).
        #[arg(long)]
        carrier: Option<Uuid>,
        /// The caller ID number.
        #[arg(long)]
        caller: Option<String>,
        /// The caller-ID name the call presents.
        #[arg(long)]
        caller_name: Option<String>,
        /// STIR/SHAKEN attestation level (A, B or C).
        #[arg(long)]
        attestation: Option<String>,
        /// Route as at this moment, RFC 3339 (e.g. 2026-11-23T22:30:00+01:00): tests schedules.
        #[arg(long)]
        at: Option<chrono::DateTime<chrono::FixedOffset>>,
        /// The call's Unique-ID, which seeds the weighted draw (default: a fixed seed, the one
        /// a fetch without Unique-ID gets).
        #[arg(long)]
        call_id: Option<Uuid>,
        /// A per-call cost ceiling (the `trunkline_max_cost` channel variable).
        #[arg(long)]
        max_cost: Option<String>,
        /// Print the explanation as JSON (the route-preview API's shape).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        documents: DocumentArgs,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(serve) => {
            let settings = Settings::load(&cli.common, &serve)?;
            init_logging(settings.log_format);
            let app = Application::build(settings).await?;
            match app.xmlcurl_addr() {
                Some(xmlcurl) => {
                    tracing::info!(listen = %app.local_addr(), %xmlcurl, "trunkline serving")
                }
                None => tracing::info!(listen = %app.local_addr(), "trunkline serving"),
            }
            app.run(shutdown_signal()).await
        }
        Command::CheckConfig(serve) => {
            let settings = Settings::load(&cli.common, &serve)?;
            print!("{}", check_config(&cli.common, &settings)?);
            Ok(())
        }
        Command::Templates(TemplatesCommand::Export { dir }) => {
            for file in export_templates(&dir)? {
                println!("{}", file.display());
            }
            Ok(())
        }
        Command::Migrate => {
            let store = open_store(&cli.common).await?;
            println!("database migrated ({})", store.backend());
            Ok(())
        }
        Command::Tenant(TenantCommand::Create {
            name,
            context,
            features,
            default_context,
        }) => {
            let documents = DocumentArgs {
                context: default_context,
                ..DocumentArgs::default()
            };
            let settings = document_settings(&cli.common, documents)?;
            let new = NewTenant {
                name: DisplayName::parse(&name).map_err(|e| anyhow::anyhow!("name: {e}"))?,
                context: context
                    .as_deref()
                    .map(ContextName::parse)
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("--context: {e}"))?,
                features: features
                    .iter()
                    .map(|f| Feature::parse(f))
                    .collect::<Result<_, _>>()
                    .map_err(|e| anyhow::anyhow!("--feature: {e}"))?,
                failover_mode: None,
                max_cost: None,
                caller_id_policy: Default::default(),
            };
            if new.context.as_ref() == Some(&settings.default_context) {
                bail!("--context: is trunkline's own default context");
            }
            let store = open_store(&cli.common).await?;
            let tenant = store
                .create_tenant(&new)
                .await
                .context("creating the tenant")?;
            println!("{}", tenant.id);
            Ok(())
        }
        Command::Token(TokenCommand::Create(args)) => {
            let (role, tenant_id, scopes) = token_grant(&args)?;
            let store = open_store(&cli.common).await?;
            if let Some(t) = tenant_id
                && store.get_tenant(t).await?.is_none()
            {
                bail!("--tenant: no tenant with id {t}");
            }
            let generated = generate_token();
            let token = store
                .create_token(&NewApiToken {
                    token_hash: generated.hash,
                    tenant_id,
                    role,
                    scopes,
                })
                .await
                .context("storing the token")?;
            eprintln!(
                "token {} created; it is shown once, store it now:",
                token.id
            );
            println!("{}", generated.secret);
            Ok(())
        }
        Command::Token(TokenCommand::Revoke { id }) => {
            let store = open_store(&cli.common).await?;
            store
                .revoke_token(id)
                .await
                .with_context(|| format!("revoking token {id}"))?;
            println!("token {id} revoked");
            Ok(())
        }
        Command::Route(RouteCommand::Explain {
            destination,
            tenant,
            carrier,
            caller,
            caller_name,
            attestation,
            at,
            call_id,
            max_cost,
            json,
            documents,
        }) => {
            let settings = document_settings(&cli.common, documents)?;
            let store = open_store(&cli.common).await?;
            let published = publish(&store, &settings).await?;
            let request = ExplainRequest {
                tenant_id: tenant,
                destination,
                forced_carrier: carrier,
                caller,
                caller_name,
                attestation,
                call_id,
                max_cost,
                core_uuid: None,
            };
            let at = at.map_or_else(chrono::Utc::now, |t| t.with_timezone(&chrono::Utc));
            // Health lives in the running service (route-preview shows it); the command line
            // explains the configured order.
            let explanation = explain(&published, &HealthView::default(), &request, at)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&explanation)?);
            } else {
                print!("{}", render_explanation(&explanation)?);
            }
            Ok(())
        }
    }
}

/// Settings for a command that must agree with `serve` on the documents (file and flags).
fn document_settings(common: &CommonArgs, documents: DocumentArgs) -> anyhow::Result<Settings> {
    let serve = ServeArgs {
        documents,
        ..ServeArgs::default()
    };
    Ok(Settings::load(common, &serve)?)
}

/// What `check-config` prints: everything `serve` would use, after loading it as `serve` does
/// (the database is named, not connected to: a restart must not wait on it to be checked).
fn check_config(common: &CommonArgs, settings: &Settings) -> anyhow::Result<String> {
    use std::fmt::Write;
    let templates = load_templates(&settings.templates, &settings.template_vars)
        .with_context(|| format!("templates ({})", settings.templates))?;
    let backend = Store::backend_of(&settings.database_url)?;
    let mut out = String::new();
    let file = config_file(common);
    let file = file
        .as_ref()
        .map_or("none (defaults)".into(), |f| f.display().to_string());
    writeln!(out, "configuration: {file}")?;
    match settings.xmlcurl_listen {
        None => writeln!(
            out,
            "listen: {} (API, health, metrics and /freeswitch/xml)",
            settings.listen
        )?,
        Some(xmlcurl) => {
            writeln!(out, "listen: {} (API, health and metrics)", settings.listen)?;
            writeln!(out, "xmlcurl_listen: {xmlcurl} (/freeswitch/xml only)")?;
        }
    }
    writeln!(
        out,
        "database: {} ({backend})",
        redact_password(&settings.database_url)
    )?;
    writeln!(
        out,
        "templates: {} (sofia profiles: {})",
        settings.templates,
        templates
            .profiles
            .names()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    if settings.switches.is_empty() {
        writeln!(
            out,
            "switches: none in the configuration (the API can add them)"
        )?;
    }
    for switch in &settings.switches {
        let profiles: Vec<String> = switch.profiles.iter().map(ToString::to_string).collect();
        writeln!(
            out,
            "switch {}: {}:{} (profiles {}){}",
            switch.name,
            switch.esl_host,
            switch.esl_port,
            profiles.join(", "),
            if switch.enabled { "" } else { ", disabled" }
        )?;
    }
    let http = &settings.http;
    writeln!(
        out,
        "connections: head {:?}, body {:?}, idle {:?}, at most {} per listener",
        http.header_timeout, http.body_timeout, http.idle_timeout, http.max_connections
    )?;
    writeln!(out, "configuration OK")?;
    Ok(out)
}

/// A database URL fit for printing: the password, if any, replaced by `***`.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((credentials, host)) if credentials.contains(':') => {
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_string(),
    }
}

async fn open_store(common: &CommonArgs) -> anyhow::Result<Store> {
    let url = database_url(common)?;
    act_as_owner_of_sqlite_dir(&url)?;
    let store = Store::connect(&url)
        .await
        .context("connecting to the database")?;
    store.migrate().await.context("migrating the database")?;
    Ok(store)
}

/// The documents `serve` would publish right now, for `route explain`.
async fn publish(store: &Store, settings: &Settings) -> anyhow::Result<Arc<Published>> {
    Ok(Publisher::start(
        store.clone(),
        &settings.templates,
        &settings.template_vars,
        settings.publish(),
    )
    .await?
    .published()
    .load_full())
}

/// Run as root against a SQLite file in another user's directory (the package's
/// `/var/lib/trunkline`, owned by the service user), a command acts as that user: a file it
/// created, or the journal SQLite keeps beside it, would otherwise belong to root and the
/// service could no longer write its own database.
#[cfg(unix)]
fn act_as_owner_of_sqlite_dir(url: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    let Some(path) = url.strip_prefix("sqlite://") else {
        return Ok(());
    };
    let path = std::path::Path::new(path.split('?').next().unwrap_or_default());
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    let Ok(owner) = std::fs::metadata(dir) else {
        return Ok(());
    };
    if owner.uid() == 0 {
        return Ok(());
    }
    // SAFETY: plain system calls on integers; group before user, while still allowed.
    let dropped = unsafe {
        libc::setgroups(0, std::ptr::null()) == 0
            && libc::setgid(owner.gid()) == 0
            && libc::setuid(owner.uid()) == 0
    };
    if !dropped {
        bail!(
            "cannot act as the owner (uid {}) of {}: {}",
            owner.uid(),
            dir.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

#[cfg(not(unix))]
fn act_as_owner_of_sqlite_dir(_: &str) -> anyhow::Result<()> {
    Ok(())
}

fn token_grant(args: &TokenCreateArgs) -> anyhow::Result<(Role, Option<Uuid>, Vec<Scope>)> {
    if args.platform_admin {
        if !args.scopes.is_empty() {
            bail!("--scope: a platform admin token holds every scope");
        }
        return Ok((Role::PlatformAdmin, None, Scope::ALL.to_vec()));
    }
    if args.metrics {
        return Ok((Role::Admin, None, vec![Scope::MetricsRead]));
    }
    let scopes: Vec<Scope> = if args.scopes.is_empty() {
        Scope::ALL
            .iter()
            .copied()
            .filter(|s| *s != Scope::MetricsRead)
            .collect()
    } else {
        args.scopes
            .iter()
            .map(|s| Scope::parse(s))
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("--scope: {e}"))?
    };
    if scopes.contains(&Scope::MetricsRead) {
        bail!(
            "--scope: metrics:read names every tenant's carriers; make a platform token with --metrics"
        );
    }
    Ok((Role::Admin, args.tenant, scopes))
}

/// The explanation for a terminal: legs, routes considered, failover causes, then the XML.
fn render_explanation(e: &Explanation) -> anyhow::Result<String> {
    use std::fmt::Write;
    let mut out = String::new();
    let tenant = e
        .tenant_id
        .map_or("platform scope".to_string(), |t| format!("tenant {t}"));
    writeln!(
        out,
        "{} ({tenant}, context {}, {} failover, configuration version {})",
        e.destination, e.context, e.failover_mode, e.snapshot_version
    )?;
    writeln!(out, "outcome: {}", e.outcome.as_str())?;
    if let Some(reason) = &e.reason {
        writeln!(out, "reason: {reason}")?;
    }
    if let Some(forced) = &e.forced {
        writeln!(out, "forced carrier: {}", serde_json::to_string(forced)?)?;
    }
    if let Some(ceiling) = &e.cost_ceiling {
        writeln!(out, "cost ceiling: {}", serde_json::to_string(ceiling)?)?;
    }
    let caller = &e.caller_id;
    writeln!(
        out,
        "caller ID: {} ({}), sends {}, attestation {} ({})",
        serde_json::to_string(&caller.outcome)?.trim_matches('"'),
        caller.detail,
        caller.sent.as_ref().map_or("nothing", |n| n.as_str()),
        caller.attestation.as_str(),
        serde_json::to_string(&caller.attestation_source)?.trim_matches('"'),
    )?;
    let name = &caller.name;
    writeln!(
        out,
        "caller name: presented {}, tenant's {} (each leg's origination_caller_id_name below)",
        match (&name.presented, name.presented_invalid) {
            (Some(n), _) => format!("{n:?}"),
            (None, true) => "one that is not valid (never sent)".into(),
            (None, false) => "none".into(),
        },
        name.tenant_name
            .as_ref()
            .map_or("none".into(), |n| format!("{n:?}")),
    )?;
    let seed = e
        .call_id
        .map_or("fixed seed".to_string(), |c| format!("call id {c}"));
    writeln!(out, "at: {} (weighted draw: {seed})", e.at.to_rfc3339())?;
    writeln!(out, "\nlegs:")?;
    for leg in &e.legs {
        writeln!(
            out,
            "  {}. {} (decided by {})",
            leg.position,
            leg.dial_string,
            serde_json::to_string(&leg.decided_by)?.trim_matches('"')
        )?;
        writeln!(
            out,
            "     continue_on_fail: {}",
            leg.continue_on_fail.join(",")
        )?;
        if !leg.transfer_on_fail.is_empty() {
            writeln!(
                out,
                "     transfer_on_fail: {}",
                leg.transfer_on_fail.join(",")
            )?;
        }
        for c in &leg.collisions {
            writeln!(
                out,
                "     collision: {} is reached by failover codes {} and also by {}",
                c.cause,
                causes::code_ranges(&c.failover_codes),
                causes::code_ranges(&c.other_codes)
            )?;
        }
        writeln!(out, "     failover: {}", leg.failover_handling)?;
    }
    writeln!(
        out,
        "\nroutes considered ({}):",
        serde_json::to_string(&e.scope)?
    )?;
    for c in &e.considered {
        writeln!(out, "  {}", serde_json::to_string(c)?)?;
    }
    if !e.excluded.is_empty() {
        writeln!(out, "\nroutes excluded by caller rule or schedule:")?;
        for x in &e.excluded {
            writeln!(out, "  {}", serde_json::to_string(x)?)?;
        }
    }
    writeln!(out, "\nxml:\n{}", e.xml)?;
    Ok(out)
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TRUNKLINE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: a file or the journal would keep the escape codes.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    // A second init (tests) is harmless: the first subscriber stays.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
