//! What every write of the API shares: the owner a write may set, and PATCH as a JSON merge
//! patch (RFC 7396) over the body that would recreate the row, so POST and PATCH share one set
//! of rules; and the carrier and route writes both `/api/v1` and `/v1.0` make ([`carriers`],
//! [`routes`]), so that no handler file calls into another.

pub mod carriers;
pub mod routes;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use super::error::{ApiError, FieldError};
use super::extract::from_json;
use crate::access::Principal;
use crate::api::ApiState;

/// The owner a write may set: a tenant admin always writes its own tenant; a platform admin
/// names an existing tenant or none (platform).
pub async fn owner_for_write(
    state: &ApiState,
    principal: &Principal,
    requested: Option<Uuid>,
) -> Result<Option<Uuid>, ApiError> {
    if !principal.is_platform_admin() {
        return match (principal.tenant_id, requested) {
            (Some(mine), None) => Ok(Some(mine)),
            (Some(mine), Some(r)) if r == mine => Ok(Some(mine)),
            _ => Err(ApiError::field(
                "tenant_id",
                "a tenant admin writes only its own tenant",
            )),
        };
    }
    if let Some(t) = requested
        && state.store.get_tenant(t).await?.is_none()
    {
        return Err(ApiError::field("tenant_id", "no such tenant"));
    }
    Ok(requested)
}

/// Applies `patch` to `base` as RFC 7396 says and parses the result as the same body type.
pub fn merge_patch<T: Serialize + DeserializeOwned>(base: &T, patch: Value) -> Result<T, ApiError> {
    if !patch.is_object() {
        return Err(ApiError::BadRequest(FieldError {
            field: None,
            detail: "a PATCH body must be a JSON object".into(),
        }));
    }
    let mut merged = serde_json::to_value(base).map_err(|e| ApiError::Internal(e.to_string()))?;
    merge(&mut merged, patch);
    let bytes = serde_json::to_vec(&merged).map_err(|e| ApiError::Internal(e.to_string()))?;
    from_json(&bytes)
}

/// RFC 7396 §2: an object patch merges member by member, `null` removing the member, at every
/// depth (`{"tech_headers": {"X-A": null}}` removes that one header); anything else replaces
/// the target.
fn merge(target: &mut Value, patch: Value) {
    let Value::Object(patch) = patch else {
        *target = patch;
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    let Value::Object(members) = target else {
        unreachable!("made an object above")
    };
    for (name, value) in patch {
        if value.is_null() {
            members.remove(&name);
        } else {
            merge(members.entry(name).or_insert(Value::Null), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn merged(target: Value, patch: Value) -> Value {
        let mut target = target;
        merge(&mut target, patch);
        target
    }

    #[test]
    fn the_rfc_7396_examples_hold() {
        // RFC 7396 Appendix A, each row: original, patch, result.
        for (original, patch, result) in [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": "b", "b": "c"}),
                json!({"a": null}),
                json!({"b": "c"}),
            ),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a": "b"}), json!(["c"]), json!(["c"])),
            (json!({"a": "foo"}), json!(null), json!(null)),
            (json!({"a": "foo"}), json!("bar"), json!("bar")),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!([1, 2]),
                json!({"a": "b", "c": null}),
                json!({"a": "b"}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ] {
            assert_eq!(
                merged(original.clone(), patch.clone()),
                result,
                "{original} + {patch}"
            );
        }
    }

    #[test]
    fn one_nested_member_is_removed_and_the_rest_kept() {
        let base = json!({"name": "Alpha", "tech_headers": {"X-A": "1", "X-B": "2"}});
        assert_eq!(
            merged(base, json!({"tech_headers": {"X-A": null}})),
            json!({"name": "Alpha", "tech_headers": {"X-B": "2"}})
        );
    }
}
