//! The try order of one call's candidate routes, and the criterion that decided each place.
//!
//! Priority ascending; within equal priority the cheaper first (unknown cost after every known
//! cost); within equal priority and cost, when any route of that group has a weight, a
//! weighted draw (a missing weight counts as 1, weight 0 comes after every positive weight);
//! otherwise the snapshot's rank order (prefix before regex, longer prefix, age).
//!
//! The draw is seeded from the call's `Unique-ID`, never from a global generator: the exact
//! failover form fetches the dialplan again after each failed leg, and every fetch of one call
//! must see the same order. Pure: no I/O, no clock.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

use super::Criterion;
use super::snapshot::RouteEntry;
use crate::model::{Rate, Weight};

/// The seed of calls without a `Unique-ID` and of route explain without a call id, so that the
/// two agree.
const FIXED_SEED: u64 = 0x7472_756e_6b6c_696e;

/// One route that matched this call, with what ordering it needs.
pub(super) struct Candidate<'a> {
    pub(super) rank: u32,
    pub(super) route: &'a RouteEntry,
    /// Set by [`order`]: its (priority, cost) group was drawn by weight.
    weighted: bool,
}

impl<'a> Candidate<'a> {
    pub(super) fn new(rank: u32, route: &'a RouteEntry) -> Self {
        Candidate {
            rank,
            route,
            weighted: false,
        }
    }

    /// The route's per-minute cost in the platform currency (its own, else its carrier's).
    pub(super) fn cost(&self) -> Option<Rate> {
        self.route.cost.map(|(rate, _)| rate)
    }

    /// Known costs ascending, then unknown.
    fn group(&self) -> (i64, bool, Option<Rate>) {
        let cost = self.cost();
        (self.route.priority, cost.is_none(), cost)
    }

    fn weight(&self) -> Option<Weight> {
        self.route.weight
    }
}

/// Puts `candidates` (in rank order) into try order and returns, for each place, the criterion
/// that decided it: `Weight` for a place drawn, else what sets it apart from the route before
/// it (for the first, from the route after it).
pub(super) fn order(candidates: &mut [Candidate<'_>], call_id: Option<Uuid>) -> Vec<Criterion> {
    candidates.sort_by_key(|c| (c.group(), c.rank));
    let mut rng = None;
    let mut start = 0;
    while start < candidates.len() {
        let group = candidates[start].group();
        let len = candidates[start..]
            .iter()
            .take_while(|c| c.group() == group)
            .count();
        let members = &mut candidates[start..start + len];
        if len > 1 && members.iter().any(|c| c.weight().is_some()) {
            let rng = rng.get_or_insert_with(|| StdRng::seed_from_u64(seed(call_id)));
            let weights: Vec<u16> = members
                .iter()
                .map(|c| c.weight().map_or(1, |w| w.get()))
                .collect();
            let ranks: Vec<u32> = members.iter().map(|c| c.rank).collect();
            let drawn = weighted_order(&weights, rng);
            // Groups are a handful of routes: a linear lookup is the cheapest sort key.
            members.sort_by_key(|c| drawn.iter().position(|&i| ranks[i] == c.rank));
            members.iter_mut().for_each(|c| c.weighted = true);
        }
        start += len;
    }
    (0..candidates.len())
        .map(|i| {
            let neighbour = if i > 0 { i - 1 } else { i + 1 };
            candidates
                .get(neighbour)
                .map_or(Criterion::Only, |n| criterion(&candidates[i], n))
        })
        .collect()
}

/// What placed `a` next to its neighbour `b` in the try order. A place drawn by weight is
/// always `Weight`: the draw is what decided it among its equals, whatever came before.
fn criterion(a: &Candidate<'_>, b: &Candidate<'_>) -> Criterion {
    if a.weighted {
        Criterion::Weight
    } else if a.route.priority != b.route.priority {
        Criterion::Priority
    } else if a.group() != b.group() {
        Criterion::Cost
    } else if a.route.specificity() != b.route.specificity() {
        Criterion::Specificity
    } else {
        Criterion::Age
    }
}

fn seed(call_id: Option<Uuid>) -> u64 {
    call_id.map_or(FIXED_SEED, |id| {
        let (high, low) = id.as_u64_pair();
        high ^ low
    })
}

/// A weighted random order of `weights.len()` items without replacement: each next item is
/// drawn among the remaining positive weights in proportion to its weight, so the first place
/// goes to item `i` with probability `w_i / Σw`. Zero weights follow, in their given order.
/// Integer arithmetic only, so the same seed gives the same order everywhere.
pub(super) fn weighted_order(weights: &[u16], rng: &mut impl Rng) -> Vec<usize> {
    let mut positive: Vec<usize> = (0..weights.len()).filter(|&i| weights[i] > 0).collect();
    let mut out = Vec::with_capacity(weights.len());
    while !positive.is_empty() {
        let total: u32 = positive.iter().map(|&i| u32::from(weights[i])).sum();
        let mut pick = rng.random_range(0..total);
        let at = positive
            .iter()
            .position(|&i| {
                let w = u32::from(weights[i]);
                if pick < w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .expect("pick < total");
        out.push(positive.remove(at));
    }
    out.extend((0..weights.len()).filter(|&i| weights[i] == 0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_weights_come_last_in_their_order_and_a_seed_repeats_its_draw() {
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..100 {
            let order = weighted_order(&[0, 5, 0, 1], &mut rng);
            assert_eq!(order[2..], [0, 2]);
        }
        let draw = |s| weighted_order(&[3, 3, 3, 3], &mut StdRng::seed_from_u64(s));
        assert_eq!(draw(42), draw(42));
        assert_eq!(weighted_order(&[0, 0], &mut rng), [0, 1]);
    }
}
