//! Request-body and query-string extractors whose errors are JSON naming the field, instead of
//! axum's plain-text rejections. Unknown fields are refused by the DTOs (`deny_unknown_fields`).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::{ApiError, FieldError};

/// A JSON body deserialised with the failing field's path reported.
pub struct ValidJson<T>(pub T);

/// The largest API body accepted (carriers are the largest resource, well under this). The API
/// router reads no more than this of any body (`DefaultBodyLimit` in [`super::router`]).
pub const MAX_API_BODY: usize = 64 * 1024;

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ValidJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !is_json {
            return Err(ApiError::BadRequest(FieldError {
                field: None,
                detail: "expected Content-Type: application/json".into(),
            }));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge(MAX_API_BODY)
            } else {
                ApiError::BadRequest(FieldError {
                    field: None,
                    detail: "body unreadable".into(),
                })
            }
        })?;
        from_json(&bytes).map(ValidJson)
    }
}

/// Deserialises JSON, naming the field on failure: a type error is 422 on that field, a syntax
/// error is 400.
pub fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = clean_serde_message(&inner.to_string());
        let detail = redact_value(&message);
        if inner.is_syntax() || inner.is_eof() {
            ApiError::BadRequest(FieldError {
                field: None,
                detail: format!("body is not valid JSON: {detail}"),
            })
        } else {
            ApiError::Validation(vec![FieldError {
                field: field_of(&path, &message),
                detail,
            }])
        }
    })
}

/// Names the field itself for an unknown field: depending on the serde_path_to_error version
/// the path is that of the parent object or already ends with the field.
fn field_of(path: &str, detail: &str) -> Option<String> {
    if let Some(rest) = detail.strip_prefix("unknown field `")
        && let Some(name) = rest.split('`').next()
    {
        return Some(if path == "." || path.is_empty() {
            name.to_string()
        } else if path.rsplit('.').next() == Some(name) {
            path.to_string()
        } else {
            format!("{path}.{name}")
        });
    }
    (path != "." && !path.is_empty()).then(|| path.to_string())
}

/// Drops serde's " at line L column C" suffix; the field name says where.
fn clean_serde_message(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// Removes the refused value from a serde message: the error body never echoes it, since it
/// may be hostile or a secret (`error.rs`). serde quotes it in `unknown variant `…``,
/// `invalid value: string "…"` and `invalid type: string "…"`, and the uuid crate in
/// `found `…``; what was expected stays.
fn redact_value(msg: &str) -> String {
    if msg.contains("UUID parsing failed") {
        return "must be a UUID".into();
    }
    for (prefix, close) in [
        ("unknown variant `", "`, expected"),
        ("invalid value: string \"", "\", expected"),
        ("invalid type: string \"", "\", expected"),
    ] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            let head = prefix.trim_end_matches([' ', '`', '"']);
            return match rest.rfind(close) {
                Some(i) => format!("{head}{}", &rest[i + 1..]),
                None => head.to_string(),
            };
        }
    }
    msg.to_string()
}

/// A query string deserialised with the failing parameter named.
pub struct ValidQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ValidQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded_parse(query));
        serde_path_to_error::deserialize(de)
            .map(ValidQuery)
            .map_err(|e| {
                let path = e.path().to_string();
                let message = e.into_inner().to_string();
                ApiError::BadRequest(FieldError {
                    field: field_of(&path, &message),
                    detail: redact_value(&message),
                })
            })
    }
}

fn form_urlencoded_parse(query: &str) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(query.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        port: Option<u16>,
    }

    #[test]
    fn errors_name_the_field() {
        let err = from_json::<Body>(br#"{"name":"a","port":"x"}"#).unwrap_err();
        let ApiError::Validation(errors) = err else {
            panic!("{err:?}")
        };
        assert_eq!(errors[0].field.as_deref(), Some("port"));

        let err = from_json::<Body>(br#"{"name":"a","evil":1}"#).unwrap_err();
        let ApiError::Validation(errors) = err else {
            panic!("{err:?}")
        };
        assert_eq!(errors[0].field.as_deref(), Some("evil"));

        let err = from_json::<Body>(br#"{"name":"#).unwrap_err();
        assert!(matches!(err, ApiError::BadRequest(_)));
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Typed {
        #[serde(default)]
        colour: Option<Colour>,
        #[serde(default)]
        id: Option<uuid::Uuid>,
        #[serde(default)]
        port: Option<u16>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Colour {
        Red,
    }

    #[test]
    fn refusals_never_echo_the_refused_value() {
        for body in [
            r#"{"colour": "${system id}"}"#,
            r#"{"id": "${system id}"}"#,
            r#"{"port": "${system id}"}"#,
        ] {
            let err = from_json::<Typed>(body.as_bytes()).unwrap_err();
            let ApiError::Validation(errors) = err else {
                panic!("{err:?}")
            };
            assert!(!errors[0].detail.contains("system"), "{:?}", errors[0]);
            assert!(errors[0].field.is_some(), "{:?}", errors[0]);
        }
        assert_eq!(
            redact_value("unknown variant `a`, b`, expected `red`"),
            "unknown variant, expected `red`"
        );
        assert_eq!(
            redact_value("invalid type: string \"x\", expected u16"),
            "invalid type: string, expected u16"
        );
    }
}
