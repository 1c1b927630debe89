//! Settings: command-line flags, each also read from a `TRUNKLINE_*` environment variable, over an
//! optional TOML file (`--config`), over embedded defaults that start a working service with no
//! set-up at all (SQLite file in the working directory, loopback listener).
//!
//! Precedence: flag or environment variable > file > default. Everything is checked here, once,
//! into typed values; a bad setting is a [`ConfigError`] with a message naming it, never a panic.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::esl::supervisor::EslSettings;
use crate::model::{
    AllowList, Cidr, ContextName, Currency, FailoverCode, FailoverCodes, FailoverMode, Host,
    Invalid, Password, ProfileName,
};
use crate::model::{DEFAULT_ESL_PORT, NewSwitch, SwitchName, normalise_profiles};
use crate::publish::{PublishSettings, TemplateSource};
use crate::quality::QualitySettings;
use crate::quality::health::BreakerSettings;
use crate::quality::recorder::RecorderSettings;
use crate::quality::signals::WebhookSettings;
use crate::routing::RoutingSettings;
use crate::serve::ConnectionLimits;

/// Flags shared by every command that touches the database.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CommonArgs {
    /// TOML configuration file.
    #[arg(long, env = "TRUNKLINE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Database URL: `sqlite://trunkline.db` (default) or `postgres://user:pass@host/db`.
    #[arg(long, env = "TRUNKLINE_DATABASE_URL", global = true)]
    pub database_url: Option<String>,
}

/// Flags that shape the documents trunkline serves: `serve` uses them, and so do the commands
/// that must agree with what `serve` answers (`route explain`, `tenant create`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DocumentArgs {
    /// Dialplan context trunkline owns besides the tenants' own (default `trunkline`).
    #[arg(long, env = "TRUNKLINE_CONTEXT")]
    pub context: Option<String>,
    /// Failover form: `default` (one document, continue_on_fail) or `exact` (transfer back per leg).
    #[arg(long, env = "TRUNKLINE_FAILOVER_MODE")]
    pub failover_mode: Option<String>,
    /// Platform failover SIP codes, comma-separated (default `404,408,5xx,604,606,608`).
    #[arg(long, env = "TRUNKLINE_FAILOVER_CODES")]
    pub failover_codes: Option<String>,
    /// Directory of the sofia profile and acl templates (default: the ones built into the
    /// binary; `trunkline templates export DIR` writes them out to start from).
    #[arg(long, env = "TRUNKLINE_TEMPLATES")]
    pub templates: Option<PathBuf>,
    /// The platform currency of route and carrier costs, ISO 4217 (default `USD`).
    #[arg(long, env = "TRUNKLINE_CURRENCY")]
    pub currency: Option<String>,
}

/// Flags of `trunkline serve`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long, env = "TRUNKLINE_LISTEN")]
    pub listen: Option<SocketAddr>,
    #[command(flatten)]
    pub documents: DocumentArgs,
    /// HTTP basic-auth user FreeSWITCH must present on /freeswitch/xml.
    #[arg(long, env = "TRUNKLINE_XMLCURL_USER")]
    pub xmlcurl_user: Option<String>,
    /// HTTP basic-auth password FreeSWITCH must present on /freeswitch/xml.
    #[arg(long, env = "TRUNKLINE_XMLCURL_PASSWORD", hide_env_values = true)]
    pub xmlcurl_password: Option<String>,
    /// Client networks allowed on /freeswitch/xml, comma-separated CIDRs (default: any).
    #[arg(long, env = "TRUNKLINE_XMLCURL_ALLOW")]
    pub xmlcurl_allow: Option<String>,
    /// A listener of its own for /freeswitch/xml (default: none, served on --listen).
    #[arg(long, env = "TRUNKLINE_XMLCURL_LISTEN")]
    pub xmlcurl_listen: Option<SocketAddr>,
    /// Log format: `text` or `json`.
    #[arg(long, env = "TRUNKLINE_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Days attempt records are kept (default 7, at least 1).
    #[arg(long, env = "TRUNKLINE_ATTEMPT_RETENTION_DAYS")]
    pub attempt_retention_days: Option<u32>,
    /// `http://…` URL that breaker and gateway signals are POSTed to as JSON.
    #[arg(long, env = "TRUNKLINE_HEALTH_WEBHOOK_URL")]
    pub health_webhook_url: Option<String>,
}

/// The TOML file: every key optional; the same names as the flags, in snake case.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub database_url: Option<String>,
    pub listen: Option<SocketAddr>,
    pub context: Option<String>,
    pub failover_mode: Option<String>,
    pub failover_codes: Option<Vec<String>>,
    pub max_legs: Option<usize>,
    pub currency: Option<String>,
    pub templates: Option<PathBuf>,
    pub xmlcurl_user: Option<String>,
    pub xmlcurl_password: Option<String>,
    pub xmlcurl_allow: Option<Vec<String>>,
    pub xmlcurl_listen: Option<SocketAddr>,
    pub log_format: Option<String>,
    /// Seconds a request head may take, from the connection or its first byte (default 10).
    pub http_header_timeout_seconds: Option<u64>,
    /// Seconds a request body may take after its head (default 30).
    pub http_body_timeout_seconds: Option<u64>,
    /// Seconds a keep-alive connection may wait for its next request (default 60).
    pub http_idle_timeout_seconds: Option<u64>,
    /// Connections each listener holds at once (default 4096).
    pub http_max_connections: Option<usize>,
    /// Seconds between safety-net snapshot reloads (default 60).
    pub snapshot_refresh_seconds: Option<u64>,
    /// Variables for the sofia profile templates (`sip_ip`, `ext_sip_ip`, …).
    #[serde(default)]
    pub template_vars: BTreeMap<String, String>,
    /// FreeSWITCH nodes kept in step over the Event Socket (`[[switches]]`); more can be added
    /// through the API.
    #[serde(default)]
    pub switches: Vec<SwitchConfig>,
    /// Wait after a configuration change before reconciling the nodes (default 500).
    pub esl_debounce_ms: Option<u64>,
    /// Seconds between safety-net reconcile passes per node (default 60).
    pub esl_resync_seconds: Option<u64>,
    /// Seconds a node's lease lasts unless renewed (default 4; renewed every quarter of it).
    pub esl_lease_seconds: Option<u64>,
    /// Days attempt records are kept (default 7, at least 1).
    pub attempt_retention_days: Option<u32>,
    /// The circuit breaker's thresholds for every carrier (`[breaker]`; keys not given keep
    /// their defaults).
    pub breaker: Option<BreakerSettings>,
    /// Thresholds for one carrier, by gateway name (`[breaker_per_gateway.<gateway>]`); keys
    /// not given keep the built-in defaults.
    #[serde(default)]
    pub breaker_per_gateway: BTreeMap<String, BreakerSettings>,
    pub health_webhook_url: Option<String>,
}

/// One `[[switches]]` entry.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchConfig {
    pub name: String,
    pub esl_host: String,
    pub esl_port: Option<u16>,
    pub esl_password: String,
    pub enabled: Option<bool>,
    /// Sofia profiles trunkline manages on the node (default `["external"]`).
    pub profiles: Option<Vec<String>>,
}

impl std::fmt::Debug for SwitchConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SwitchConfig({} at {}:{:?}, password: ***)",
            self.name, self.esl_host, self.esl_port
        )
    }
}

impl SwitchConfig {
    fn parse(&self) -> Result<NewSwitch, ConfigError> {
        let bad = |message: String| ConfigError::Invalid {
            setting: "switches",
            message,
        };
        let name = SwitchName::parse(&self.name).map_err(|e| bad(e.0))?;
        let named = |field: &str, e: Invalid| bad(format!("{name}: {field}: {}", e.0));
        let profiles = self
            .profiles
            .clone()
            .unwrap_or_default()
            .iter()
            .map(|p| ProfileName::parse(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| named("profiles", e))?;
        Ok(NewSwitch {
            esl_host: Host::parse(&self.esl_host).map_err(|e| named("esl_host", e))?,
            esl_port: self.esl_port.unwrap_or(DEFAULT_ESL_PORT),
            esl_password: Password::parse(&self.esl_password).map_err(|_| {
                bad(format!(
                    "{name}: esl_password: printable ASCII without spaces"
                ))
            })?,
            enabled: self.enabled.unwrap_or(true),
            profiles: normalise_profiles(profiles),
            name,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("setting `{setting}`: {message}")]
    Invalid {
        setting: &'static str,
        message: String,
    },
}

fn invalid(setting: &'static str) -> impl Fn(Invalid) -> ConfigError {
    move |e| ConfigError::Invalid {
        setting,
        message: e.0,
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Credentials FreeSWITCH presents on the xml_curl endpoint (`gateway-credentials`).
#[derive(Clone, PartialEq, Eq)]
pub struct BasicCredentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BasicCredentials({}:***)", self.user)
    }
}

/// Everything `serve` needs, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: String,
    pub listen: SocketAddr,
    pub default_context: ContextName,
    pub failover_mode: FailoverMode,
    pub failover_codes: FailoverCodes,
    pub max_legs: usize,
    /// The one currency of every cost and ceiling.
    pub currency: Currency,
    /// The sofia profile and acl templates: built in unless `templates` names a directory.
    pub templates: TemplateSource,
    pub template_vars: BTreeMap<String, String>,
    pub xmlcurl_credentials: Option<BasicCredentials>,
    /// Empty means every client may fetch.
    pub xmlcurl_allow: AllowList,
    /// A listener of its own for the xml_curl endpoint, which then leaves the main one.
    pub xmlcurl_listen: Option<SocketAddr>,
    /// Deadlines and connection bound of every listener.
    pub http: ConnectionLimits,
    pub log_format: LogFormat,
    pub snapshot_refresh: Duration,
    /// Switches declared in the file (stored at start-up, owned by the file).
    pub switches: Vec<NewSwitch>,
    pub esl: EslSettings,
    /// Days attempt records are kept before the recorder prunes them.
    pub attempt_retention_days: u32,
    /// Breaker thresholds, default and per gateway.
    pub quality: QualitySettings,
    pub health_webhook: Option<WebhookSettings>,
}

pub const DEFAULT_DATABASE_URL: &str = "sqlite://trunkline.db";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

impl Settings {
    /// Defaults only: what `trunkline serve` runs with when nothing is configured.
    pub fn defaults() -> Self {
        Self::resolve(
            &CommonArgs::default(),
            &ServeArgs::default(),
            FileConfig::default(),
        )
        .expect("the embedded defaults are valid")
    }

    /// Reads the configuration file ([`config_file`]) and merges flags over it.
    pub fn load(common: &CommonArgs, serve: &ServeArgs) -> Result<Self, ConfigError> {
        let file = match config_file(common) {
            Some(path) => read_file(&path)?,
            None => FileConfig::default(),
        };
        Self::resolve(common, serve, file)
    }

    fn resolve(
        common: &CommonArgs,
        serve: &ServeArgs,
        file: FileConfig,
    ) -> Result<Self, ConfigError> {
        let database_url = common
            .database_url
            .clone()
            .or(file.database_url)
            .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_string());
        let listen = serve
            .listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default"));
        let default_context = ContextName::parse(
            serve
                .documents
                .context
                .as_deref()
                .or(file.context.as_deref())
                .unwrap_or("trunkline"),
        )
        .map_err(invalid("context"))?;
        let failover_mode = FailoverMode::parse(
            serve
                .documents
                .failover_mode
                .as_deref()
                .or(file.failover_mode.as_deref())
                .unwrap_or("default"),
        )
        .map_err(invalid("failover_mode"))?;
        let codes: Option<Vec<String>> =
            match (&serve.documents.failover_codes, file.failover_codes) {
                (Some(flag), _) => Some(split_list(flag)),
                (None, list) => list,
            };
        let failover_codes = match codes {
            None => FailoverCodes::platform_default(),
            Some(codes) => codes
                .iter()
                .map(|c| FailoverCode::parse(c))
                .collect::<Result<Vec<_>, _>>()
                .and_then(FailoverCodes::new)
                .map_err(invalid("failover_codes"))?,
        };
        let max_legs = file.max_legs.unwrap_or(10);
        if !(1..=32).contains(&max_legs) {
            return Err(ConfigError::Invalid {
                setting: "max_legs",
                message: "must be between 1 and 32".into(),
            });
        }
        let currency = Currency::parse(
            serve
                .documents
                .currency
                .as_deref()
                .or(file.currency.as_deref())
                .unwrap_or("USD"),
        )
        .map_err(invalid("currency"))?;
        let xmlcurl_credentials = match (
            serve.xmlcurl_user.clone().or(file.xmlcurl_user),
            serve.xmlcurl_password.clone().or(file.xmlcurl_password),
        ) {
            (Some(user), Some(password)) if !user.is_empty() && !user.contains(':') => {
                Some(BasicCredentials { user, password })
            }
            (None, None) => None,
            _ => {
                return Err(ConfigError::Invalid {
                    setting: "xmlcurl_user",
                    message: "set both xmlcurl_user (no ':') and xmlcurl_password, or neither"
                        .into(),
                });
            }
        };
        let allow: Vec<String> = match (&serve.xmlcurl_allow, file.xmlcurl_allow) {
            (Some(flag), _) => split_list(flag),
            (None, Some(list)) => list,
            (None, None) => Vec::new(),
        };
        let xmlcurl_allow = allow
            .iter()
            .map(|c| Cidr::parse(c))
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid("xmlcurl_allow"))?;
        let log_format = match serve
            .log_format
            .as_deref()
            .or(file.log_format.as_deref())
            .unwrap_or("text")
        {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            _ => {
                return Err(ConfigError::Invalid {
                    setting: "log_format",
                    message: "must be text or json".into(),
                });
            }
        };
        let refresh = file.snapshot_refresh_seconds.unwrap_or(60);
        if refresh == 0 {
            return Err(ConfigError::Invalid {
                setting: "snapshot_refresh_seconds",
                message: "must be at least 1".into(),
            });
        }
        let switches = file
            .switches
            .iter()
            .map(SwitchConfig::parse)
            .collect::<Result<Vec<_>, _>>()?;
        let mut names: Vec<&SwitchName> = switches.iter().map(|s| &s.name).collect();
        names.sort();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Err(ConfigError::Invalid {
                setting: "switches",
                message: "two switches have the same name".into(),
            });
        }
        let mut esl = EslSettings::default();
        if let Some(ms) = file.esl_debounce_ms {
            esl.debounce = Duration::from_millis(ms);
        }
        if let Some(secs) = file.esl_resync_seconds {
            if secs == 0 {
                return Err(ConfigError::Invalid {
                    setting: "esl_resync_seconds",
                    message: "must be at least 1".into(),
                });
            }
            esl.resync_every = Duration::from_secs(secs);
        }
        if let Some(secs) = file.esl_lease_seconds {
            if !(2..=300).contains(&secs) {
                return Err(ConfigError::Invalid {
                    setting: "esl_lease_seconds",
                    message: "must be 2 to 300".into(),
                });
            }
            esl.lease_ttl = Duration::from_secs(secs);
        }
        let attempt_retention_days = serve
            .attempt_retention_days
            .or(file.attempt_retention_days)
            .unwrap_or(7);
        // Ten years: far beyond any sensible retention, and the cut-off stays a valid time.
        if !(1..=3650).contains(&attempt_retention_days) {
            return Err(ConfigError::Invalid {
                setting: "attempt_retention_days",
                message: "must be 1 to 3650".into(),
            });
        }
        let quality = QualitySettings {
            breaker: file.breaker.unwrap_or_default(),
            per_gateway: file.breaker_per_gateway.into_iter().collect(),
        };
        for (name, breaker) in std::iter::once(("breaker", &quality.breaker)).chain(
            quality
                .per_gateway
                .values()
                .map(|b| ("breaker_per_gateway", b)),
        ) {
            breaker.check().map_err(|message| ConfigError::Invalid {
                setting: name,
                message,
            })?;
        }
        let health_webhook = match serve.health_webhook_url.clone().or(file.health_webhook_url) {
            None => None,
            Some(url) if url.starts_with("http://") && url.len() > "http://".len() => {
                Some(WebhookSettings::new(url))
            }
            Some(_) => {
                return Err(ConfigError::Invalid {
                    setting: "health_webhook_url",
                    message: "must be an http:// URL (this build has no TLS client)".into(),
                });
            }
        };
        let xmlcurl_listen = serve.xmlcurl_listen.or(file.xmlcurl_listen);
        if xmlcurl_listen == Some(listen) {
            return Err(ConfigError::Invalid {
                setting: "xmlcurl_listen",
                message: format!("must differ from listen ({listen})"),
            });
        }
        let seconds = |setting: &'static str, value: Option<u64>, default: Duration| match value {
            None => Ok(default),
            Some(secs) if (1..=3600).contains(&secs) => Ok(Duration::from_secs(secs)),
            Some(_) => Err(ConfigError::Invalid {
                setting,
                message: "must be 1 to 3600 seconds".into(),
            }),
        };
        let defaults = ConnectionLimits::default();
        let http = ConnectionLimits {
            header_timeout: seconds(
                "http_header_timeout_seconds",
                file.http_header_timeout_seconds,
                defaults.header_timeout,
            )?,
            body_timeout: seconds(
                "http_body_timeout_seconds",
                file.http_body_timeout_seconds,
                defaults.body_timeout,
            )?,
            idle_timeout: seconds(
                "http_idle_timeout_seconds",
                file.http_idle_timeout_seconds,
                defaults.idle_timeout,
            )?,
            max_connections: match file.http_max_connections {
                None => defaults.max_connections,
                Some(n) if (16..=1_000_000).contains(&n) => n,
                Some(_) => {
                    return Err(ConfigError::Invalid {
                        setting: "http_max_connections",
                        message: "must be 16 to 1000000".into(),
                    });
                }
            },
        };
        Ok(Settings {
            database_url,
            listen,
            xmlcurl_listen,
            http,
            default_context,
            failover_mode,
            failover_codes,
            max_legs,
            currency,
            templates: serve
                .documents
                .templates
                .clone()
                .or(file.templates)
                .map_or(TemplateSource::BuiltIn, TemplateSource::Directory),
            template_vars: with_default_template_vars(file.template_vars),
            xmlcurl_credentials,
            xmlcurl_allow: AllowList::new(xmlcurl_allow),
            log_format,
            snapshot_refresh: Duration::from_secs(refresh),
            switches,
            esl,
            attempt_retention_days,
            quality,
            health_webhook,
        })
    }
}

impl Settings {
    /// What publishing needs of the settings: `serve` and `route explain` must agree on it.
    pub fn publish(&self) -> PublishSettings {
        PublishSettings {
            default_context: self.default_context.clone(),
            failover_mode: self.failover_mode,
            routing: self.routing(),
        }
    }

    /// How the attempt recorder batches and prunes: the defaults, with the configured
    /// retention.
    pub fn recorder(&self) -> RecorderSettings {
        RecorderSettings {
            retention: Duration::from_secs(u64::from(self.attempt_retention_days) * 24 * 3600),
            ..RecorderSettings::default()
        }
    }

    /// What routing needs of the settings.
    pub fn routing(&self) -> RoutingSettings {
        RoutingSettings {
            default_failover_codes: self.failover_codes.clone(),
            max_legs: self.max_legs,
            currency: self.currency.clone(),
        }
    }
}

/// The database URL for commands other than `serve` (migrate, tenant, token, route).
pub fn database_url(common: &CommonArgs) -> Result<String, ConfigError> {
    if let Some(url) = &common.database_url {
        return Ok(url.clone());
    }
    let file = match config_file(common) {
        Some(path) => read_file(&path)?,
        None => FileConfig::default(),
    };
    Ok(file
        .database_url
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_string()))
}

/// Where the package installs the configuration; read when no `--config` is given.
pub const SYSTEM_CONFIG: &str = "/etc/trunkline/trunkline.toml";

/// The configuration file in effect: `--config` / `TRUNKLINE_CONFIG`, else [`SYSTEM_CONFIG`]
/// when it exists (so `trunkline token create` on an installed system works on the service's
/// database with no flags), else none.
pub fn config_file(common: &CommonArgs) -> Option<PathBuf> {
    common.config.clone().or_else(|| {
        let system = Path::new(SYSTEM_CONFIG);
        system.exists().then(|| system.to_path_buf())
    })
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.message().to_string(),
    })
}

/// The shipped `external` template needs the node's addresses. Defaulting them to loopback
/// lets `trunkline serve` start with no set-up; a real node sets them in `[template_vars]`.
fn with_default_template_vars(mut vars: BTreeMap<String, String>) -> BTreeMap<String, String> {
    for key in ["sip_ip", "rtp_ip", "ext_sip_ip", "ext_rtp_ip"] {
        vars.entry(key.to_string())
            .or_insert_with(|| "127.0.0.1".to_string());
    }
    vars
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_start_on_sqlite_and_loopback() {
        let s = Settings::defaults();
        assert_eq!(s.database_url, "sqlite://trunkline.db");
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.default_context.as_str(), "trunkline");
        assert_eq!(s.failover_codes, FailoverCodes::platform_default());
        assert!(s.xmlcurl_credentials.is_none() && s.xmlcurl_allow.is_empty());
        assert!(s.switches.is_empty());
        assert_eq!(s.recorder().retention, Duration::from_secs(7 * 24 * 3600));
    }

    #[test]
    fn the_attempt_retention_flag_overrides_the_file() {
        let file: FileConfig = toml::from_str("attempt_retention_days = 30\n").unwrap();
        let s = Settings::resolve(&CommonArgs::default(), &ServeArgs::default(), file).unwrap();
        assert_eq!(s.recorder().retention, Duration::from_secs(30 * 24 * 3600));
        let file: FileConfig = toml::from_str("attempt_retention_days = 30\n").unwrap();
        let serve = ServeArgs {
            attempt_retention_days: Some(2),
            ..Default::default()
        };
        let s = Settings::resolve(&CommonArgs::default(), &serve, file).unwrap();
        assert_eq!(s.attempt_retention_days, 2);
    }

    #[test]
    fn the_lease_length_is_a_setting_within_bounds() {
        let resolve = |text: &str| {
            let file: FileConfig = toml::from_str(text).unwrap();
            Settings::resolve(&CommonArgs::default(), &ServeArgs::default(), file)
        };
        let s = resolve("esl_lease_seconds = 10\n").unwrap();
        assert_eq!(s.esl.lease_ttl, Duration::from_secs(10));
        for bad in ["esl_lease_seconds = 1\n", "esl_lease_seconds = 301\n"] {
            let err = resolve(bad).unwrap_err().to_string();
            assert!(err.contains("esl_lease_seconds"), "{err}");
        }
    }

    #[test]
    fn switches_are_read_from_the_file_with_defaults() {
        let file: FileConfig = toml::from_str(
            "esl_debounce_ms = 50\n[[switches]]\nname = \"fs1\"\nesl_host = \"10.0.0.5\"\nesl_password = \"s3cret\"\n\n[[switches]]\nname = \"fs2\"\nesl_host = \"fs2.example\"\nesl_port = 8022\nesl_password = \"x\"\nenabled = false\nprofiles = [\"carriers\", \"external\"]\n",
        )
        .unwrap();
        let s = Settings::resolve(&CommonArgs::default(), &ServeArgs::default(), file).unwrap();
        assert_eq!(s.esl.debounce, Duration::from_millis(50));
        assert_eq!(s.esl.lease_ttl, Duration::from_secs(4), "the default lease");
        assert_eq!(s.switches.len(), 2);
        assert_eq!(s.switches[0].esl_port, 8021);
        assert!(s.switches[0].enabled);
        assert_eq!(s.switches[0].profiles, [ProfileName::external()]);
        assert_eq!(s.switches[1].profiles.len(), 2);
        assert!(!format!("{:?}", s.switches).contains("s3cret"));
    }

    #[test]
    fn flags_override_the_file_and_the_file_overrides_defaults() {
        let file: FileConfig = toml::from_str(
            "database_url = \"sqlite://file.db\"\nlisten = \"127.0.0.1:9000\"\nfailover_codes = [\"503\"]\n",
        )
        .unwrap();
        let serve = ServeArgs {
            listen: Some("127.0.0.1:9001".parse().unwrap()),
            ..Default::default()
        };
        let s = Settings::resolve(&CommonArgs::default(), &serve, file).unwrap();
        assert_eq!(s.database_url, "sqlite://file.db");
        assert_eq!(s.listen.port(), 9001);
        assert!(s.failover_codes.matches(503) && !s.failover_codes.matches(404));
    }

    #[test]
    fn bad_settings_name_the_setting() {
        let serve = ServeArgs {
            documents: DocumentArgs {
                failover_codes: Some("404,sip:503".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let err =
            Settings::resolve(&CommonArgs::default(), &serve, FileConfig::default()).unwrap_err();
        assert!(
            err.to_string().starts_with("setting `failover_codes`"),
            "{err}"
        );

        let serve = ServeArgs {
            xmlcurl_user: Some("fs".into()),
            ..Default::default()
        };
        let err =
            Settings::resolve(&CommonArgs::default(), &serve, FileConfig::default()).unwrap_err();
        assert!(err.to_string().contains("xmlcurl_user"), "{err}");

        let file: FileConfig = toml::from_str(
            "[[switches]]\nname = \"fs1\"\nesl_host = \"127.0.0.1\"\nesl_password = \"Clue Con\"\n",
        )
        .unwrap();
        let err =
            Settings::resolve(&CommonArgs::default(), &ServeArgs::default(), file).unwrap_err();
        assert!(err.to_string().contains("fs1: esl_password"), "{err}");
        assert!(
            !err.to_string().contains("Clue"),
            "the password is never echoed: {err}"
        );

        for bad in [
            "attempt_retention_days = 0\n",
            "attempt_retention_days = 3651\n",
        ] {
            let file: FileConfig = toml::from_str(bad).unwrap();
            let err =
                Settings::resolve(&CommonArgs::default(), &ServeArgs::default(), file).unwrap_err();
            assert!(err.to_string().contains("attempt_retention_days"), "{err}");
        }

        let unknown = toml::from_str::<FileConfig>("lisen = \"x\"").unwrap_err();
        assert!(unknown.message().contains("lisen"));
    }
}
