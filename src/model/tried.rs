//! `trunkline_tried`: the carriers a call has tried so far, in order. The dialplan document
//! sets it on the A-leg before each bridge whose failure may come back to trunkline
//! (`fsxml::dialplan`), and the follow-up fetch posts it back (`variable_trunkline_tried`) so
//! the health order keeps those carriers first (`quality::health`). One format, written and
//! read here: comma-separated simple (32 hex digit) UUIDs, beside `trunkline_attempt`, which
//! must count them.

use std::fmt::{self, Write as _};

use uuid::Uuid;

/// Read back from a fetch, at most this many ids (a call has far fewer legs).
const MAX: usize = 64;

/// The carriers a call tried, in the order tried.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TriedCarriers(Vec<Uuid>);

impl TriedCarriers {
    /// Reads `trunkline_tried` with `trunkline_attempt` as a follow-up fetch posts them.
    /// Anything but our own format naming exactly `attempt` carriers (hand-set, damaged) reads
    /// as nothing tried: the fetch is then ordered as a first one.
    pub fn parse(raw: Option<&str>, attempt: Option<&str>) -> TriedCarriers {
        let (Some(raw), Some(attempt)) = (raw, attempt) else {
            return TriedCarriers::default();
        };
        let ids: Option<Vec<Uuid>> = raw
            .split(',')
            .take(MAX)
            .map(|s| Uuid::try_parse(s).ok().filter(|_| s.len() == 32))
            .collect();
        match ids {
            Some(ids) if attempt.parse::<usize>().ok() == Some(ids.len()) => TriedCarriers(ids),
            _ => TriedCarriers::default(),
        }
    }

    pub fn as_slice(&self) -> &[Uuid] {
        &self.0
    }
}

impl FromIterator<Uuid> for TriedCarriers {
    fn from_iter<I: IntoIterator<Item = Uuid>>(ids: I) -> Self {
        TriedCarriers(ids.into_iter().collect())
    }
}

/// The variable's value, as [`TriedCarriers::parse`] reads it.
impl fmt::Display for TriedCarriers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, id) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_char(',')?;
            }
            write!(f, "{}", id.simple())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back_the_same() {
        let tried: TriedCarriers = [Uuid::now_v7(), Uuid::from_u128(0x61), Uuid::now_v7()]
            .into_iter()
            .collect();
        let raw = tried.to_string();
        assert_eq!(TriedCarriers::parse(Some(&raw), Some("3")), tried);
        let one: TriedCarriers = [Uuid::from_u128(0x61)].into_iter().collect();
        assert_eq!(one.to_string(), "00000000000000000000000000000061");
    }

    #[test]
    fn tried_lists_are_ours_or_nothing() {
        let a = Uuid::now_v7();
        let b = Uuid::now_v7();
        let raw = format!("{},{}", a.simple(), b.simple());
        let parse = |raw: &str, attempt: Option<&str>| {
            TriedCarriers::parse(Some(raw), attempt).as_slice().to_vec()
        };
        assert_eq!(parse(&raw, Some("2")), vec![a, b]);
        assert!(parse(&raw, Some("1")).is_empty());
        assert!(parse(&raw, None).is_empty());
        assert!(parse(&format!("{a},{b}"), Some("2")).is_empty());
        assert!(parse("x", Some("1")).is_empty());
        assert!(TriedCarriers::parse(None, Some("1")).as_slice().is_empty());
    }
}
