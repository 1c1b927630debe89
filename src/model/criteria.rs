//! The routing criteria beyond the destination (issue 5): a route's weekly [`Schedule`] in a
//! named time zone, a per-minute [`Cost`] in integer micro-units, a split [`Weight`] and caller
//! rules ([`CallerPrefix`], and [`super::RouteRegex`] reused for `caller_regex`). Parsed once,
//! when written or loaded; routing only reads them and never looks at a clock itself.

use std::fmt;

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Deserialize, Serialize};

use super::{Invalid, RouteRegex};

/// A non-negative decimal amount with at most six decimals, held as integer micro-units so
/// that money is never a float. Written as a string (`"0.0125"`) so JSON numbers cannot round it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rate(u64);

impl Rate {
    const SCALE: u64 = 1_000_000;
    /// Far above any per-minute rate, and small enough for a signed 64-bit column.
    const MAX_UNITS: u64 = 1_000_000;

    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let err = || {
            Invalid::new(
                "must be a non-negative decimal with at most 6 decimals, such as \"0.0125\"",
            )
        };
        let (units, frac) = s.split_once('.').unwrap_or((s, ""));
        let digits_ok = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
        if units.is_empty() || units.len() > 7 || !digits_ok(units) {
            return Err(err());
        }
        if (s.contains('.') && frac.is_empty()) || frac.len() > 6 || !digits_ok(frac) {
            return Err(err());
        }
        let units: u64 = units.parse().map_err(|_| err())?;
        if units > Self::MAX_UNITS {
            return Err(Invalid::new(format!("must be at most {}", Self::MAX_UNITS)));
        }
        let frac: u64 = format!("{frac:0<6}").parse().map_err(|_| err())?;
        Ok(Self(units * Self::SCALE + frac))
    }

    pub fn from_micros(micros: i64) -> Result<Self, Invalid> {
        u64::try_from(micros)
            .ok()
            .filter(|m| *m <= Self::MAX_UNITS * Self::SCALE)
            .map(Self)
            .ok_or_else(|| Invalid::new("rate out of range"))
    }

    pub fn micros(&self) -> i64 {
        // MAX_UNITS * SCALE fits easily.
        self.0 as i64
    }
}

/// The shortest decimal form: `0.0125`, `2`, `1.5`.
impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (units, frac) = (self.0 / Self::SCALE, self.0 % Self::SCALE);
        if frac == 0 {
            return write!(f, "{units}");
        }
        let frac = format!("{frac:06}");
        write!(f, "{units}.{}", frac.trim_end_matches('0'))
    }
}

impl Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// An ISO 4217 currency code: three upper-case letters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        match s.as_bytes() {
            &[a, b, c] if [a, b, c].iter().all(u8::is_ascii_uppercase) => Ok(Self([a, b, c])),
            _ => Err(Invalid::new(
                "currency must be an ISO 4217 code such as USD",
            )),
        }
    }

    pub fn usd() -> Self {
        Self(*b"USD")
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("ASCII by construction")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A per-minute rate in a currency (route cost, carrier default cost, tenant ceiling).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cost {
    pub rate: Rate,
    pub currency: Currency,
}

/// A route's share in a weighted split among routes of equal priority and cost: 0..=10000,
/// 0 meaning "only after every positive weight" (last resort).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Weight(u16);

impl Weight {
    pub const MAX: u16 = 10_000;

    pub fn new(w: i64) -> Result<Self, Invalid> {
        u16::try_from(w)
            .ok()
            .filter(|w| *w <= Self::MAX)
            .map(Self)
            .ok_or_else(|| Invalid::new("weight must be an integer from 0 to 10000"))
    }

    pub fn get(&self) -> u16 {
        self.0
    }
}

/// A caller ID prefix: `^\+?[0-9]{1,20}$`, the `+` kept as written and ignored for matching
/// (as for destination prefixes), since FreeSWITCH may post the caller with or without it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CallerPrefix(String);

impl CallerPrefix {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let digits = s.strip_prefix('+').unwrap_or(s);
        if (1..=20).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(s.to_string()))
        } else {
            Err(Invalid::new("caller prefix must match ^\\+?[0-9]{1,20}$"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digits to match against the caller number without its `+`.
    pub fn digits(&self) -> &str {
        self.0.strip_prefix('+').unwrap_or(&self.0)
    }
}

/// The optional criteria of a route besides its destination rule. All empty = the route
/// behaves exactly as a plain prefix/regex route.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteCriteria {
    /// When the route may be used; `None` = always.
    pub schedule: Option<Schedule>,
    /// Per-minute cost; `None` = the carrier's default cost.
    pub cost: Option<Cost>,
    /// Share in a weighted split; `None` counts as 1 once any route of its group has a weight.
    pub weight: Option<Weight>,
    pub caller_prefix: Option<CallerPrefix>,
    pub caller_regex: Option<RouteRegex>,
}

impl RouteCriteria {
    pub fn has_caller_rule(&self) -> bool {
        self.caller_prefix.is_some() || self.caller_regex.is_some()
    }
}

/// A minute of the day, 0 (`00:00`) to 1440 (`24:00`, only as an end).
type Minute = u16;

/// One weekly window: on each of `days`, from `start` until `end` local time. A window whose
/// `end` is not after its `start` crosses midnight and ends on the next day; `days` are the
/// days it *starts* on (as in cron-style schedules and OpenSIPS/Kamailio time recurrences).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Bit 0 = Monday … bit 6 = Sunday.
    days: u8,
    start: Minute,
    end: Minute,
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A window as written: `{"days": ["mon"], "start": "08:00", "end": "18:00"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// `mon` … `sun`.
    pub days: Vec<String>,
    /// `HH:MM`, 00:00 to 23:59.
    pub start: String,
    /// `HH:MM`, 00:00 to 24:00; not after `start` = the window runs into the next day.
    pub end: String,
}

/// A schedule as written: an IANA time zone and at least one window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// An IANA time zone name such as `Europe/Berlin` (the tz database is built in).
    pub time_zone: String,
    pub windows: Vec<WindowSpec>,
}

/// A refused schedule, naming the field inside it (`time_zone`, `windows[1].end`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleError {
    pub field: String,
    pub detail: String,
}

/// When a route may be used: weekly windows of local wall-clock time in one IANA zone. Across a
/// daylight-saving change a window simply covers the local times that exist that day (a window
/// 01:00–03:00 on a spring-forward night is one hour long), which is what operators mean by
/// "weekdays 08:00 to 18:00 Berlin time".
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    time_zone: chrono_tz::Tz,
    windows: Vec<Window>,
}

impl Schedule {
    const MAX_WINDOWS: usize = 64;

    pub fn parse(spec: &ScheduleSpec) -> Result<Self, ScheduleError> {
        let refuse = |field: String, detail: &str| ScheduleError {
            field,
            detail: detail.to_string(),
        };
        let time_zone: chrono_tz::Tz = spec.time_zone.parse().map_err(|_| {
            refuse(
                "time_zone".into(),
                "must be an IANA time zone name such as Europe/Berlin",
            )
        })?;
        if spec.windows.is_empty() || spec.windows.len() > Self::MAX_WINDOWS {
            return Err(refuse("windows".into(), "must list 1 to 64 windows"));
        }
        let mut windows = Vec::with_capacity(spec.windows.len());
        for (i, w) in spec.windows.iter().enumerate() {
            let field = |name: &str| format!("windows[{i}].{name}");
            if w.days.is_empty() {
                return Err(refuse(field("days"), "must name at least one day"));
            }
            let mut days = 0u8;
            for (j, d) in w.days.iter().enumerate() {
                let Some(bit) = DAY_NAMES.iter().position(|n| n == d) else {
                    return Err(refuse(
                        format!("windows[{i}].days[{j}]"),
                        "must be one of mon tue wed thu fri sat sun",
                    ));
                };
                days |= 1 << bit;
            }
            let start = parse_minute(&w.start)
                .filter(|m| *m < 1440)
                .ok_or_else(|| {
                    refuse(field("start"), "must be a time HH:MM from 00:00 to 23:59")
                })?;
            let end = parse_minute(&w.end)
                .ok_or_else(|| refuse(field("end"), "must be a time HH:MM from 00:00 to 24:00"))?;
            if start == end {
                return Err(refuse(
                    field("end"),
                    "must differ from start (a whole day is 00:00 to 24:00)",
                ));
            }
            windows.push(Window { days, start, end });
        }
        Ok(Schedule { time_zone, windows })
    }

    /// The canonical written form: days in week order, times as `HH:MM`.
    pub fn spec(&self) -> ScheduleSpec {
        ScheduleSpec {
            time_zone: self.time_zone.name().to_string(),
            windows: self
                .windows
                .iter()
                .map(|w| WindowSpec {
                    days: (0..7)
                        .filter(|b| w.days & (1 << b) != 0)
                        .map(|b| DAY_NAMES[b].to_string())
                        .collect(),
                    start: format_minute(w.start),
                    end: format_minute(w.end),
                })
                .collect(),
        }
    }

    /// Whether `at` falls inside one of the windows, in the schedule's local time.
    pub fn is_open(&self, at: DateTime<Utc>) -> bool {
        let local = at.with_timezone(&self.time_zone);
        let minute = (local.hour() * 60 + local.minute()) as Minute;
        let today = 1u8 << local.weekday().num_days_from_monday();
        let yesterday = 1u8 << local.weekday().pred().num_days_from_monday();
        self.windows.iter().any(|w| {
            if w.start < w.end {
                w.days & today != 0 && (w.start..w.end).contains(&minute)
            } else {
                // Crosses midnight: the evening part on a start day, the morning part on the
                // day after one.
                (w.days & today != 0 && minute >= w.start)
                    || (w.days & yesterday != 0 && minute < w.end)
            }
        })
    }
}

impl Serialize for Schedule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.spec().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spec = ScheduleSpec::deserialize(d)?;
        Schedule::parse(&spec)
            .map_err(|e| serde::de::Error::custom(format!("{}: {}", e.field, e.detail)))
    }
}

/// `HH:MM` (two digits each) to minutes; `24:00` is 1440.
fn parse_minute(s: &str) -> Option<Minute> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (Minute, Minute) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) => Some(1440),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

fn format_minute(m: Minute) -> String {
    format!("{:02}:{:02}", m / 60, m % 60)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn schedule(zone: &str, windows: &[(&[&str], &str, &str)]) -> Schedule {
        Schedule::parse(&ScheduleSpec {
            time_zone: zone.into(),
            windows: windows
                .iter()
                .map(|(days, start, end)| WindowSpec {
                    days: days.iter().map(|d| d.to_string()).collect(),
                    start: start.to_string(),
                    end: end.to_string(),
                })
                .collect(),
        })
        .unwrap()
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    const WEEKDAYS: &[&str] = &["mon", "tue", "wed", "thu", "fri"];

    #[test]
    fn a_schedule_is_open_inside_its_window_and_closed_outside_in_local_time() {
        // Office hours in Berlin; 2026-11-23 is a Monday, CET = UTC+1.
        let s = schedule("Europe/Berlin", &[(WEEKDAYS, "08:00", "18:00")]);
        assert!(s.is_open(utc(2026, 11, 23, 7, 0)), "08:00 local opens");
        assert!(s.is_open(utc(2026, 11, 23, 16, 59)), "17:59 local");
        assert!(!s.is_open(utc(2026, 11, 23, 17, 0)), "18:00 local closes");
        assert!(!s.is_open(utc(2026, 11, 23, 6, 59)), "07:59 local");
        assert!(!s.is_open(utc(2026, 11, 22, 12, 0)), "Sunday");
        // Sunday 23:30 UTC is already Monday 00:30 in Berlin, still outside the hours.
        assert!(!s.is_open(utc(2026, 11, 22, 23, 30)));
        let whole_day = schedule("UTC", &[(&["sun"], "00:00", "24:00")]);
        assert!(whole_day.is_open(utc(2026, 11, 22, 23, 59)));
        assert!(!whole_day.is_open(utc(2026, 11, 23, 0, 0)));
    }

    #[test]
    fn a_window_ending_before_it_starts_runs_into_the_next_day() {
        // Night rate Friday 22:00 to Saturday 06:00 only.
        let s = schedule("UTC", &[(&["fri"], "22:00", "06:00")]);
        assert!(s.is_open(utc(2026, 11, 27, 22, 0)), "Friday 22:00");
        assert!(s.is_open(utc(2026, 11, 28, 5, 59)), "Saturday 05:59");
        assert!(!s.is_open(utc(2026, 11, 28, 6, 0)), "Saturday 06:00");
        assert!(
            !s.is_open(utc(2026, 11, 28, 23, 0)),
            "Saturday night is not a start day"
        );
        assert!(
            !s.is_open(utc(2026, 11, 27, 3, 0)),
            "Friday morning belongs to Thursday"
        );
        assert!(!s.is_open(utc(2026, 11, 27, 21, 59)));
    }

    #[test]
    fn windows_follow_local_wall_clock_time_across_a_daylight_saving_change() {
        // Berlin springs forward on Sunday 2026-03-29: 02:00 CET becomes 03:00 CEST.
        let office = schedule("Europe/Berlin", &[(&["sat", "sun"], "08:00", "18:00")]);
        // 06:30 UTC is 07:30 on Saturday (CET) but 08:30 on Sunday (CEST).
        assert!(!office.is_open(utc(2026, 3, 28, 6, 30)));
        assert!(office.is_open(utc(2026, 3, 29, 6, 30)));
        // 16:30 UTC is 17:30 on Saturday but 18:30 on Sunday.
        assert!(office.is_open(utc(2026, 3, 28, 16, 30)));
        assert!(!office.is_open(utc(2026, 3, 29, 16, 30)));
        // A window over the skipped hour covers the local times that exist: 01:00–02:00 CET.
        let night = schedule("Europe/Berlin", &[(&["sun"], "01:00", "03:00")]);
        assert!(night.is_open(utc(2026, 3, 29, 0, 30)), "01:30 CET");
        assert!(!night.is_open(utc(2026, 3, 29, 1, 0)), "03:00 CEST");
        // Falling back on 2026-10-25, 02:30 happens twice and is inside both times.
        let late = schedule("Europe/Berlin", &[(&["sun"], "02:00", "03:00")]);
        assert!(late.is_open(utc(2026, 10, 25, 0, 30)), "02:30 CEST");
        assert!(late.is_open(utc(2026, 10, 25, 1, 30)), "02:30 CET");
        assert!(!late.is_open(utc(2026, 10, 25, 2, 0)), "03:00 CET");
    }

    #[test]
    fn impossible_schedules_are_refused_naming_the_field() {
        let spec = |zone: &str, days: &[&str], start: &str, end: &str| ScheduleSpec {
            time_zone: zone.into(),
            windows: vec![
                WindowSpec {
                    days: vec!["mon".into()],
                    start: "08:00".into(),
                    end: "09:00".into(),
                },
                WindowSpec {
                    days: days.iter().map(|d| d.to_string()).collect(),
                    start: start.into(),
                    end: end.into(),
                },
            ],
        };
        let field = |s: ScheduleSpec| Schedule::parse(&s).unwrap_err().field;
        assert_eq!(
            field(spec("Mars/Olympus", &["mon"], "08:00", "09:00")),
            "time_zone"
        );
        assert_eq!(
            field(spec("UTC", &["mon"], "08:00", "08:00")),
            "windows[1].end"
        );
        assert_eq!(
            field(spec("UTC", &["mon"], "24:00", "08:00")),
            "windows[1].start"
        );
        assert_eq!(
            field(spec("UTC", &["mon"], "08:00", "24:01")),
            "windows[1].end"
        );
        assert_eq!(
            field(spec("UTC", &["mon"], "8:00", "09:00")),
            "windows[1].start"
        );
        assert_eq!(
            field(spec("UTC", &["mon"], "08:60", "09:00")),
            "windows[1].start"
        );
        assert_eq!(
            field(spec("UTC", &["mon", "funday"], "08:00", "09:00")),
            "windows[1].days[1]"
        );
        assert_eq!(field(spec("UTC", &[], "08:00", "09:00")), "windows[1].days");
        let empty = ScheduleSpec {
            time_zone: "UTC".into(),
            windows: vec![],
        };
        assert_eq!(field(empty), "windows");
    }

    #[test]
    fn a_schedule_round_trips_in_canonical_form() {
        let s = schedule("America/New_York", &[(&["fri", "mon"], "22:00", "24:00")]);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"time_zone": "America/New_York",
                "windows": [{"days": ["mon", "fri"], "start": "22:00", "end": "24:00"}]})
        );
        assert_eq!(serde_json::from_value::<Schedule>(json).unwrap(), s);
    }

    #[test]
    fn rates_are_exact_micro_units() {
        assert_eq!(Rate::parse("0.0125").unwrap().micros(), 12_500);
        assert_eq!(Rate::parse("0.0125").unwrap().to_string(), "0.0125");
        assert_eq!(Rate::parse("2").unwrap().to_string(), "2");
        assert_eq!(Rate::parse("1.500000").unwrap().to_string(), "1.5");
        assert_eq!(Rate::parse("0.000001").unwrap().micros(), 1);
        for bad in [
            "",
            "-1",
            "0.0000001",
            "1e3",
            ".5",
            "1.",
            " 1",
            "NaN",
            "1,5",
            "2000000",
        ] {
            assert!(Rate::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Currency::parse("EUR").is_ok());
        for bad in ["eur", "EURO", "E1R", ""] {
            assert!(Currency::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Weight::new(10_000).is_ok() && Weight::new(10_001).is_err());
        assert!(Weight::new(-1).is_err());
        assert_eq!(CallerPrefix::parse("+4930").unwrap().digits(), "4930");
        assert!(CallerPrefix::parse("49*").is_err() && CallerPrefix::parse("").is_err());
    }
}
