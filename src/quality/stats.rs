//! Quality over rolling windows (5 min, 1 h, 24 h), per key (a carrier, the call's tenant and
//! the route whose prefix sent the call there); a report sums the keys it asks for (a carrier
//! as a whole, or as one tenant saw it). Pure: the minute is passed in.
//!
//! Each key keeps one bucket per minute that saw traffic, at most a day of them; a window sums
//! the buckets of its last N minutes (the current minute included, so "5 min" is the last 4 to
//! 5 minutes), and every report a request makes is gathered in one pass over the keys
//! ([`Rolling::tally`]). Post-dial delay goes into a fixed histogram, so its percentiles are the upper
//! bound of the bucket they fall in ([`PDD_BOUNDS_MS`]), never a guess between samples.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::Hash;

use serde::Serialize;

use crate::model::Attempt;

/// The windows every report covers: name and length in minutes.
pub const WINDOWS: [(&str, i64); 3] = [("5m", 5), ("1h", 60), ("24h", 1440)];
const KEPT_MINUTES: i64 = 1440;

/// Upper bounds (ms) of the post-dial delay histogram; one more bucket holds the rest.
pub const PDD_BOUNDS_MS: [u32; 15] = [
    100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10_000, 15_000, 20_000, 30_000,
];

#[derive(Debug, Clone, Default)]
struct Bucket {
    minute: i64,
    attempts: u32,
    answered: u32,
    billable_seconds: u64,
    pdd: [u32; PDD_BOUNDS_MS.len() + 1],
    /// Final SIP status → attempts; 0 = no final answer.
    statuses: Vec<(u16, u32)>,
}

impl Bucket {
    fn add(&mut self, a: &Attempt) {
        self.attempts += 1;
        if a.answered() {
            self.answered += 1;
            self.billable_seconds += u64::from(a.billable_seconds);
        }
        if let Some(pdd) = a.pdd() {
            let ms = u32::try_from(pdd.num_milliseconds().max(0)).unwrap_or(u32::MAX);
            let i = PDD_BOUNDS_MS.partition_point(|&b| b < ms);
            self.pdd[i] += 1;
        }
        let status = a.sip_status.unwrap_or(0);
        match self.statuses.iter_mut().find(|(s, _)| *s == status) {
            Some((_, n)) => *n += 1,
            None => self.statuses.push((status, 1)),
        }
    }

    fn merge(&mut self, b: &Bucket) {
        self.attempts += b.attempts;
        self.answered += b.answered;
        self.billable_seconds += b.billable_seconds;
        for (total, n) in self.pdd.iter_mut().zip(b.pdd) {
            *total += n;
        }
        for (status, n) in &b.statuses {
            match self.statuses.iter_mut().find(|(s, _)| s == status) {
                Some((_, total)) => *total += n,
                None => self.statuses.push((*status, *n)),
            }
        }
    }
}

/// One window's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct WindowStats {
    pub attempts: u32,
    pub answered: u32,
    /// Answered / attempts; `None` without attempts.
    pub asr: Option<f64>,
    /// Average billable seconds of the answered attempts; `None` without answers.
    pub acd_seconds: Option<f64>,
    /// Post-dial delay percentiles (ms, the bound of the histogram bucket they fall in; `None`
    /// above the last bound or without progress).
    pub pdd_p50_ms: Option<u32>,
    pub pdd_p95_ms: Option<u32>,
    /// Attempts per final SIP status (`"none"`: no final answer).
    pub statuses: BTreeMap<String, u32>,
}

fn percentile(hist: &[u32; PDD_BOUNDS_MS.len() + 1], p: f64) -> Option<u32> {
    let total: u32 = hist.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = (f64::from(total) * p).ceil().max(1.0) as u32;
    let mut seen = 0;
    for (i, n) in hist.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return PDD_BOUNDS_MS.get(i).copied();
        }
    }
    None
}

/// Rolling buckets per key.
#[derive(Debug)]
pub struct Rolling<K> {
    keys: HashMap<K, VecDeque<Bucket>>,
}

impl<K> Default for Rolling<K> {
    fn default() -> Self {
        Rolling {
            keys: HashMap::new(),
        }
    }
}

impl<K: Eq + Hash + Clone> Rolling<K> {
    /// Counts one attempt under `key` at `minute` (minutes since the epoch).
    pub fn add(&mut self, key: K, minute: i64, a: &Attempt) {
        let buckets = self.keys.entry(key).or_default();
        if buckets.back().is_none_or(|b| b.minute < minute) {
            buckets.push_back(Bucket {
                minute,
                ..Bucket::default()
            });
        }
        // An event from a minute already closed (late, or a node's clock behind) joins the
        // newest bucket: counted, never lost.
        buckets.back_mut().expect("just pushed").add(a);
        while buckets
            .front()
            .is_some_and(|b| b.minute <= minute - KEPT_MINUTES)
        {
            buckets.pop_front();
        }
    }

    /// Drops the keys that saw nothing in a day (bounded memory).
    pub fn prune(&mut self, minute: i64) {
        self.keys.retain(|_, buckets| {
            buckets
                .back()
                .is_some_and(|b| b.minute > minute - KEPT_MINUTES)
        });
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.keys.keys()
    }
    /// One pass over the keys: each key `group` puts in a group has its buckets summed into
    /// that group's [`Tally`]; `None` leaves the key out. Every key is visited once and every
    /// bucket added once, so a report of every carrier costs what the keys hold, not keys ×
    /// carriers × routes.
    pub fn tally<G: Eq + Hash>(
        &self,
        mut group: impl FnMut(&K) -> Option<G>,
        minute: i64,
    ) -> HashMap<G, Tally> {
        let mut tallies: HashMap<G, Tally> = HashMap::new();
        for (key, buckets) in &self.keys {
            let Some(g) = group(key) else { continue };
            let tally = tallies.entry(g).or_default();
            for b in buckets {
                tally.add(b, minute);
            }
        }
        tallies
    }
}

/// Buckets summed by the narrowest window each falls in (slot 0: the last 5 minutes, slot 1:
/// the rest of the hour, slot 2: the rest of the day), so a bucket is added once and the
/// windows are the running sums of the slots.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    slots: [Bucket; WINDOWS.len()],
}

impl Tally {
    fn add(&mut self, b: &Bucket, minute: i64) {
        if let Some(slot) = WINDOWS
            .iter()
            .position(|(_, minutes)| b.minute > minute - minutes)
        {
            self.slots[slot].merge(b);
        }
    }

    /// Adds `other`'s sums to these (a carrier's tally from its routes').
    pub fn merge(&mut self, other: &Tally) {
        for (slot, o) in self.slots.iter_mut().zip(&other.slots) {
            slot.merge(o);
        }
    }

    /// Every window's figures, by window name.
    pub fn windows(&self) -> BTreeMap<&'static str, WindowStats> {
        let mut sum = Bucket::default();
        WINDOWS
            .iter()
            .zip(&self.slots)
            .map(|((name, _), slot)| {
                sum.merge(slot);
                (*name, WindowStats::of(&sum))
            })
            .collect()
    }
}

impl WindowStats {
    fn of(sum: &Bucket) -> WindowStats {
        WindowStats {
            attempts: sum.attempts,
            answered: sum.answered,
            asr: (sum.attempts > 0).then(|| f64::from(sum.answered) / f64::from(sum.attempts)),
            acd_seconds: (sum.answered > 0)
                .then(|| sum.billable_seconds as f64 / f64::from(sum.answered)),
            pdd_p50_ms: percentile(&sum.pdd, 0.5),
            pdd_p95_ms: percentile(&sum.pdd, 0.95),
            statuses: sum
                .statuses
                .iter()
                .map(|(s, n)| {
                    let name = if *s == 0 {
                        "none".into()
                    } else {
                        s.to_string()
                    };
                    (name, *n)
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone, Utc};
    use uuid::Uuid;

    use super::*;

    fn attempt(status: Option<u16>, pdd_ms: Option<i64>, billsec: u32) -> Attempt {
        let start = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
        let answered = status == Some(200);
        Attempt {
            id: Uuid::nil(),
            call_id: Uuid::nil(),
            leg_id: Uuid::nil(),
            switch_id: None,
            tenant_id: None,
            route_id: None,
            carrier_id: Uuid::nil(),
            gateway: "alpha".into(),
            number: "1555".into(),
            attempt: 1,
            sip_status: status,
            cause: "NORMAL_CLEARING".into(),
            q850: None,
            started_at: start,
            progress_at: pdd_ms.map(|ms| start + Duration::milliseconds(ms)),
            answered_at: answered.then(|| start + Duration::seconds(2)),
            ended_at: start + Duration::seconds(10),
            billable_seconds: billsec,
            hangup_by: None,
        }
    }

    /// The windows of the keys `wanted` picks, summed.
    fn windows<K: Eq + Hash + Clone>(
        r: &Rolling<K>,
        wanted: impl Fn(&K) -> bool,
        now: i64,
    ) -> BTreeMap<&'static str, WindowStats> {
        r.tally(|k| wanted(k).then_some(()), now)
            .remove(&())
            .unwrap_or_default()
            .windows()
    }

    #[test]
    fn windows_count_what_fell_in_them() {
        let mut r = Rolling::default();
        let now = 1000;
        r.add("a", now - 100, &attempt(Some(200), Some(150), 30));
        r.add("a", now - 10, &attempt(Some(503), None, 0));
        r.add("a", now, &attempt(Some(200), Some(900), 10));
        r.add("a", now, &attempt(None, None, 0));
        r.add("b", now, &attempt(Some(486), None, 0));
        let w = windows(&r, |k| *k == "a", now);
        assert_eq!((w["5m"].attempts, w["5m"].answered), (2, 1));
        assert_eq!((w["1h"].attempts, w["24h"].attempts), (3, 4));
        assert_eq!(w["24h"].asr, Some(0.5));
        assert_eq!(w["24h"].acd_seconds, Some(20.0));
        assert_eq!(w["24h"].pdd_p50_ms, Some(200));
        assert_eq!(w["24h"].pdd_p95_ms, Some(1000));
        assert_eq!(
            w["24h"].statuses,
            BTreeMap::from([("200".into(), 2), ("503".into(), 1), ("none".into(), 1)])
        );
        assert_eq!(
            windows(&r, |k| *k == "c", now)["5m"],
            WindowStats::default()
        );
        assert_eq!(
            windows(&r, |_| true, now)["5m"].attempts,
            3,
            "every key summed"
        );
    }

    #[test]
    fn one_pass_visits_each_key_once_and_merged_groups_sum_as_one() {
        // Arrange: 300 keys, three groups of 100.
        let mut r = Rolling::default();
        let now = 1000;
        for key in 0..300u32 {
            r.add(
                key,
                now - i64::from(key % 90),
                &attempt(Some(200), Some(150), 1),
            );
            r.add(key, now, &attempt(Some(503), None, 0));
        }
        // Act
        let mut visits = 0;
        let groups = r.tally(
            |k| {
                visits += 1;
                Some(k % 3)
            },
            now,
        );
        // Assert: what the old per-group scans cost is gone (keys × groups × windows visits).
        assert_eq!(visits, 300);
        let mut all = Tally::default();
        for g in groups.values() {
            assert_eq!(g.windows()["24h"].attempts, 200);
            all.merge(g);
        }
        assert_eq!(all.windows(), windows(&r, |_| true, now));
        let w = all.windows();
        assert_eq!(
            (w["5m"].attempts, w["1h"].attempts, w["24h"].attempts),
            (320, 510, 600)
        );
    }

    #[test]
    fn a_day_old_minute_leaves_and_idle_keys_go() {
        let mut r = Rolling::default();
        r.add("a", 0, &attempt(Some(200), None, 1));
        r.add("a", 1440, &attempt(Some(200), None, 1));
        assert_eq!(windows(&r, |_| true, 1440)["24h"].attempts, 1);
        r.prune(2880);
        assert_eq!(r.keys().count(), 0);
    }
}
