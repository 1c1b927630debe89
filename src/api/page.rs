//! Pagination shared by every list endpoint: `limit` (1 to 500, default 100) and an opaque
//! `cursor` (keyset on the time-ordered id, so pages stay stable under concurrent inserts).

use serde::Serialize;
use uuid::Uuid;

use super::error::ApiError;
use crate::store::{Page, PageRequest};

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 500;

/// Builds the store's page request from the raw query values.
pub fn page_request(limit: Option<u32>, cursor: Option<&str>) -> Result<PageRequest, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::field(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let after = match cursor {
        None | Some("") => None,
        Some(c) => Some(
            Uuid::try_parse(c)
                .ok()
                .filter(|_| c.len() == 32)
                .ok_or_else(|| ApiError::field("cursor", "not a cursor returned by this API"))?,
        ),
    };
    Ok(PageRequest { limit, after })
}

/// A page of results; `next_cursor` is null on the last page.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ListResponse<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> ListResponse<T> {
    pub fn from_page<S>(page: Page<S>, view: impl Fn(S) -> T) -> Self {
        ListResponse {
            items: page.items.into_iter().map(view).collect(),
            next_cursor: page.next_after.map(|id| id.simple().to_string()),
        }
    }
}
