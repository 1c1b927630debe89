//! Bearer-token authentication for the API: the [`Principal`] extractor. Tokens, the lookup and
//! the authorisation rules are the access room's ([`crate::access`]); this is only where the
//! API reads the token from (`Authorization: Bearer`).

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use super::ApiState;
use super::error::ApiError;
use crate::access::Principal;

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    Some(token.trim())
}

/// The principal of a scraper: as [`Principal`], except that while the database cannot be asked
/// a token verified within the last hour is still accepted ([`RecentPrincipals`]), so that
/// `/metrics` shows a database outage instead of going dark with it.
pub struct Scraper(pub Principal);

impl FromRequestParts<ApiState> for Scraper {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let secret = bearer(parts).ok_or(ApiError::Unauthorized)?;
        Ok(Scraper(
            state.scrapers.from_secret(&state.store, secret).await?,
        ))
    }
}

impl FromRequestParts<ApiState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let secret = bearer(parts).ok_or(ApiError::Unauthorized)?;
        Ok(Principal::from_secret(&state.store, secret).await?)
    }
}
