//! The API's one error type and its mapping to HTTP — the only place that mapping lives.
//!
//! | error | status | body |
//! |---|---|---|
//! | `BadRequest` (malformed JSON or query) | 400 | the parser's message, and the field when known |
//! | `TooLarge` (a body over `MAX_API_BODY`) | 413 | the limit |
//! | `Unauthorized` (missing, malformed, unknown or revoked token) | 401 | fixed text, `WWW-Authenticate: Bearer` |
//! | `Forbidden` (missing scope, missing tenant feature, platform-managed resource) | 403 | why |
//! | `NotFound` (absent, or another tenant's: existence is never revealed) | 404 | fixed text |
//! | `Conflict` (unique value taken; carrier still referenced by enabled routes) | 409 | the field, or the routes |
//! | `Validation` | 422 | every refused field with the rule it broke |
//! | `Unavailable` (database unreachable, pool exhausted) | 503 | fixed text |
//! | `Internal` | 500 | fixed text; the cause is logged once, never sent |
//!
//! Every body is `{"errors":[{"field": <name or null>, "detail": <text>}]}`. Details never echo
//! the refused value (it may be hostile or a secret).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::access::AccessError;
pub use crate::model::FieldErrors;
use crate::store::StoreError;

/// One refused field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// The JSON field or query parameter, or null when the error is not about one field.
    pub field: Option<String>,
    pub detail: String,
}

/// The error body of every API response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub errors: Vec<FieldError>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("bad request")]
    BadRequest(FieldError),
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    #[error("unauthorized")]
    Unauthorized,
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    #[error("conflict")]
    Conflict(Vec<FieldError>),
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("service unavailable")]
    Unavailable,
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// One line for a person (the status page): the fields and what is wrong with each, as the
    /// JSON body says; an internal error's detail stays in the log.
    pub fn describe(&self) -> String {
        let fields = |errors: &[FieldError]| {
            errors
                .iter()
                .map(|e| match &e.field {
                    Some(f) => format!("{f}: {}", e.detail),
                    None => e.detail.clone(),
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        match self {
            ApiError::BadRequest(e) => fields(std::slice::from_ref(e)),
            ApiError::Conflict(errors) | ApiError::Validation(errors) => fields(errors),
            ApiError::Internal(_) => "internal error".into(),
            other => other.to_string(),
        }
    }

    /// A 422 about one field.
    pub fn field(field: &str, detail: impl Into<String>) -> Self {
        ApiError::Validation(vec![FieldError {
            field: Some(field.to_string()),
            detail: detail.into(),
        }])
    }

    /// The same error with its fields named as another API names them: `(from, to)` pairs,
    /// matching a whole field or the head of a path (`tech_headers.X-A`).
    pub fn renamed(self, names: &[(&str, &str)]) -> Self {
        let rename = |mut e: FieldError| {
            if let Some(field) = &e.field {
                for (from, to) in names {
                    if field == from {
                        e.field = Some((*to).to_string());
                        break;
                    }
                    if let Some(rest) = field.strip_prefix(from).filter(|r| r.starts_with('.')) {
                        e.field = Some(format!("{to}{rest}"));
                        break;
                    }
                }
            }
            e
        };
        match self {
            ApiError::BadRequest(e) => ApiError::BadRequest(rename(e)),
            ApiError::Conflict(errors) => {
                ApiError::Conflict(errors.into_iter().map(rename).collect())
            }
            ApiError::Validation(errors) => {
                ApiError::Validation(errors.into_iter().map(rename).collect())
            }
            other => other,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn body(self) -> Vec<FieldError> {
        let general = |detail: &str| {
            vec![FieldError {
                field: None,
                detail: detail.to_string(),
            }]
        };
        match self {
            ApiError::BadRequest(e) => vec![e],
            ApiError::TooLarge(limit) => general(&format!("the body is larger than {limit} bytes")),
            ApiError::Unauthorized => general("missing, invalid or revoked bearer token"),
            ApiError::Forbidden(why) => general(&why),
            ApiError::NotFound => general("not found"),
            ApiError::Conflict(errors) | ApiError::Validation(errors) => errors,
            ApiError::Unavailable => general("the database is unavailable; try again"),
            ApiError::Internal(_) => general("internal error"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            ApiError::Internal(cause) => tracing::error!(%cause, "internal error"),
            ApiError::Unavailable => tracing::warn!("database unavailable"),
            _ => {}
        }
        let unauthorized = matches!(self, ApiError::Unauthorized);
        let mut response = (
            status,
            Json(ErrorBody {
                errors: self.body(),
            }),
        )
            .into_response();
        if unauthorized {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::NotFound,
            StoreError::Conflict { field, detail } => ApiError::Conflict(vec![FieldError {
                field: Some(field.to_string()),
                detail,
            }]),
            StoreError::InUse { routes } => ApiError::Conflict(
                routes
                    .into_iter()
                    .map(|(id, name)| FieldError {
                        field: Some("status".into()),
                        detail: format!(
                            "enabled outbound route {id} ({name}) still uses this carrier"
                        ),
                    })
                    .collect(),
            ),
            StoreError::Invalid { field, detail } => ApiError::field(field, detail),
            StoreError::Unavailable(_) => ApiError::Unavailable,
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<AccessError> for ApiError {
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::Unauthorized => ApiError::Unauthorized,
            AccessError::Forbidden(why) => ApiError::Forbidden(why),
            AccessError::NotFound => ApiError::NotFound,
            AccessError::Field { field, detail } => ApiError::field(&field, detail),
            AccessError::Store(e) => ApiError::from(e),
        }
    }
}

/// Every refused field of a parsed form, as one 422. An empty list means a form lost a part
/// without naming it: a bug, answered as a 500.
impl From<FieldErrors> for ApiError {
    fn from(errors: FieldErrors) -> Self {
        if errors.is_empty() {
            return ApiError::Internal("parsed field missing without an error".into());
        }
        ApiError::Validation(
            errors
                .into_iter()
                .map(|(field, detail)| FieldError {
                    field: Some(field),
                    detail,
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renaming_changes_whole_names_and_path_heads_only() {
        let errors = |fields: &[&str]| {
            fields
                .iter()
                .map(|f| FieldError {
                    field: Some((*f).to_string()),
                    detail: "x".into(),
                })
                .collect::<Vec<_>>()
        };
        let names = &[("remote_host", "hostname"), ("tech", "headers")];
        let renamed =
            ApiError::Validation(errors(&["remote_host", "tech.X-A", "technology", "name"]))
                .renamed(names);
        let ApiError::Validation(found) = renamed else {
            panic!("{renamed:?}")
        };
        let found: Vec<_> = found.iter().map(|e| e.field.clone().unwrap()).collect();
        assert_eq!(found, ["hostname", "headers.X-A", "technology", "name"]);
        assert!(matches!(
            ApiError::NotFound.renamed(names),
            ApiError::NotFound
        ));
    }
}
