//! `/v1.0/providers` and `/v1.0/routes`: VoIPBIN's Provider and Route API, so that scripts
//! written for VoIPBIN work unchanged against trunkline. A provider is a platform carrier and a
//! VoIPBIN route a prefix route: the handlers translate VoIPBIN's fields into the `/api/v1`
//! bodies and go through the very same operations (`carriers::create`, `routes::update`, …), so
//! validation, gateways, the Event Socket and archiving behave exactly as there. Settings
//! VoIPBIN has no field for keep their defaults on create and their values on PUT.
//!
//! The wire format is VoIPBIN's: timestamps `2022-10-22 16:16:16.874761` (UTC, microseconds),
//! `9999-01-01 00:00:00.000000` for "not yet", lists as `{"result": [...], "next_page_token":
//! "<tm_create of the last item>"}` newest first, paged with `page_size` and `page_token`.
//! Errors keep the API's shape (`error.rs`), with VoIPBIN's field names.
//!
//! Authentication: a VoIPBIN client sends its token as `?token=`. `token_from_query` moves it
//! into the `Authorization` header before anything else reads the request, on `/v1.0` only;
//! the request span records the path, never the query (`app.rs`), so the token reaches no log,
//! metric or error.

pub mod providers;
pub mod routes;

use axum::extract::Request;
use axum::http::{HeaderValue, Uri, header};
use axum::middleware::{Next, from_fn};
use axum::response::Response;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;

use super::error::ApiError;
use super::page::{DEFAULT_LIMIT, MAX_LIMIT};
use crate::api::ApiState;
use crate::store::NewestFirst;

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .merge(providers::router())
        .merge(routes::router())
        .layer(from_fn(token_from_query))
}

/// Moves `token` from the query string into `Authorization: Bearer` (unless the request has
/// that header already) and drops it from the URI, so that no handler, extractor or error
/// sees it.
async fn token_from_query(mut request: Request, next: Next) -> Response {
    if let Some(query) = request.uri().query() {
        let mut token = None;
        let mut kept = form_urlencoded::Serializer::new(String::new());
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            if name == "token" {
                token = Some(value.into_owned());
            } else {
                kept.append_pair(&name, &value);
            }
        }
        if let Some(token) = token {
            let kept = kept.finish();
            let path_and_query = if kept.is_empty() {
                request.uri().path().to_string()
            } else {
                format!("{}?{kept}", request.uri().path())
            };
            if let Ok(uri) = Uri::builder().path_and_query(path_and_query).build() {
                *request.uri_mut() = uri;
            }
            // A token that cannot be a header value cannot be a valid token either: the
            // request then carries none and is refused as unauthenticated.
            if !request.headers().contains_key(header::AUTHORIZATION)
                && let Ok(mut value) = HeaderValue::from_str(&format!("Bearer {token}"))
            {
                value.set_sensitive(true);
                request.headers_mut().insert(header::AUTHORIZATION, value);
            }
        }
    }
    next.run(request).await
}

/// VoIPBIN's timestamp layout.
const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.6f";
/// VoIPBIN's "not yet" (`tm_delete` of a live object, `tm_update` of one never changed).
pub const NOT_YET: &str = "9999-01-01 00:00:00.000000";

/// A time as VoIPBIN writes it.
pub fn time(t: DateTime<Utc>) -> String {
    t.format(TIME_FORMAT).to_string()
}

/// A time that may not have happened yet.
pub fn time_or_not_yet(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| NOT_YET.to_string(), time)
}

/// `tm_update`: "not yet" until the object first changes.
pub fn updated(created: DateTime<Utc>, updated: DateTime<Utc>) -> String {
    time_or_not_yet((updated != created).then_some(updated))
}

/// A VoIPBIN list: one page, newest first, and the token of the next.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ResultList<T> {
    pub result: Vec<T>,
    /// The `tm_create` of the last item; `""` after an empty page.
    pub next_page_token: String,
}

impl<T> ResultList<T> {
    /// The page of `items` (newest first) as `view` shows them.
    pub fn of<S>(
        items: Vec<S>,
        created: impl Fn(&S) -> DateTime<Utc>,
        view: impl Fn(S) -> T,
    ) -> Self {
        let next_page_token = items.last().map(|i| time(created(i))).unwrap_or_default();
        ResultList {
            result: items.into_iter().map(view).collect(),
            next_page_token,
        }
    }
}

/// VoIPBIN's paging parameters (`token` never reaches here: `token_from_query`).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct Paging {
    /// At most this many items (1 to 500, default 100).
    pub page_size: Option<u32>,
    /// The `next_page_token` of the page before: items created before that time.
    pub page_token: Option<String>,
}

impl Paging {
    pub fn request(&self) -> Result<NewestFirst, ApiError> {
        let limit = self.page_size.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::field(
                "page_size",
                format!("must be between 1 and {MAX_LIMIT}"),
            ));
        }
        let created_before = match self.page_token.as_deref() {
            None | Some("") => None,
            Some(token) => Some(
                NaiveDateTime::parse_from_str(token, TIME_FORMAT)
                    .map_err(|_| {
                        ApiError::field(
                            "page_token",
                            "must be a next_page_token (YYYY-MM-DD hh:mm:ss.ffffff)",
                        )
                    })?
                    .and_utc(),
            ),
        };
        Ok(NewestFirst {
            limit,
            created_before,
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn times_are_written_and_read_as_voipbin_does() {
        let t = Utc.with_ymd_and_hms(2022, 10, 22, 16, 16, 16).unwrap()
            + chrono::Duration::microseconds(874_761);
        assert_eq!(time(t), "2022-10-22 16:16:16.874761");
        assert_eq!(updated(t, t), NOT_YET);
        assert_eq!(time_or_not_yet(None), NOT_YET);
        let paging = Paging {
            page_size: None,
            page_token: Some("2022-10-22 16:16:16.874761".into()),
        };
        assert_eq!(paging.request().unwrap().created_before, Some(t));
        for (size, token) in [
            (Some(0), None),
            (Some(501), None),
            (None, Some("yesterday")),
        ] {
            let paging = Paging {
                page_size: size,
                page_token: token.map(String::from),
            };
            assert!(paging.request().is_err(), "{paging:?}");
        }
    }
}
