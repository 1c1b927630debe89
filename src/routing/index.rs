//! The per-scope route index (one for each tenant, one for the platform defaults): a hash map
//! from prefix to routes, the same for regex routes keyed by the literal digits their pattern
//! requires after `^` (`^4930[0-9]+$` → `4930`), and one `RegexSet` for the few patterns that
//! require none. A lookup probes at most one hash entry per prefix length (≤ 17), runs only
//! the regexes filed under those prefixes, and makes one pass of the set, so its cost does not
//! grow with the number of routes (DESIGN.md §3 rule 6).
//!
//! Prefixed regexes are compiled on their first use, not when the snapshot is built: a platform
//! has many of them, most destinations never reach most of them, and compiling them all would
//! dominate the rebuild after every committed change.
//!
//! Routes are referred to by their *rank*: their position in the snapshot's route list, which
//! is sorted once in the order routes are tried. Sorting the few matches of one call is then a
//! sort of small integers.

use std::collections::HashMap;
use std::sync::OnceLock;

use regex::{Regex, RegexSet, RegexSetBuilder};

use crate::model::{RouteMatch, RouteRegex};

/// Compiled-size limit for the whole set of one scope. Each pattern is already limited to
/// [`RouteRegex::SIZE_LIMIT`]; past this the index falls back to trying them one by one.
const SET_SIZE_LIMIT: usize = 64 * 1024 * 1024;

#[derive(Debug, Default)]
pub(super) struct RouteIndex {
    /// Prefix digits (`""` = every destination) → the routes filed under it.
    prefixes: HashMap<Box<str>, Bucket>,
    /// The longest key: no longer prefix of a destination needs probing.
    longest_prefix: usize,
    /// Regexes that require no prefix.
    regexes: RegexMatcher,
}

/// The routes filed under one prefix, each list in ascending rank: prefix routes with that
/// prefix, and regex routes that require it. One map for both halves the probes per lookup.
#[derive(Debug, Default)]
struct Bucket {
    routes: Vec<u32>,
    regexes: Vec<LazyRegex>,
}

/// A regex route compiled on first use.
#[derive(Debug)]
struct LazyRegex {
    rank: u32,
    pattern: RouteRegex,
    compiled: OnceLock<Option<Regex>>,
}

impl LazyRegex {
    fn is_match(&self, digits: &str) -> bool {
        self.compiled
            .get_or_init(|| self.pattern.compile())
            .as_ref()
            .is_some_and(|re| re.is_match(digits))
    }
}

#[derive(Debug, Default)]
enum RegexMatcher {
    #[default]
    None,
    /// One pass over the destination finds every matching pattern.
    Set { set: RegexSet, ranks: Vec<u32> },
    /// Used only when the set would exceed [`SET_SIZE_LIMIT`].
    Each(Vec<(Regex, u32)>),
}

impl RouteIndex {
    /// Builds the index from `(rank, matcher)` pairs given in rank order.
    pub(super) fn build<'a>(routes: impl Iterator<Item = (u32, &'a RouteMatch)>) -> RouteIndex {
        let mut index = RouteIndex::default();
        let mut unprefixed: Vec<(&RouteRegex, u32)> = Vec::new();
        for (rank, matcher) in routes {
            let len = match matcher {
                RouteMatch::Prefix(p) => {
                    let key = p.digits();
                    index.bucket(key).routes.push(rank);
                    key.len()
                }
                RouteMatch::Regex(r) => match r.required_prefix() {
                    "" => {
                        unprefixed.push((r, rank));
                        continue;
                    }
                    key => {
                        index.bucket(key).regexes.push(LazyRegex {
                            rank,
                            pattern: r.clone(),
                            compiled: OnceLock::new(),
                        });
                        key.len()
                    }
                },
            };
            index.longest_prefix = index.longest_prefix.max(len);
        }
        index.regexes = RegexMatcher::build(&unprefixed);
        index
    }

    fn bucket(&mut self, prefix: &str) -> &mut Bucket {
        self.prefixes.entry(prefix.into()).or_default()
    }

    /// Appends the ranks of every route matching `digits` (the destination without `+`).
    pub(super) fn matching(&self, digits: &str, out: &mut Vec<u32>) {
        for len in 0..=self.longest_prefix.min(digits.len()) {
            // Destinations are ASCII (`Destination::parse`), so every length is a char boundary.
            let Some(prefix) = digits.get(..len) else {
                continue;
            };
            if let Some(bucket) = self.prefixes.get(prefix) {
                out.extend_from_slice(&bucket.routes);
                out.extend(
                    bucket
                        .regexes
                        .iter()
                        .filter(|r| r.is_match(digits))
                        .map(|r| r.rank),
                );
            }
        }
        match &self.regexes {
            RegexMatcher::None => {}
            RegexMatcher::Set { set, ranks } => {
                out.extend(set.matches(digits).into_iter().map(|i| ranks[i]));
            }
            RegexMatcher::Each(each) => {
                out.extend(
                    each.iter()
                        .filter(|(r, _)| r.is_match(digits))
                        .map(|(_, rank)| *rank),
                );
            }
        }
    }
}

impl RegexMatcher {
    fn build(patterns: &[(&RouteRegex, u32)]) -> RegexMatcher {
        if patterns.is_empty() {
            return RegexMatcher::None;
        }
        let set = RegexSetBuilder::new(patterns.iter().map(|(r, _)| r.as_str()))
            .size_limit(SET_SIZE_LIMIT)
            .build();
        match set {
            Ok(set) => RegexMatcher::Set {
                set,
                ranks: patterns.iter().map(|(_, rank)| *rank).collect(),
            },
            Err(_) => RegexMatcher::Each(
                patterns
                    .iter()
                    .filter_map(|(r, rank)| r.compile().map(|re| (re, *rank)))
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RoutePrefix;

    fn prefix(p: &str) -> RouteMatch {
        RouteMatch::Prefix(RoutePrefix::parse(p).unwrap())
    }

    fn regex(r: &str) -> RouteMatch {
        RouteMatch::Regex(RouteRegex::parse(r).unwrap())
    }

    fn matches(index: &RouteIndex, digits: &str) -> Vec<u32> {
        let mut out = Vec::new();
        index.matching(digits, &mut out);
        out.sort();
        out
    }

    #[test]
    fn every_prefix_of_the_destination_and_every_matching_regex_is_found() {
        let routes = [
            prefix("all"),
            prefix("+1"),
            prefix("1555"),
            prefix("44"),
            regex("^1[2-9]"),
            regex("^44"),
            prefix("15551234567890"),
        ];
        let index = RouteIndex::build(routes.iter().enumerate().map(|(i, m)| (i as u32, m)));
        assert_eq!(matches(&index, "15551234567"), [0, 1, 2, 4]);
        assert_eq!(matches(&index, "442071234567"), [0, 3, 5]);
        assert_eq!(matches(&index, "1"), [0, 1]);
        assert_eq!(matches(&index, "33"), [0]);
    }

    #[test]
    fn filed_and_unfiled_regexes_match_exactly_what_trying_every_route_matches() {
        let patterns = [
            "^4930[0-9]+$",
            "^49(30|40)",
            "^4930?1",
            "^49{2}",
            "^49|^33",
            "^1[2-9][0-9]{9}$",
            "555",
            "^(44)20",
            "^4",
            "^493",
        ];
        let routes: Vec<RouteMatch> = patterns.iter().map(|p| regex(p)).collect();
        let index = RouteIndex::build(routes.iter().enumerate().map(|(i, m)| (i as u32, m)));
        for digits in [
            "493012345",
            "4940",
            "49301",
            "4931",
            "499",
            "4",
            "33",
            "15551234567",
            "442071234567",
            "4930",
            "5551",
            "1",
        ] {
            let expected: Vec<u32> = patterns
                .iter()
                .enumerate()
                .filter(|(_, p)| {
                    RouteRegex::parse(p)
                        .unwrap()
                        .compile()
                        .unwrap()
                        .is_match(digits)
                })
                .map(|(i, _)| i as u32)
                .collect();
            assert_eq!(matches(&index, digits), expected, "{digits}");
        }
    }

    #[test]
    fn an_empty_index_matches_nothing() {
        let index = RouteIndex::build(std::iter::empty());
        assert!(matches(&index, "15551234567").is_empty());
    }

    #[test]
    fn the_one_by_one_fallback_finds_what_the_set_finds() {
        let r = RouteRegex::parse("^49(30|40)[0-9]+$").unwrap();
        let each = RegexMatcher::Each(vec![(r.compile().unwrap(), 7)]);
        let index = RouteIndex {
            regexes: each,
            ..RouteIndex::default()
        };
        assert_eq!(matches(&index, "493012345"), [7]);
        assert!(matches(&index, "495012345").is_empty());
    }
}
