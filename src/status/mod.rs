//! The status page: what an operator on call looks at. Server-rendered HTML under `/status`
//! (nodes, every carrier's gateway on every node, and route explain), behind a login with an
//! API token kept in an `HttpOnly`, `SameSite=Strict` cookie. Every page is read-only; the only
//! POSTs (log in, log out) must come from the page itself. A small script refreshes the tables.
//!
//! It reads what the API reads (the published snapshot, the live Event Socket view, the store's
//! switch list) and is scoped the same way: a tenant's token sees its own carriers and explains
//! its own calls; only a platform admin sees the nodes. The views are built in [`view`].

mod view;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Form, Query, Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::access::{ExplainSources, Principal, explain_for};
use crate::api::error::ApiError;
use crate::esl::live::LiveState;
use crate::model::Scope;
use crate::publish::Published;
use crate::quality::Quality;
use crate::store::Store;

pub use view::PAGE_SIZE;

/// The most of a form the page reads: a login form is a token of 67 characters. The form is read
/// before anyone is authenticated, so an anonymous client can make the server hold this much
/// per connection until the body deadline, and no more.
const MAX_FORM_BODY: usize = 4 * 1024;

/// The cookie holding the token.
const COOKIE: &str = "trunkline_session";
/// How long a login lasts in the browser.
const SESSION_SECONDS: u32 = 12 * 3600;

/// What the status page shows, and the store it checks logins against. Cheap to clone.
#[derive(Clone)]
pub struct StatusState {
    /// Tokens (the login) and the switch list.
    pub store: Store,
    /// Carriers and routes as FreeSWITCH gets them; explain answers from it.
    pub published: Arc<ArcSwap<Published>>,
    /// Every node's connection and gateways, as the Event Socket sessions last saw them.
    pub live: Arc<LiveState>,
    /// The carriers' breakers, which explain's order depends on.
    pub quality: Arc<Quality>,
}

pub fn router(state: StatusState) -> Router {
    Router::new()
        .route("/status", get(overview))
        .route("/status/login", get(login_form).post(log_in))
        .route("/status/logout", axum::routing::post(log_out))
        .route("/status/explain", get(explain_page))
        .route("/status/status.js", get(script))
        .route("/status/status.css", get(style))
        .layer(middleware::from_fn(security_headers))
        .layer(DefaultBodyLimit::max(MAX_FORM_BODY))
        .with_state(state)
}

/// What a browser may do with these pages: nothing from elsewhere (scripts, styles, forms,
/// frames), nothing cached, no referrer.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The session's principal, or the way to the login form.
async fn session(state: &StatusState, headers: &HeaderMap) -> Result<Principal, Response> {
    let token = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='));
    match token {
        Some(token) => Principal::from_secret(&state.store, token)
            .await
            .map_err(|_| Redirect::to("/status/login").into_response()),
        None => Err(Redirect::to("/status/login").into_response()),
    }
}

/// Log in and log out change state, so they must come from these pages: a browser names the
/// page a form was sent from (`Origin`, `Sec-Fetch-Site`), and anything from another site is
/// refused. (The cookie is `SameSite=Strict` besides.)
fn same_origin(headers: &HeaderMap, uri: &Uri) -> bool {
    let from_here = |site: &str| matches!(site, "same-origin" | "none");
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return from_here(site);
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or(uri.authority().map(|a| a.as_str()));
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(origin) => host.is_some_and(|h| {
            origin
                .split_once("://")
                .is_some_and(|(_, authority)| authority == h)
        }),
    }
}

fn page(status: StatusCode, html: Result<String, minijinja::Error>) -> Response {
    match html {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "status page template");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the status page failed; see the log\n",
            )
                .into_response()
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct OverviewQuery {
    #[serde(default)]
    q: String,
    page: Option<usize>,
}

async fn overview(
    State(state): State<StatusState>,
    headers: HeaderMap,
    Query(query): Query<OverviewQuery>,
) -> Response {
    let principal = match session(&state, &headers).await {
        Ok(p) => p,
        Err(to_login) => return to_login,
    };
    if let Err(e) = principal.require(Scope::CarriersRead) {
        return page(
            StatusCode::FORBIDDEN,
            view::message(&principal, &ApiError::from(e).describe()),
        );
    }
    // Every principal sees its carriers' gateways on every node; only a platform admin gets
    // the nodes table itself (`view::overview`).
    let nodes = match state.store.list_switches().await {
        Ok(switches) => switches,
        Err(e) => {
            let e = ApiError::from(e);
            return page(e.status(), view::message(&principal, &e.describe()));
        }
    };
    let published = state.published.load();
    page(
        StatusCode::OK,
        view::overview(
            &principal,
            &published,
            &nodes,
            &state.live,
            &query.q,
            query.page.unwrap_or(1),
        ),
    )
}

async fn login_form(State(state): State<StatusState>, headers: HeaderMap) -> Response {
    if session(&state, &headers).await.is_ok() {
        return Redirect::to("/status").into_response();
    }
    page(StatusCode::OK, view::login(None))
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn log_in(
    State(state): State<StatusState>,
    headers: HeaderMap,
    uri: Uri,
    Form(form): Form<LoginForm>,
) -> Response {
    if !same_origin(&headers, &uri) {
        return (StatusCode::FORBIDDEN, "cross-site login refused\n").into_response();
    }
    let token = form.token.trim();
    if Principal::from_secret(&state.store, token).await.is_err() {
        return page(
            StatusCode::UNAUTHORIZED,
            view::login(Some("That token is not valid (or was revoked).")),
        );
    }
    let cookie = format!(
        "{COOKIE}={token}; Path=/status; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECONDS}"
    );
    let mut response = Redirect::to("/status").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

async fn log_out(headers: HeaderMap, uri: Uri) -> Response {
    if !same_origin(&headers, &uri) {
        return (StatusCode::FORBIDDEN, "cross-site logout refused\n").into_response();
    }
    let mut response = Redirect::to("/status/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "trunkline_session=; Path=/status; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    response
}

async fn explain_page(
    State(state): State<StatusState>,
    headers: HeaderMap,
    Query(form): Query<view::ExplainForm>,
) -> Response {
    let principal = match session(&state, &headers).await {
        Ok(p) => p,
        Err(to_login) => return to_login,
    };
    let Some(query) = form.query() else {
        return page(StatusCode::OK, view::explain(&principal, &form, None, None));
    };
    let query = match query {
        Ok(q) => q,
        Err(e) => {
            return page(
                StatusCode::UNPROCESSABLE_ENTITY,
                view::explain(&principal, &form, None, Some(&e)),
            );
        }
    };
    let published = state.published.load();
    let health = state.quality.view();
    let sources = ExplainSources {
        store: &state.store,
        live: &state.live,
        published: &published,
        health: &health,
    };
    let rendered = explain_for(sources, &principal, query, |explanation| {
        view::explain(&principal, &form, Some(explanation), None)
    })
    .await
    .map_err(ApiError::from);
    match rendered {
        Ok(html) => page(StatusCode::OK, html),
        Err(e) => page(
            e.status(),
            view::explain(&principal, &form, None, Some(&e.describe())),
        ),
    }
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("assets/status.js"),
    )
}

async fn style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("assets/status.css"),
    )
}
