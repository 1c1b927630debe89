//! What the wire forms of the writable entities share: [`FieldErrors`], which collects every
//! refused field of one form so that one answer names them all, and the written form of a
//! cost ([`CostInput`]) and of a schedule, parsed with their refusals named by field path
//! (`cost.currency`, `schedule.windows[1].end`). The API turns [`FieldErrors`] into its 422;
//! nothing here knows HTTP.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Cost, Currency, Rate, Schedule, ScheduleSpec};

/// The refused fields of one form, in the order they were found: `(field path, why)`. A
/// detail never echoes the refused value (it may be hostile or a secret).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FieldErrors(Vec<(String, String)>);

impl FieldErrors {
    /// Parses `raw` with `parse`, recording a failure under `field`.
    pub fn parse<T, E: std::fmt::Display>(
        &mut self,
        field: &str,
        raw: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Option<T> {
        match parse(raw) {
            Ok(v) => Some(v),
            Err(e) => {
                self.add(field, e.to_string());
                None
            }
        }
    }

    /// Like [`FieldErrors::parse`] for an optional value (`None` stays `None`).
    pub fn parse_opt<T, E: std::fmt::Display>(
        &mut self,
        field: &str,
        raw: Option<&str>,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Option<Option<T>> {
        match raw {
            None => Some(None),
            Some(raw) => self.parse(field, raw, parse).map(Some),
        }
    }

    /// Parses every item of a list, naming the failing index (`inbound_ips[2]`).
    pub fn parse_list<T, E: std::fmt::Display>(
        &mut self,
        field: &str,
        raw: &[String],
        parse: impl Fn(&str) -> Result<T, E>,
    ) -> Option<Vec<T>> {
        let mut ok = true;
        let mut out = Vec::with_capacity(raw.len());
        for (i, item) in raw.iter().enumerate() {
            match parse(item) {
                Ok(v) => out.push(v),
                Err(e) => {
                    ok = false;
                    self.add(&format!("{field}[{i}]"), e.to_string());
                }
            }
        }
        ok.then_some(out)
    }

    pub fn add(&mut self, field: &str, detail: impl Into<String>) {
        self.0.push((field.to_string(), detail.into()));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Err` naming every recorded field, or `Ok(())` when there were none.
    pub fn finish(self) -> Result<(), FieldErrors> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }

    /// The value `build` assembles from the parsed parts once no field was refused. `build`
    /// returns `None` only when a part is missing, which every refusal above recorded; a part
    /// missing without one is a bug, answered as an empty list (the API's 500), never as a
    /// half-built value.
    pub fn finish_with<T>(self, build: impl FnOnce() -> Option<T>) -> Result<T, FieldErrors> {
        self.finish()?;
        build().ok_or_else(FieldErrors::default)
    }
}

impl IntoIterator for FieldErrors {
    type Item = (String, String);
    type IntoIter = std::vec::IntoIter<(String, String)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// A per-minute rate in the platform currency, as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = CostBody)]
#[serde(deny_unknown_fields)]
pub struct CostInput {
    /// A decimal string with at most 6 decimals, e.g. `"0.0125"` (a string, so that no JSON
    /// number is ever rounded through a float).
    pub rate: String,
    /// ISO 4217; must be the platform currency (setting `currency`). Default: that currency.
    #[serde(default)]
    pub currency: Option<String>,
}

impl From<&Cost> for CostInput {
    fn from(c: &Cost) -> Self {
        CostInput {
            rate: c.rate.to_string(),
            currency: Some(c.currency.to_string()),
        }
    }
}

/// Parses an optional cost under `field`; `None` when a part of it was refused (and recorded).
pub fn parse_cost(
    e: &mut FieldErrors,
    field: &str,
    input: Option<&CostInput>,
    platform: &Currency,
) -> Option<Option<Cost>> {
    let Some(input) = input else {
        return Some(None);
    };
    let rate = e.parse(&format!("{field}.rate"), &input.rate, Rate::parse);
    let currency_field = format!("{field}.currency");
    let currency = match &input.currency {
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
