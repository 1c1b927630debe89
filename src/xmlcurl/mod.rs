//! `POST /freeswitch/xml`: the mod_xml_curl endpoint (the hot path). It reads the form body,
//! answers from the current [`Published`] snapshot (never the database) and always replies
//! 200 with a document FreeSWITCH understands — except to clients that fail the configured
//! basic auth (401) or IP allow-list (403), which are not the operator's FreeSWITCH.
//!
//! mod_xml_curl opens a new connection per fetch and has no compression support (FREESWITCH.md
//! §1.1), so the answer is sent plain; an oversized body is answered with the "not found"
//! document rather than an error page.

pub mod answer;
pub mod explain;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use sha2::{Digest, Sha256};

use self::answer::Outcome;
use crate::config::BasicCredentials;
use crate::model::AllowList;
use crate::publish::Published;
use crate::quality::HealthViews;

/// Largest fetch body read. A real dialplan POST is ~6 KB (every channel variable, FREESWITCH.md
/// header), tens of KB with many variables.
pub const MAX_FETCH_BODY: usize = 512 * 1024;

/// What a fetch is answered from: nothing here reaches the database or the Event Socket.
#[derive(Clone)]
pub struct FetchState {
    /// The last published snapshot and documents.
    pub published: Arc<ArcSwap<Published>>,
    /// The carriers' health (breakers, gateways the nodes report DOWN), which orders the legs.
    pub health: HealthViews,
    /// Applied per request only where the endpoint shares the main listener: its own listener
    /// refuses other addresses as it accepts them (`serve`), so this is then empty.
    pub allow: AllowList,
    /// mod_xml_curl's basic auth, when configured.
    pub credentials: Option<BasicCredentials>,
}

pub async fn handle_fetch(State(state): State<FetchState>, request: Request) -> Response {
    let started = Instant::now();
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    // A request without a peer address (an in-process test) passes only an empty list.
    let admitted = state.allow.is_empty() || peer.is_some_and(|ip| state.allow.permits(ip));
    if !admitted {
        metrics::counter!("trunkline_xmlcurl_rejected_total", "why" => "ip").increment(1);
        tracing::warn!(?peer, "xml_curl fetch from a client outside xmlcurl_allow");
        return StatusCode::FORBIDDEN.into_response();
    }
    if let Some(expected) = &state.credentials
        && !basic_auth_matches(request.headers(), expected)
    {
        metrics::counter!("trunkline_xmlcurl_rejected_total", "why" => "auth").increment(1);
        tracing::warn!(?peer, "xml_curl fetch with missing or wrong credentials");
        return (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"trunkline\""),
            )],
        )
            .into_response();
    }
    let body = match axum::body::to_bytes(request.into_body(), MAX_FETCH_BODY).await {
        Ok(b) => b,
        Err(_) => {
            tracing::warn!(
                ?peer,
                "xml_curl body unreadable or over {MAX_FETCH_BODY} bytes"
            );
            Bytes::new()
        }
    };
    let published = state.published.load();
    let health = state.health.load();
    let answer = answer::answer(&published, &health, &body, chrono::Utc::now());
    drop((published, health));
    let (section, outcome) = (answer.section.as_str(), answer.outcome.as_str());
    match &answer.reason {
        // What trunkline does not serve (another module's configuration, a context it does not
        // own) is asked at every load and on every call there: nothing for an operator to do.
        Some(reason) if answer.outcome == Outcome::NotFound => {
            tracing::debug!(section, %reason, "xml_curl answer: not found");
        }
        Some(reason) => {
            tracing::info!(section, outcome, %reason, "xml_curl answer");
        }
        None => {}
    }
    metrics::counter!("trunkline_xmlcurl_requests_total", "section" => section, "outcome" => outcome)
        .increment(1);
    if answer.health_moved {
        metrics::counter!("trunkline_xmlcurl_health_moved_total").increment(1);
    }
    metrics::histogram!("trunkline_xmlcurl_duration_seconds", "section" => section)
        .record(started.elapsed().as_secs_f64());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"))],
        Body::from(answer.xml),
    )
        .into_response()
}

/// Compares digests, not the strings, so the comparison time does not depend on how much of
/// the secret matched.
fn basic_auth_matches(headers: &HeaderMap, expected: &BasicCredentials) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
        .and_then(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
        })
    else {
        return false;
    };
    let want = format!("{}:{}", expected.user, expected.password);
    Sha256::digest(&given) == Sha256::digest(want.as_bytes())
}
