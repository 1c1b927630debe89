//! Breakers opening and closing, gateways going down and coming up: each is logged, counted
//! (`trunkline_health_signals_total{kind}`) and, when a webhook is configured, POSTed to it as
//! JSON by a background task with retries. Sending never blocks and never waits: a signal the
//! webhook queue has no room for is counted as dropped, and the call path never sees any of it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalKind {
    BreakerOpened,
    BreakerClosed,
    GatewayDown,
    GatewayUp,
}

impl SignalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SignalKind::BreakerOpened => "breaker_opened",
            SignalKind::BreakerClosed => "breaker_closed",
            SignalKind::GatewayDown => "gateway_down",
            SignalKind::GatewayUp => "gateway_up",
        }
    }
}

/// One signal, as logged and as the webhook's JSON body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Signal {
    pub kind: SignalKind,
    pub carrier_id: Option<Uuid>,
    /// The carrier's name, for a breaker.
    pub carrier: Option<String>,
    pub gateway: String,
    /// The node that reported it, for a gateway.
    pub switch: Option<String>,
    /// Why a breaker opened.
    pub detail: Option<String>,
    pub at: DateTime<Utc>,
}

/// Where signals go: the log and the counter always, the webhook queue when there is one.
#[derive(Clone, Default)]
pub struct Signals {
    webhook: Option<mpsc::Sender<Signal>>,
}

/// Signals waiting for the webhook; beyond this they are dropped and counted.
const QUEUE: usize = 1024;

impl Signals {
    /// Log and count only.
    pub fn log_only() -> Signals {
        Signals { webhook: None }
    }

    pub fn send(&self, signal: Signal) {
        tracing::warn!(
            kind = signal.kind.as_str(),
            carrier = signal.carrier.as_deref().unwrap_or(""),
            gateway = %signal.gateway,
            switch = signal.switch.as_deref().unwrap_or(""),
            detail = signal.detail.as_deref().unwrap_or(""),
            "carrier health changed"
        );
        metrics::counter!("trunkline_health_signals_total", "kind" => signal.kind.as_str())
            .increment(1);
        if let Some(queue) = &self.webhook
            && queue.try_send(signal).is_err()
        {
            metrics::counter!("trunkline_webhook_dropped_total").increment(1);
        }
    }
}

/// How the webhook is called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// `http://…` (this build has no TLS client: put a local relay in front of an https
    /// endpoint).
    pub url: String,
    pub timeout: Duration,
    /// Tries per signal, the first included.
    pub tries: u32,
    /// Wait before the second try; doubled each time.
    pub backoff: Duration,
}

impl WebhookSettings {
    pub fn new(url: String) -> WebhookSettings {
        WebhookSettings {
            url,
            timeout: Duration::from_secs(5),
            tries: 5,
            backoff: Duration::from_millis(500),
        }
    }
}

/// Starts the webhook sender; returns the [`Signals`] that feed it.
pub fn spawn_webhook(
    settings: WebhookSettings,
    mut stop: watch::Receiver<bool>,
) -> (Signals, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Signal>(QUEUE);
    // A receiver that redirects gets no second request anywhere: following it would send the
    // signal, and whatever it carries, to wherever the redirect points. A 3xx is a failed try.
    let client = reqwest::Client::builder()
        .timeout(settings.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client without TLS always builds");
    let task = tokio::spawn(async move {
        loop {
            let signal = tokio::select! {
                _ = stop.changed() => return,
                s = rx.recv() => match s {
                    Some(s) => s,
                    None => return,
                },
            };
            deliver(&client, &settings, &signal, &mut stop).await;
        }
    });
    (Signals { webhook: Some(tx) }, task)
}

/// POSTs one signal until a 2xx, `tries` times at most, backing off in between.
async fn deliver(
    client: &reqwest::Client,
    settings: &WebhookSettings,
    signal: &Signal,
    stop: &mut watch::Receiver<bool>,
) {
    let mut wait = settings.backoff;
    for attempt in 1..=settings.tries {
        let outcome = client.post(&settings.url).json(signal).send().await;
        let error = match outcome {
            Ok(r) if r.status().is_success() => {
                metrics::counter!("trunkline_webhook_delivered_total").increment(1);
                return;
            }
            Ok(r) => format!("answered {}", r.status()),
            Err(e) => e.to_string(),
        };
        tracing::warn!(
            attempt,
            error,
            kind = signal.kind.as_str(),
            "webhook not delivered"
        );
        if attempt == settings.tries {
            break;
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait *= 2;
    }
    metrics::counter!("trunkline_webhook_failed_total").increment(1);
}
