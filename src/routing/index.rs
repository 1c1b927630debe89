//! The route index of a snapshot: for every scope (each tenant's own routes, and the platform
//! default routes), the routes filed under each prefix — prefix routes under their prefix,
//! regex routes under the literal digits their pattern requires after `^` (`^4930[0-9]+$` →
//! `4930`) — and one `RegexSet` for the few patterns that require none. A lookup probes one
//! hash entry per prefix length the scope has (≤ 17), runs only the regexes filed under those
//! prefixes, and makes one pass of the set, so its cost does not grow with the number of routes
//! (DESIGN.md §3 rule 6).
//!
//! Layout, for a platform of a million routes, where little of the index stays in the CPU
//! caches and a read is a miss to main memory (and, on 4 KiB pages, a page walk):
//! - one open-addressing table for every scope, keyed by (scope, prefix as an integer), each
//!   slot holding its key and its bucket side by side, so a probe is one read (a hash map with
//!   separate control bytes makes it two dependent ones);
//! - in front of it a small Bloom filter per scope, which stays cached and skips most of the
//!   prefix lengths the destination does not have;
//! - the slots of the lengths left are all read before any is compared, so their misses
//!   overlap;
//! - a bucket of a single prefix route holds that route's rank itself, the others point into
//!   two flat arrays (the ranks of the prefix routes, the regex routes).
//!
//! No allocation per prefix, and a call that finds one route reads about one slot, then the
//! route (BENCHMARKS.md has the figures before and after).
//!
//! Prefixed regexes are compiled on their first use, not when the snapshot is built: a platform
//! has many of them, most destinations never reach most of them, and compiling them all would
//! dominate the rebuild after every committed change.
//!
//! Routes are referred to by their *rank*: their position in the snapshot's route list, which
//! is sorted once in the order routes are tried. Sorting the few matches of one call is then a
//! sort of small integers.

use std::hash::BuildHasher;
use std::sync::OnceLock;

use regex::{Regex, RegexSet, RegexSetBuilder};
use uuid::Uuid;

use super::FastMap;
use crate::model::{RouteMatch, RouteRegex};

/// Compiled-size limit for the whole set of one scope. Each pattern is already limited to
/// [`RouteRegex::SIZE_LIMIT`]; past this the index falls back to trying them one by one.
const SET_SIZE_LIMIT: usize = 64 * 1024 * 1024;

/// The longest prefix a key holds: a route prefix has at most 16 characters, and a regex is
/// filed under at most the first 16 digits it requires (it is still run on every match).
const MAX_KEY_LEN: usize = 16;

#[derive(Debug, Default)]
pub(super) struct RouteIndex {
    scopes: FastMap<Option<Uuid>, Scope>,
    buckets: BucketTable,
    /// The prefix routes of every bucket of more than one, back to back, each bucket's in
    /// ascending rank.
    ranks: Vec<u32>,
    /// The prefixed regex routes of every bucket, the same way.
    regexes: Vec<LazyRegex>,
}

/// One scope's part of the index.
#[derive(Debug, Default)]
pub(super) struct Scope {
    /// Its number in [`BucketKey`].
    number: u32,
    /// Bit `n` is set when some bucket of this scope has a prefix of length `n`: the lengths
    /// worth probing.
    lengths: u32,
    /// Regexes that require no prefix.
    unprefixed: RegexMatcher,
}

/// A scope and a prefix of at most [`MAX_KEY_LEN`] characters of `0-9 * #`, the prefix as
/// one integer: its characters in bijective base 13 (`0`–`9` are 1–10, `*` 11, `#` 12), so
/// every prefix, `""` (0) included, has its own value, and the key of a prefix one longer is
/// `key * 13 + digit` — a lookup builds each length's key from the last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct BucketKey {
    scope: u32,
    prefix: u64,
}

/// Where one bucket's routes are.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// The prefix routes: with `prefix_routes == 1` the rank of the one route, else where they
    /// start in [`RouteIndex::ranks`]. Most buckets of a large table hold one route, and
    /// reading its rank here saves a miss.
    first: u32,
    prefix_routes: u32,
    /// The range of the bucket's regex routes in [`RouteIndex::regexes`].
    regexes: (u32, u32),
}

/// The buckets of every scope: open addressing with linear probing, at most two thirds full.
/// A slot is 32 bytes, two to a cache line, so a probe, found or not, mostly reads one line.
///
/// In front of it, per scope, a one-hash Bloom filter of the scope's keys, eight bits per
/// bucket: a lookup reads a length's slot only when that key's bit is set. A scope's filter
/// is a few cache lines, read on each of its calls, so it stays cached where the table cannot;
/// of the lengths a destination does not have, about one in nine still reads its slot.
#[derive(Debug, Default)]
struct BucketTable {
    slots: Box<[Slot]>,
    /// Keyed per table, so no set of prefixes a tenant picks collides on every platform.
    hasher: foldhash::fast::RandomState,
    /// Each scope's filter, by scope number: its first word in `filter_words` and its size
    /// in bits minus one (a power of two minus one).
    filters: Vec<(u32, u32)>,
    filter_words: Vec<u64>,
}

#[derive(Debug, Clone, Copy)]
#[repr(align(32))]
struct Slot {
    /// [`Slot::EMPTY`] in an empty slot.
    key: BucketKey,
    bucket: Bucket,
}

impl Slot {
    /// No prefix has this key: sixteen bijective base-13 digits stay below 13^16 < 2^60.
    const EMPTY: BucketKey = BucketKey {
        scope: 0,
        prefix: u64::MAX,
    };
}

impl BucketTable {
    /// The table of `buckets`, sorted by key (so each scope's are together); scope numbers
    /// are `0..scopes`.
    fn build(buckets: &[(BucketKey, Bucket)], scopes: usize) -> BucketTable {
        let slots = (buckets.len() + buckets.len() / 2)
            .next_power_of_two()
            .max(8);
        let mut table = BucketTable {
            slots: vec![
                Slot {
                    key: Slot::EMPTY,
                    bucket: Bucket::default(),
                };
                slots
            ]
            .into_boxed_slice(),
            hasher: foldhash::fast::RandomState::default(),
            filters: vec![(0, 0); scopes],
            filter_words: Vec::new(),
        };
        for scope_buckets in buckets.chunk_by(|a, b| a.0.scope == b.0.scope) {
            let bits = (scope_buckets.len() * 8).next_power_of_two().max(64);
            let first = table.filter_words.len();
            table.filters[scope_buckets[0].0.scope as usize] = (first as u32, bits as u32 - 1);
            table.filter_words.resize(first + bits / 64, 0);
            for (key, bucket) in scope_buckets {
                let (bit, home) = table.place(*key);
                table.filter_words[bit / 64] |= 1 << (bit % 64);
                table.insert(*key, *bucket, home);
            }
        }
        table
    }

    /// Where `key` is looked for: its bit in `filter_words` (from the upper half of its hash)
    /// and its home slot (from the lower half).
    fn place(&self, key: BucketKey) -> (usize, usize) {
        let hash = self.hasher.hash_one(key);
        let (first, mask) = self.filters[key.scope as usize];
        let bit = first as usize * 64 + ((hash >> 32) as u32 & mask) as usize;
        (bit, hash as usize & (self.slots.len() - 1))
    }

    fn filter_has(&self, bit: usize) -> bool {
        // Only an index without any bucket has no filter words; a scope without buckets has
        // no prefix lengths, so nothing is looked up in it.
        self.filter_words
            .get(bit / 64)
            .is_some_and(|word| word & (1 << (bit % 64)) != 0)
    }

    /// The bucket of each of `keys` (the prefixes of one destination, all of one scope), in
    /// the same order.
    ///
    /// Every key that passes the filter has its home slot read before any is compared. At
    /// platform size each read is a miss to main memory, and a comparison is a branch the CPU
    /// cannot predict (the home slot holds the key, nothing or another key, at random):
    /// comparing as each read arrives would hold back the next read until the branch resolved,
    /// paying one miss per prefix length in turn instead of about one for all of them.
    fn get_each(&self, keys: &[BucketKey]) -> [Option<&Bucket>; MAX_KEY_LEN + 1] {
        let mut found = [None; MAX_KEY_LEN + 1];
        if self.slots.is_empty() {
            return found;
        }
        let mut homes = [(0, Slot::EMPTY); MAX_KEY_LEN + 1];
        for (home, key) in homes.iter_mut().zip(keys) {
            let (bit, at) = self.place(*key);
            if self.filter_has(bit) {
                *home = (at, self.slots[at].key);
            }
        }
        for ((found, key), (at, first)) in found.iter_mut().zip(keys).zip(homes) {
            *found = if first == *key {
                Some(&self.slots[at].bucket)
            } else if first == Slot::EMPTY {
                None
            } else {
                self.probe_from(*key, at + 1)
            };
        }
        found
    }

    /// Looks for `key` from slot `at` on, around the end. The table is never full, so this
    /// meets the key or an empty slot.
    fn probe_from(&self, key: BucketKey, at: usize) -> Option<&Bucket> {
        let mask = self.slots.len() - 1;
        (at..at + self.slots.len())
            .map(|i| &self.slots[i & mask])
            .find(|slot| slot.key == key || slot.key == Slot::EMPTY)
            .filter(|slot| slot.key == key)
            .map(|slot| &slot.bucket)
    }

    /// Files a bucket under a key not in the table yet, from its home slot on.
    fn insert(&mut self, key: BucketKey, bucket: Bucket, home: usize) {
        let mask = self.slots.len() - 1;
        let mut at = home;
        while self.slots[at].key != Slot::EMPTY {
            debug_assert!(self.slots[at].key != key, "each key is filed once");
            at = (at + 1) & mask;
        }
        self.slots[at] = Slot { key, bucket };
    }
}

/// The next key after `key` for one more character. Destinations and prefixes are validated
/// to `0-9 * #` (`Destination::parse`, `RoutePrefix::parse`; regex prefixes are digits), so
/// the catch-all arm is `#` alone.
fn extend(key: u64, c: u8) -> u64 {
    let digit = match c {
        b'0'..=b'9' => u64::from(c - b'0') + 1,
        b'*' => 11,
        _ => 12,
    };
    key * 13 + digit
}

fn prefix_key(prefix: &str) -> u64 {
    prefix.bytes().take(MAX_KEY_LEN).fold(0, extend)
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

/// What [`RouteIndex::build`] files, before the buckets are laid out.
enum Filed<'a> {
    Route,
    Regex(&'a RouteRegex),
}

impl Filed<'_> {
    fn is_regex(&self) -> bool {
        matches!(self, Filed::Regex(_))
    }
}

impl RouteIndex {
    /// Builds the index from each route's `(scope, matcher)`, given in rank order.
    pub(super) fn build<'a>(
        routes: impl Iterator<Item = (Option<Uuid>, &'a RouteMatch)>,
    ) -> RouteIndex {
        let mut index = RouteIndex::default();
        let mut filed: Vec<(BucketKey, u32, Filed<'a>)> = Vec::new();
        let mut unprefixed: FastMap<Option<Uuid>, Vec<(&RouteRegex, u32)>> = FastMap::default();
        for (rank, (scope, matcher)) in routes.enumerate() {
            let rank = u32::try_from(rank).expect("fewer than 2^32 routes");
            let next_number = u32::try_from(index.scopes.len()).expect("fewer than 2^32 scopes");
            let scope_entry = index.scopes.entry(scope).or_insert_with(|| Scope {
                number: next_number,
                ..Scope::default()
            });
            let (prefix, what) = match matcher {
                RouteMatch::Prefix(p) => (p.digits(), Filed::Route),
                RouteMatch::Regex(r) => match r.required_prefix() {
                    "" => {
                        unprefixed.entry(scope).or_default().push((r, rank));
                        continue;
                    }
                    required => (required, Filed::Regex(r)),
                },
            };
            scope_entry.lengths |= 1 << prefix.len().min(MAX_KEY_LEN);
            let key = BucketKey {
                scope: scope_entry.number,
                prefix: prefix_key(prefix),
            };
            filed.push((key, rank, what));
        }
        // Stable: each bucket keeps its routes in rank order.
        filed.sort_by_key(|(key, _, _)| (key.scope, key.prefix));
        // Sized before the first write, for the huge-page advice (as the snapshot's arrays).
        // `ranks` gets room for every prefix route, though one-route buckets keep theirs
        // inline: pages of the room never written are never resident.
        let regexes = filed.iter().filter(|(_, _, what)| what.is_regex()).count();
        index.regexes.reserve_exact(regexes);
        index.ranks.reserve_exact(filed.len() - regexes);
        let mut buckets = Vec::new();
        for routes in filed.chunk_by(|a, b| a.0 == b.0) {
            let prefix_ranks = routes.iter().filter_map(|(_, rank, what)| match what {
                Filed::Route => Some(*rank),
                Filed::Regex(_) => None,
            });
            let mut bucket = Bucket {
                first: index.ranks.len() as u32,
                prefix_routes: prefix_ranks.clone().count() as u32,
                regexes: (index.regexes.len() as u32, index.regexes.len() as u32),
            };
            match bucket.prefix_routes {
                1 => bucket.first = prefix_ranks.clone().next().expect("one route"),
                _ => index.ranks.extend(prefix_ranks),
            }
            for (_, rank, what) in routes {
                if let Filed::Regex(pattern) = what {
                    index.regexes.push(LazyRegex {
                        rank: *rank,
                        pattern: (*pattern).clone(),
                        compiled: OnceLock::new(),
                    });
                    bucket.regexes.1 += 1;
                }
            }
            buckets.push((routes[0].0, bucket));
        }
        index.buckets = BucketTable::build(&buckets, index.scopes.len());
        for (scope, patterns) in unprefixed {
            if let Some(entry) = index.scopes.get_mut(&scope) {
                entry.unprefixed = RegexMatcher::build(&patterns);
            }
        }
        index
    }

    /// The index of one scope (`Some(tenant)` or `None` for the platform defaults), if it has
    /// any route.
    pub(super) fn scope(&self, scope: Option<Uuid>) -> Option<&Scope> {
        self.scopes.get(&scope)
    }

    /// Appends the ranks of every route of `scope` matching `digits` (the destination without
    /// `+`).
    pub(super) fn matching(&self, scope: &Scope, digits: &str, out: &mut Vec<u32>) {
        let mut keys = [Slot::EMPTY; MAX_KEY_LEN + 1];
        let mut count = 0;
        let mut prefix = 0;
        for len in 0..=digits.len().min(MAX_KEY_LEN) {
            if len > 0 {
                prefix = extend(prefix, digits.as_bytes()[len - 1]);
            }
            if scope.lengths & (1 << len) != 0 {
                keys[count] = BucketKey {
                    scope: scope.number,
                    prefix,
                };
                count += 1;
            }
        }
        for bucket in self.buckets.get_each(&keys[..count]).into_iter().flatten() {
            match bucket.prefix_routes {
                1 => out.push(bucket.first),
                n => out.extend_from_slice(&self.ranks[range((bucket.first, bucket.first + n))]),
            }
            out.extend(
                self.regexes[range(bucket.regexes)]
                    .iter()
                    .filter(|r| r.is_match(digits))
                    .map(|r| r.rank),
            );
        }
        self.unprefixed_matching(scope, digits, out);
    }

    /// Appends the ranks of the scope's regexes that require no prefix and match `digits`.
    fn unprefixed_matching(&self, scope: &Scope, digits: &str, out: &mut Vec<u32>) {
        match &scope.unprefixed {
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

fn range((start, end): (u32, u32)) -> std::ops::Range<usize> {
    start as usize..end as usize
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
        if let Some(scope) = index.scope(None) {
            index.matching(scope, digits, &mut out);
        }
        out.sort();
        out
    }

    fn platform_index(routes: &[RouteMatch]) -> RouteIndex {
        RouteIndex::build(routes.iter().map(|m| (None, m)))
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
        let index = platform_index(&routes);
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
        let index = platform_index(&routes);
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
    fn among_thousands_of_buckets_each_prefix_finds_its_own_routes_and_no_other() {
        // Six-digit prefixes, none a prefix of another: enough keys for probes to run past
        // occupied slots and around the end of the table.
        let mut routes: Vec<RouteMatch> =
            (100_000..105_000).map(|p| prefix(&p.to_string())).collect();
        // One bucket of two prefix routes and a regex, beside the buckets of one route.
        routes.extend([prefix("104999"), regex("^104999[0-9]$")]);
        let index = platform_index(&routes);
        for p in [100_000u32, 100_001, 102_345, 104_998] {
            assert_eq!(matches(&index, &format!("{p}77")), [p - 100_000], "{p}");
        }
        assert_eq!(matches(&index, "1049991"), [4_999, 5_000, 5_001]);
        assert_eq!(matches(&index, "10499912"), [4_999, 5_000]);
        for absent in ["105000", "99999", "10000", "1"] {
            assert!(matches(&index, absent).is_empty(), "{absent}");
        }
    }

    #[test]
    fn an_empty_index_matches_nothing() {
        let index = RouteIndex::build(std::iter::empty());
        assert!(matches(&index, "15551234567").is_empty());
    }

    #[test]
    fn the_one_by_one_fallback_finds_what_the_set_finds() {
        let r = RouteRegex::parse("^(4930|4940)[0-9]+$").unwrap();
        let mut index = platform_index(&[regex("^(4930|4940)[0-9]+$")]);
        index.scopes.get_mut(&None).unwrap().unprefixed =
            RegexMatcher::Each(vec![(r.compile().unwrap(), 7)]);
        assert_eq!(matches(&index, "493012345"), [7]);
        assert!(matches(&index, "495012345").is_empty());
    }

    #[test]
    fn scopes_see_only_their_own_routes_and_every_prefix_has_its_own_key() {
        let (a, b) = (Some(Uuid::from_u128(1)), Some(Uuid::from_u128(2)));
        let routes = [prefix("1"), prefix("1"), prefix("*1#"), prefix("0")];
        let index = RouteIndex::build([a, b, a, a].into_iter().zip(routes.iter()));
        let found = |scope, digits| {
            let mut out = Vec::new();
            index.matching(index.scope(scope).unwrap(), digits, &mut out);
            out
        };
        assert_eq!(found(a, "15551234567"), [0]);
        assert_eq!(found(b, "15551234567"), [1]);
        assert_eq!(found(a, "*1#2"), [2]);
        // "0" and "" are different prefixes, as are "1" and "01".
        assert_eq!(found(a, "01"), [3]);
        assert!(index.scope(None).is_none());
        let keys: std::collections::HashSet<u64> = ["", "0", "00", "1", "01", "10", "#", "*"]
            .iter()
            .map(|p| prefix_key(p))
            .collect();
        assert_eq!(keys.len(), 8);
    }

    #[test]
    fn a_regex_requiring_more_than_sixteen_digits_is_filed_under_the_first_sixteen() {
        let index = platform_index(&[
            regex("^12345678901234567890[0-9]*$"),
            prefix("1234567890123456"),
        ]);
        assert_eq!(matches(&index, "123456789012345678901"), [0, 1]);
        assert_eq!(matches(&index, "123456789012345699"), [1]);
        assert!(matches(&index, "123456789012345").is_empty());
    }
}
