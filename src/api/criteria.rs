//! The wire form of the routing criteria shared by routes, carriers and tenants: a cost
//! (`{"rate": "0.0125", "currency": "USD"}`) and a schedule, parsed into the model types with
//! every refusal naming its field (`cost.currency`, `schedule.windows[1].end`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::FieldErrors;
use crate::model::{Cost, Currency, Rate, Schedule, ScheduleSpec};

/// A per-minute rate in the platform currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CostBody {
    /// A decimal string with at most 6 decimals, e.g. `"0.0125"` (a string, so that no JSON
    /// number is ever rounded through a float).
    pub rate: String,
    /// ISO 4217; must be the platform currency (setting `currency`). Default: that currency.
    #[serde(default)]
    pub currency: Option<String>,
}

impl CostBody {
    pub fn from_cost(c: &Cost) -> Self {
        CostBody {
            rate: c.rate.to_string(),
            currency: Some(c.currency.to_string()),
        }
    }
}

/// Parses an optional cost under `field`; `None` when a part of it was refused (and recorded).
pub fn parse_cost(
    e: &mut FieldErrors,
    field: &str,
    body: Option<&CostBody>,
    platform: &Currency,
) -> Option<Option<Cost>> {
    let Some(body) = body else {
        return Some(None);
    };
    let rate = e.parse(&format!("{field}.rate"), &body.rate, Rate::parse);
    let currency_field = format!("{field}.currency");
    let currency = match &body.currency {
        None => Some(platform.clone()),
        Some(c) => e.parse(&currency_field, c, Currency::parse).filter(|c| {
            let same = c == platform;
            if !same {
                e.add(
                    &currency_field,
                    format!("must be the platform currency {platform}"),
                );
            }
            same
        }),
    };
    Some(Some(Cost {
        rate: rate?,
        currency: currency?,
    }))
}

/// Parses an optional schedule under `field`.
pub fn parse_schedule(
    e: &mut FieldErrors,
    field: &str,
    spec: Option<&ScheduleSpec>,
) -> Option<Option<Schedule>> {
    let Some(spec) = spec else {
        return Some(None);
    };
    match Schedule::parse(spec) {
        Ok(s) => Some(Some(s)),
        Err(err) => {
            e.add(&format!("{field}.{}", err.field), err.detail);
            None
        }
    }
}
