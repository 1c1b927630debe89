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
//! Errors keep the API's shape (`error.rs`), with VoIPBIN's field names and status codes.
//!
//! Authentication: a VoIPBIN client sends its token as `?token=`, or an access key as
//! `?accesskey=` (VoIPBIN's long-lived keys; the `vn` client adds it to every request; here
//! both are trunkline tokens). `token_from_query` moves it into the `Authorization` header
//! before anything else reads the request, on `/v1.0` only, and refuses a request carrying two
//! different credentials; the request span records the path, never the query (`app.rs`), so
//! the credential reaches no log, metric or error.
//!
//! Status codes: VoIPBIN declares 400 for every refused request, so `/v1.0` answers 400 where
//! `/api/v1` answers 422 (`token_from_query`); every other status is the API's.

pub mod providers;
pub mod routes;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::middleware::{Next, from_fn};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

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

/// The query parameters a VoIPBIN client may carry its credential in: `token` (the
/// documentation's examples) and `accesskey` (long-lived access keys, and the `vn` client's
/// `accessKeyTransport`, which adds it to every request).
const CREDENTIAL_PARAMS: [&str; 2] = ["token", "accesskey"];

/// Moves `token` or `accesskey` from the query string into `Authorization: Bearer` and drops
/// it from the URI, so that no handler, extractor or error sees it. A request carrying two
/// different credentials (`?token=A&accesskey=B`, or `?accesskey=A` with `Bearer B`) is
/// refused with 401: which one was meant cannot be known, and trying each would let a
/// request probe one secret with another's authority. Then, as VoIPBIN declares 400 for a
/// refused request body or parameter, `/v1.0`'s 422 answers become 400 (`/api/v1` keeps 422).
async fn token_from_query(mut request: Request, next: Next) -> Response {
    if let Some(query) = request.uri().query() {
        let mut credentials = Vec::new();
        let mut kept = form_urlencoded::Serializer::new(String::new());
        let mut found = false;
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            if CREDENTIAL_PARAMS.contains(&name.as_ref()) {
                found = true;
                credentials.push(value.into_owned());
            } else {
                kept.append_pair(&name, &value);
            }
        }
        if found {
            let kept = kept.finish();
            let path_and_query = if kept.is_empty() {
                request.uri().path().to_string()
            } else {
                format!("{}?{kept}", request.uri().path())
            };
            if let Ok(uri) = Uri::builder().path_and_query(path_and_query).build() {
                *request.uri_mut() = uri;
            }
            if let Some(header) = request.headers().get(header::AUTHORIZATION) {
                // Read as the `Principal` extractor reads it (`auth.rs`).
                let bearer = header
                    .to_str()
                    .ok()
                    .and_then(|h| h.split_once(' '))
                    .and_then(|(scheme, token)| {
                        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
                    });
                match bearer {
                    Some(bearer) => credentials.push(bearer.to_string()),
                    None => return ApiError::Unauthorized.into_response(),
                }
            }
            credentials.dedup();
            if credentials.len() != 1 {
                return ApiError::Unauthorized.into_response();
            }
            // A credential that cannot be a header value cannot be a valid one either: the
            // request then carries none and is refused as unauthenticated.
            if !request.headers().contains_key(header::AUTHORIZATION)
                && let Ok(mut value) = HeaderValue::from_str(&format!("Bearer {}", credentials[0]))
            {
                value.set_sensitive(true);
                request.headers_mut().insert(header::AUTHORIZATION, value);
            }
        }
    }
    let mut response = next.run(request).await;
    if response.status() == StatusCode::UNPROCESSABLE_ENTITY {
        *response.status_mut() = StatusCode::BAD_REQUEST;
    }
    response
}

/// An optional id where `""` means absent, as VoIPBIN's clients write an unset one.
pub fn empty_as_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Uuid>, D::Error> {
    match Option::<String>::deserialize(d)?.as_deref() {
        None | Some("") => Ok(None),
        Some(id) => Uuid::parse_str(id)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
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
