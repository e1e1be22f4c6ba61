//! Recurring payouts: when each occurrence of a schedule falls, and what the
//! coordinator does about the ones that are due at a given time.
//!
//! A schedule's [`Timing`] is immutable once created, and occurrence `n`
//! becomes a payout whose id is built from the schedule id and `n`, so the
//! time of every occurrence is a pure function of the timing and `n`
//! ([`Timing::occurrence_at`]), computed directly rather than by walking
//! from occurrence 0: the coordinator, the signers and the offline auditor
//! must agree on it however long the schedule has run. The coordinator only
//! stores the first occurrence it has not handled yet and asks
//! [`Timing::due`] what to do; no clock is read here.
//!
//! All times are Unix seconds, UTC (calendar rules have no time zone, so
//! no daylight-saving gaps). Occurrences exist up to the end of year 9999
//! ([`MAX_TIME`]), which bounds every schedule and keeps all arithmetic
//! checked rather than wrapping.

use chrono::{DateTime, Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

/// The latest time any occurrence may fall at: 9999-12-31T23:59:59Z.
pub const MAX_TIME: u64 = 253_402_300_799;

/// How late an occurrence may be paid by default ([`Timing::grace_secs`]).
pub const DEFAULT_GRACE_SECS: u64 = 3600;

/// The longest allowed [`Timing::grace_secs`]: 31 days. A longer grace would
/// let a stalled service pay a month-old occurrence as if it were on time.
pub const MAX_GRACE_SECS: u64 = 31 * DAY;

/// The longest allowed [`Rule::Daily`] `every_days` (a leap year).
pub const MAX_EVERY_DAYS: u32 = 366;

const DAY: u64 = 86_400;
const WEEK: u64 = 7 * DAY;

fn default_grace() -> u64 {
    DEFAULT_GRACE_SECS
}

/// A schedule's timing, as the API and the store hold it (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timing {
    /// When occurrences fall.
    pub rule: Rule,
    /// No occurrence before this time (Unix seconds).
    pub start: u64,
    /// At most this many occurrences (None: no count limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// No occurrence after this time (None: no end date).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<u64>,
    /// What happens to an occurrence the service could not pay within
    /// `grace_secs` of its time.
    #[serde(default)]
    pub missed: Missed,
    /// How late an occurrence may be paid before it counts as missed
    /// (default [`DEFAULT_GRACE_SECS`]).
    #[serde(default = "default_grace")]
    pub grace_secs: u64,
}

/// When a schedule's occurrences fall. Times of day are UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Rule {
    /// Monthly on `day` (1..=31) at hour:minute UTC; in a month shorter than
    /// `day`, on its last day.
    Monthly {
        /// Day of the month, 1 to 31 (clamped to the month's last day).
        day: u8,
        /// Hour, 0 to 23.
        hour: u8,
        /// Minute, 0 to 59.
        minute: u8,
    },
    /// Weekly on `weekday` at hour:minute UTC.
    Weekly {
        /// Day of the week.
        weekday: Weekday,
        /// Hour, 0 to 23.
        hour: u8,
        /// Minute, 0 to 59.
        minute: u8,
    },
    /// Every `every_days` days (1..=366) at hour:minute UTC, the first on or
    /// after `start`.
    Daily {
        /// Days between occurrences, 1 to [`MAX_EVERY_DAYS`].
        every_days: u32,
        /// Hour, 0 to 23.
        hour: u8,
        /// Minute, 0 to 59.
        minute: u8,
    },
    /// Every `every_secs` seconds, the first at `start` exactly.
    Interval {
        /// Seconds between occurrences, at least 1 and at least the
        /// deployment's minimum.
        every_secs: u64,
    },
}

/// A day of the week; JSON spells it in full, lowercase (`"monday"`).
///
/// Our own type rather than `chrono::Weekday`, whose serde form (`"Mon"`)
/// would make the API's spelling depend on a dependency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    /// Monday.
    Monday,
    /// Tuesday.
    Tuesday,
    /// Wednesday.
    Wednesday,
    /// Thursday.
    Thursday,
    /// Friday.
    Friday,
    /// Saturday.
    Saturday,
    /// Sunday.
    Sunday,
}

impl Weekday {
    /// Days since Monday: Monday 0 to Sunday 6.
    pub fn num_days_from_monday(self) -> u32 {
        match self {
            Weekday::Monday => 0,
            Weekday::Tuesday => 1,
            Weekday::Wednesday => 2,
            Weekday::Thursday => 3,
            Weekday::Friday => 4,
            Weekday::Saturday => 5,
            Weekday::Sunday => 6,
        }
    }
}

impl From<Weekday> for chrono::Weekday {
    fn from(w: Weekday) -> Self {
        match w {
            Weekday::Monday => chrono::Weekday::Mon,
            Weekday::Tuesday => chrono::Weekday::Tue,
            Weekday::Wednesday => chrono::Weekday::Wed,
            Weekday::Thursday => chrono::Weekday::Thu,
            Weekday::Friday => chrono::Weekday::Fri,
            Weekday::Saturday => chrono::Weekday::Sat,
            Weekday::Sunday => chrono::Weekday::Sun,
        }
    }
}

impl From<chrono::Weekday> for Weekday {
    fn from(w: chrono::Weekday) -> Self {
        match w {
            chrono::Weekday::Mon => Weekday::Monday,
            chrono::Weekday::Tue => Weekday::Tuesday,
            chrono::Weekday::Wed => Weekday::Wednesday,
            chrono::Weekday::Thu => Weekday::Thursday,
            chrono::Weekday::Fri => Weekday::Friday,
            chrono::Weekday::Sat => Weekday::Saturday,
            chrono::Weekday::Sun => Weekday::Sunday,
        }
    }
}

/// What happens to an occurrence that could not be paid within the grace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Missed {
    /// Pay it anyway, late (e.g. salaries: owed whatever the delay).
    #[default]
    Pay,
    /// Record it as skipped and do not pay it (e.g. a price-sensitive
    /// purchase that only makes sense on time).
    Skip,
}

/// What the coordinator does about one occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Pay occurrence `occurrence`, due at `due_at` (late or not).
    Pay {
        /// The occurrence's number, from 0.
        occurrence: u64,
        /// When it was due (Unix seconds).
        due_at: u64,
    },
    /// Record occurrence `occurrence` as skipped (missed, and the timing
    /// says skip).
    Skip {
        /// The occurrence's number, from 0.
        occurrence: u64,
        /// When it was due (Unix seconds).
        due_at: u64,
    },
}

impl Step {
    /// The occurrence's number.
    pub fn occurrence(&self) -> u64 {
        match *self {
            Step::Pay { occurrence, .. } | Step::Skip { occurrence, .. } => occurrence,
        }
    }

    /// When the occurrence was due.
    pub fn due_at(&self) -> u64 {
        match *self {
            Step::Pay { due_at, .. } | Step::Skip { due_at, .. } => due_at,
        }
    }
}

/// The answer of [`Timing::due`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// In occurrence order, starting at `next`; at most `max` of them.
    pub steps: Vec<Step>,
    /// When the first occurrence not in `steps` is due (None: none is left).
    /// When `steps` stopped at `max`, this may already be at or before `now`:
    /// ask again straight away.
    pub next_due_at: Option<u64>,
    /// True when no occurrence is left after `steps` (count reached or past
    /// `until`, or past year 9999).
    pub finished: bool,
}

/// A timing refused by [`Timing::check`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// A field is out of range or the timing as a whole cannot work.
    #[error("schedule {field}: {why}")]
    Invalid {
        /// The field at fault (`rule.day`, `count`, `until`, ...).
        field: &'static str,
        /// What is wrong with it and what is allowed.
        why: String,
    },
}

fn invalid(field: &'static str, why: String) -> ScheduleError {
    ScheduleError::Invalid { field, why }
}

/// A time as "1801386000 (2027-01-31T09:00:00Z)" for error messages.
fn show_time(t: u64) -> String {
    match i64::try_from(t)
        .ok()
        .and_then(|s| DateTime::from_timestamp(s, 0))
    {
        Some(dt) => format!("{t} ({})", dt.format("%Y-%m-%dT%H:%M:%SZ")),
        None => t.to_string(),
    }
}

fn check_hour_minute(hour: u8, minute: u8) -> Result<(), ScheduleError> {
    if hour > 23 {
        return Err(invalid(
            "rule.hour",
            format!("{hour} is not an hour of the day (0 to 23)"),
        ));
    }
    if minute > 59 {
        return Err(invalid(
            "rule.minute",
            format!("{minute} is not a minute of the hour (0 to 59)"),
        ));
    }
    Ok(())
}

/// Seconds from midnight to hour:minute (fields already checked).
fn time_of_day(hour: u8, minute: u8) -> u64 {
    u64::from(hour) * 3600 + u64::from(minute) * 60
}

/// The first instant at `tod` seconds after a midnight that is >= `start`.
fn first_daily(start: u64, tod: u64) -> Option<u64> {
    let t = start.checked_sub(start % DAY)?.checked_add(tod)?;
    if t < start {
        t.checked_add(DAY)
    } else {
        Some(t)
    }
}

/// The instant of the monthly rule in month `month_index` (year * 12 +
/// month - 1), the day clamped to the month's length; None past year 9999.
fn monthly_instant(month_index: i64, day: u8, hour: u8, minute: u8) -> Option<u64> {
    let year = i32::try_from(month_index.div_euclid(12)).ok()?;
    if year > 9999 {
        return None;
    }
    let month = u32::try_from(month_index.rem_euclid(12))
        .ok()?
        .checked_add(1)?;
    let first = NaiveDate::from_ymd_opt(year, month, 1)?;
    let d = u32::from(day).min(u32::from(first.num_days_in_month()));
    let ts = first
        .with_day(d)?
        .and_hms_opt(u32::from(hour), u32::from(minute), 0)?
        .and_utc()
        .timestamp();
    u64::try_from(ts).ok()
}

impl Rule {
    /// Checks the rule's own fields; `min_interval_secs` only applies to
    /// [`Rule::Interval`] (the calendar rules are at least a day apart).
    fn check_fields(&self, min_interval_secs: u64) -> Result<(), ScheduleError> {
        match *self {
            Rule::Monthly { day, hour, minute } => {
                if !(1..=31).contains(&day) {
                    return Err(invalid(
                        "rule.day",
                        format!("{day} is not a day of the month (1 to 31)"),
                    ));
                }
                check_hour_minute(hour, minute)
            }
            Rule::Weekly { hour, minute, .. } => check_hour_minute(hour, minute),
            Rule::Daily {
                every_days,
                hour,
                minute,
            } => {
                if !(1..=MAX_EVERY_DAYS).contains(&every_days) {
                    return Err(invalid(
                        "rule.every_days",
                        format!("{every_days} is not allowed (1 to {MAX_EVERY_DAYS} days)"),
                    ));
                }
                check_hour_minute(hour, minute)
            }
            Rule::Interval { every_secs } => {
                if every_secs == 0 {
                    return Err(invalid(
                        "rule.every_secs",
                        format!(
                            "0 is not an interval (at least {} seconds)",
                            min_interval_secs.max(1)
                        ),
                    ));
                }
                if every_secs < min_interval_secs {
                    return Err(invalid(
                        "rule.every_secs",
                        format!(
                            "{every_secs} seconds is shorter than this deployment's minimum \
                             of {min_interval_secs} seconds"
                        ),
                    ));
                }
                Ok(())
            }
        }
    }

    /// Time of occurrence `n` counted from `start`, ignoring `count` and
    /// `until`; None if the rule's fields are invalid or the time would be
    /// past [`MAX_TIME`]. Strictly increasing in `n` while Some.
    fn occurrence(&self, start: u64, n: u64) -> Option<u64> {
        // min_interval 0: only the deployment's policy, not the arithmetic,
        // depends on it; a zero interval is still refused (not increasing).
        self.check_fields(0).ok()?;
        if start > MAX_TIME {
            return None;
        }
        let t = match *self {
            Rule::Monthly { day, hour, minute } => {
                let s = DateTime::from_timestamp(i64::try_from(start).ok()?, 0)?;
                let start_month = i64::from(s.year())
                    .checked_mul(12)?
                    .checked_add(i64::from(s.month0()))?;
                let in_start_month = monthly_instant(start_month, day, hour, minute)?;
                let first_month = if in_start_month >= start {
                    start_month
                } else {
                    start_month.checked_add(1)?
                };
                let month = first_month.checked_add(i64::try_from(n).ok()?)?;
                monthly_instant(month, day, hour, minute)?
            }
            Rule::Weekly {
                weekday,
                hour,
                minute,
            } => {
                let t = first_daily(start, time_of_day(hour, minute))?;
                let wd = DateTime::from_timestamp(i64::try_from(t).ok()?, 0)?
                    .weekday()
                    .num_days_from_monday();
                let ahead = (weekday.num_days_from_monday() + 7 - wd) % 7;
                let first = t.checked_add(u64::from(ahead).checked_mul(DAY)?)?;
                first.checked_add(n.checked_mul(WEEK)?)?
            }
            Rule::Daily {
                every_days,
                hour,
                minute,
            } => {
                let first = first_daily(start, time_of_day(hour, minute))?;
                let step = u64::from(every_days).checked_mul(DAY)?;
                first.checked_add(n.checked_mul(step)?)?
            }
            Rule::Interval { every_secs } => start.checked_add(n.checked_mul(every_secs)?)?,
        };
        (t <= MAX_TIME).then_some(t)
    }
}

impl Timing {
    /// Checks the timing; `min_interval_secs` is the shortest gap between
    /// occurrences the deployment allows (only [`Rule::Interval`] can be
    /// shorter than a day, so only it is held to it).
    ///
    /// Refuses: day 0 or > 31, hour > 23, minute > 59, every_days 0 or > 366,
    /// every_secs 0 or below the minimum, count 0, until not after start,
    /// grace over 31 days, start past [`MAX_TIME`], and a timing with no
    /// occurrence at all (the first one after `until` or past year 9999).
    pub fn check(&self, min_interval_secs: u64) -> Result<(), ScheduleError> {
        self.rule.check_fields(min_interval_secs)?;
        if self.count == Some(0) {
            return Err(invalid(
                "count",
                "0 occurrences would never pay (at least 1, or leave it out for no limit)"
                    .to_string(),
            ));
        }
        if self.grace_secs > MAX_GRACE_SECS {
            return Err(invalid(
                "grace_secs",
                format!(
                    "{} is longer than 31 days (at most {MAX_GRACE_SECS} seconds)",
                    self.grace_secs
                ),
            ));
        }
        if self.start > MAX_TIME {
            return Err(invalid(
                "start",
                format!(
                    "{} is after the end of year 9999 (at most {})",
                    self.start,
                    show_time(MAX_TIME)
                ),
            ));
        }
        if let Some(until) = self.until {
            if until <= self.start {
                return Err(invalid(
                    "until",
                    format!(
                        "{} is not after start {} (must be later, or left out for no end)",
                        show_time(until),
                        show_time(self.start)
                    ),
                ));
            }
        }
        let Some(first) = self.rule.occurrence(self.start, 0) else {
            return Err(invalid(
                "start",
                format!(
                    "the first occurrence on or after {} would fall after the end of year 9999",
                    show_time(self.start)
                ),
            ));
        };
        if let Some(until) = self.until {
            if first > until {
                return Err(invalid(
                    "until",
                    format!(
                        "{} is before the first occurrence at {}, so the schedule would \
                         never pay",
                        show_time(until),
                        show_time(first)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Time of occurrence `n` (from 0), or None beyond `count` or `until`,
    /// past year 9999, or when the rule's fields are invalid. Computed
    /// directly from `n` (no walk from occurrence 0); strictly increasing in
    /// `n`, and once None, None for every later `n`.
    pub fn occurrence_at(&self, n: u64) -> Option<u64> {
        if let Some(count) = self.count {
            if n >= u64::from(count) {
                return None;
            }
        }
        let t = self.rule.occurrence(self.start, n)?;
        match self.until {
            Some(until) if t > until => None,
            _ => Some(t),
        }
    }

    /// What to do at `now`, given that occurrences before `next` are
    /// handled: every occurrence `n >= next` due at or before `now`, in
    /// order, at most `max` of them. Each is [`Step::Pay`] if `now` is within
    /// `grace_secs` of its time or the timing says [`Missed::Pay`], else
    /// [`Step::Skip`].
    pub fn due(&self, next: u64, now: u64, max: usize) -> Due {
        let mut steps = Vec::new();
        let mut n = next;
        loop {
            let Some(due_at) = self.occurrence_at(n) else {
                return Due {
                    steps,
                    next_due_at: None,
                    finished: true,
                };
            };
            if due_at > now || steps.len() >= max {
                return Due {
                    steps,
                    next_due_at: Some(due_at),
                    finished: false,
                };
            }
            let on_time = now <= due_at.saturating_add(self.grace_secs);
            steps.push(if on_time || self.missed == Missed::Pay {
                Step::Pay {
                    occurrence: n,
                    due_at,
                }
            } else {
                Step::Skip {
                    occurrence: n,
                    due_at,
                }
            });
            // n == u64::MAX cannot have a successor (it is past year 9999
            // for every valid rule anyway).
            let Some(following) = n.checked_add(1) else {
                return Due {
                    steps,
                    next_due_at: None,
                    finished: true,
                };
            };
            n = following;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Months, Timelike};
    use proptest::prelude::*;

    /// Unix time of a UTC date and time.
    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> u64 {
        let t = NaiveDate::from_ymd_opt(y, mo, d)
            .and_then(|date| date.and_hms_opt(h, mi, 0))
            .map(|dt| dt.and_utc().timestamp())
            .expect("test date");
        u64::try_from(t).expect("after 1970")
    }

    fn timing(rule: Rule, start: u64) -> Timing {
        Timing {
            rule,
            start,
            count: None,
            until: None,
            missed: Missed::Pay,
            grace_secs: DEFAULT_GRACE_SECS,
        }
    }

    fn occurrences(t: &Timing, k: u64) -> Vec<Option<u64>> {
        (0..k).map(|n| t.occurrence_at(n)).collect()
    }

    fn field_of(r: Result<(), ScheduleError>) -> &'static str {
        match r {
            Err(ScheduleError::Invalid { field, .. }) => field,
            Ok(()) => "ok",
        }
    }

    #[test]
    fn test_helper_matches_literal_unix_times() {
        // From `date -u -d ... +%s`, so the examples below do not only
        // check chrono against itself.
        assert_eq!(at(2027, 1, 15, 10, 0), 1_800_007_200);
        assert_eq!(at(2027, 1, 31, 9, 0), 1_801_386_000);
        assert_eq!(at(2027, 2, 28, 9, 0), 1_803_805_200);
        assert_eq!(at(2027, 3, 31, 9, 0), 1_806_483_600);
        assert_eq!(at(2027, 4, 30, 9, 0), 1_809_075_600);
        assert_eq!(at(2028, 2, 29, 9, 0), 1_835_427_600);
    }

    #[test]
    fn monthly_day_31_clamps_to_short_months() {
        let t = timing(
            Rule::Monthly {
                day: 31,
                hour: 9,
                minute: 0,
            },
            at(2027, 1, 15, 10, 0),
        );
        assert_eq!(
            occurrences(&t, 4),
            vec![
                Some(1_801_386_000), // 2027-01-31 09:00
                Some(1_803_805_200), // 2027-02-28 09:00
                Some(1_806_483_600), // 2027-03-31 09:00
                Some(1_809_075_600), // 2027-04-30 09:00
            ]
        );
        // Month 13 from January 2027 is February 2028, a leap year.
        assert_eq!(t.occurrence_at(13), Some(1_835_427_600));
        assert_eq!(t.occurrence_at(12), Some(at(2028, 1, 31, 9, 0)));
        assert_eq!(t.occurrence_at(14), Some(at(2028, 3, 31, 9, 0)));
    }

    #[test]
    fn monthly_day_29_in_leap_and_common_years() {
        let t = timing(
            Rule::Monthly {
                day: 29,
                hour: 0,
                minute: 30,
            },
            at(2028, 1, 1, 0, 0),
        );
        assert_eq!(
            occurrences(&t, 3),
            vec![
                Some(at(2028, 1, 29, 0, 30)),
                Some(at(2028, 2, 29, 0, 30)),
                Some(at(2028, 3, 29, 0, 30)),
            ]
        );
        assert_eq!(t.occurrence_at(13), Some(at(2029, 2, 28, 0, 30)));
        // 2100 is not a leap year.
        assert_eq!(
            t.occurrence_at((2100 - 2028) * 12 + 1),
            Some(at(2100, 2, 28, 0, 30))
        );
    }

    #[test]
    fn monthly_first_occurrence_boundaries() {
        let rule = Rule::Monthly {
            day: 15,
            hour: 12,
            minute: 0,
        };
        // Start exactly at the instant: that instant is occurrence 0.
        let t = timing(rule, at(2027, 6, 15, 12, 0));
        assert_eq!(t.occurrence_at(0), Some(at(2027, 6, 15, 12, 0)));
        // One second later: next month.
        let t = timing(rule, at(2027, 6, 15, 12, 0) + 1);
        assert_eq!(t.occurrence_at(0), Some(at(2027, 7, 15, 12, 0)));
        // December rolls over into the next year.
        let t = timing(rule, at(2027, 12, 20, 0, 0));
        assert_eq!(t.occurrence_at(0), Some(at(2028, 1, 15, 12, 0)));
        assert_eq!(t.occurrence_at(11), Some(at(2028, 12, 15, 12, 0)));
        assert_eq!(t.occurrence_at(12), Some(at(2029, 1, 15, 12, 0)));
        // Day 31 from a start in late February, after the clamped instant.
        let t = timing(
            Rule::Monthly {
                day: 31,
                hour: 9,
                minute: 0,
            },
            at(2027, 2, 28, 10, 0),
        );
        assert_eq!(t.occurrence_at(0), Some(at(2027, 3, 31, 9, 0)));
    }

    #[test]
    fn monthly_matches_chrono_add_months() {
        let t = timing(
            Rule::Monthly {
                day: 31,
                hour: 23,
                minute: 59,
            },
            at(2027, 1, 1, 0, 0),
        );
        let first = NaiveDate::from_ymd_opt(2027, 1, 31).expect("date");
        for n in [0u32, 1, 2, 5, 11, 13, 100, 1000, 12 * 500 + 1] {
            let date = first.checked_add_months(Months::new(n)).expect("date");
            let expected = date
                .and_hms_opt(23, 59, 0)
                .expect("time")
                .and_utc()
                .timestamp();
            assert_eq!(
                t.occurrence_at(u64::from(n)),
                Some(u64::try_from(expected).expect("positive")),
                "n = {n}"
            );
        }
    }

    #[test]
    fn monthly_ends_at_year_9999() {
        let t = timing(
            Rule::Monthly {
                day: 31,
                hour: 23,
                minute: 59,
            },
            at(9999, 11, 1, 0, 0),
        );
        assert_eq!(t.occurrence_at(0), Some(at(9999, 11, 30, 23, 59)));
        assert_eq!(t.occurrence_at(1), Some(at(9999, 12, 31, 23, 59)));
        assert_eq!(t.occurrence_at(2), None);
        assert_eq!(t.occurrence_at(u64::MAX), None);
        assert!(t.check(0).is_ok());
    }

    #[test]
    fn weekly_examples() {
        // 2027-01-15 is a Friday.
        let rule = Rule::Weekly {
            weekday: Weekday::Monday,
            hour: 8,
            minute: 15,
        };
        let t = timing(rule, at(2027, 1, 15, 10, 0));
        assert_eq!(
            occurrences(&t, 3),
            vec![
                Some(at(2027, 1, 18, 8, 15)),
                Some(at(2027, 1, 25, 8, 15)),
                Some(at(2027, 2, 1, 8, 15)),
            ]
        );
        // Same weekday, later time of day: that same day.
        let t = timing(
            Rule::Weekly {
                weekday: Weekday::Friday,
                hour: 10,
                minute: 0,
            },
            at(2027, 1, 15, 10, 0),
        );
        assert_eq!(t.occurrence_at(0), Some(at(2027, 1, 15, 10, 0)));
        assert_eq!(t.occurrence_at(52), Some(at(2028, 1, 14, 10, 0)));
        // Same weekday, earlier time of day: a week later.
        let t = timing(
            Rule::Weekly {
                weekday: Weekday::Friday,
                hour: 9,
                minute: 59,
            },
            at(2027, 1, 15, 10, 0),
        );
        assert_eq!(t.occurrence_at(0), Some(at(2027, 1, 22, 9, 59)));
        // Sunday, from the Unix epoch (a Thursday).
        let t = timing(
            Rule::Weekly {
                weekday: Weekday::Sunday,
                hour: 0,
                minute: 0,
            },
            0,
        );
        assert_eq!(t.occurrence_at(0), Some(at(1970, 1, 4, 0, 0)));
    }

    #[test]
    fn daily_every_two_days() {
        let t = timing(
            Rule::Daily {
                every_days: 2,
                hour: 6,
                minute: 30,
            },
            at(2027, 2, 27, 7, 0),
        );
        // 06:30 on the 27th is before start, so the first is on the 28th.
        assert_eq!(
            occurrences(&t, 4),
            vec![
                Some(at(2027, 2, 28, 6, 30)),
                Some(at(2027, 3, 2, 6, 30)),
                Some(at(2027, 3, 4, 6, 30)),
                Some(at(2027, 3, 6, 6, 30)),
            ]
        );
        let t = timing(
            Rule::Daily {
                every_days: 1,
                hour: 7,
                minute: 0,
            },
            at(2027, 2, 27, 7, 0),
        );
        assert_eq!(t.occurrence_at(0), Some(at(2027, 2, 27, 7, 0)));
        assert_eq!(t.occurrence_at(365), Some(at(2028, 2, 27, 7, 0)));
    }

    #[test]
    fn interval_examples() {
        let start = at(2027, 1, 15, 10, 0) + 17;
        let t = timing(Rule::Interval { every_secs: 900 }, start);
        assert_eq!(
            occurrences(&t, 3),
            vec![Some(start), Some(start + 900), Some(start + 1800)]
        );
        assert_eq!(t.occurrence_at(1_000_000), Some(start + 900_000_000));
        assert_eq!(t.occurrence_at(u64::MAX), None);
        let t = timing(Rule::Interval { every_secs: 1 }, MAX_TIME - 1);
        assert_eq!(
            occurrences(&t, 3),
            vec![Some(MAX_TIME - 1), Some(MAX_TIME), None]
        );
    }

    #[test]
    fn count_and_until_limit_occurrences() {
        let start = at(2027, 1, 1, 0, 0);
        let mut t = timing(Rule::Interval { every_secs: 60 }, start);
        t.count = Some(3);
        assert_eq!(
            occurrences(&t, 4),
            vec![Some(start), Some(start + 60), Some(start + 120), None]
        );
        t.count = None;
        // `until` is inclusive.
        t.until = Some(start + 120);
        assert_eq!(
            occurrences(&t, 4),
            vec![Some(start), Some(start + 60), Some(start + 120), None]
        );
        t.until = Some(start + 119);
        assert_eq!(t.occurrence_at(2), None);
        t.count = Some(1);
        assert_eq!(occurrences(&t, 2), vec![Some(start), None]);
    }

    #[test]
    fn check_accepts_valid_timings() {
        let start = at(2027, 1, 15, 10, 0);
        for rule in [
            Rule::Monthly {
                day: 31,
                hour: 23,
                minute: 59,
            },
            Rule::Monthly {
                day: 1,
                hour: 0,
                minute: 0,
            },
            Rule::Weekly {
                weekday: Weekday::Sunday,
                hour: 0,
                minute: 0,
            },
            Rule::Daily {
                every_days: 366,
                hour: 12,
                minute: 0,
            },
            Rule::Interval { every_secs: 60 },
        ] {
            let mut t = timing(rule, start);
            assert_eq!(t.check(60), Ok(()), "{rule:?}");
            t.count = Some(1);
            t.until = Some(MAX_TIME + 1_000);
            t.grace_secs = MAX_GRACE_SECS;
            t.missed = Missed::Skip;
            assert_eq!(t.check(60), Ok(()), "{rule:?}");
        }
    }

    #[test]
    fn check_refuses_each_bad_field() {
        let start = at(2027, 1, 15, 10, 0);
        let monthly = |day, hour, minute| timing(Rule::Monthly { day, hour, minute }, start);
        assert_eq!(field_of(monthly(0, 9, 0).check(0)), "rule.day");
        assert_eq!(field_of(monthly(32, 9, 0).check(0)), "rule.day");
        assert_eq!(field_of(monthly(1, 24, 0).check(0)), "rule.hour");
        assert_eq!(field_of(monthly(1, 9, 60).check(0)), "rule.minute");
        let weekly = |hour, minute| {
            timing(
                Rule::Weekly {
                    weekday: Weekday::Monday,
                    hour,
                    minute,
                },
                start,
            )
        };
        assert_eq!(field_of(weekly(255, 0).check(0)), "rule.hour");
        assert_eq!(field_of(weekly(0, 255).check(0)), "rule.minute");
        let daily = |every_days, hour| {
            timing(
                Rule::Daily {
                    every_days,
                    hour,
                    minute: 0,
                },
                start,
            )
        };
        assert_eq!(field_of(daily(0, 0).check(0)), "rule.every_days");
        assert_eq!(field_of(daily(367, 0).check(0)), "rule.every_days");
        assert_eq!(field_of(daily(1, 24).check(0)), "rule.hour");
        let interval = |every_secs| timing(Rule::Interval { every_secs }, start);
        assert_eq!(field_of(interval(0).check(0)), "rule.every_secs");
        assert_eq!(field_of(interval(59).check(60)), "rule.every_secs");
        assert_eq!(interval(60).check(60), Ok(()));

        let mut t = interval(60);
        t.count = Some(0);
        assert_eq!(field_of(t.check(0)), "count");

        let mut t = interval(60);
        t.until = Some(start);
        assert_eq!(field_of(t.check(0)), "until");
        t.until = Some(start - 1);
        assert_eq!(field_of(t.check(0)), "until");

        // until after start but before the first occurrence.
        let mut t = monthly(31, 9, 0);
        t.until = Some(at(2027, 1, 31, 8, 59));
        assert_eq!(field_of(t.check(0)), "until");
        t.until = Some(at(2027, 1, 31, 9, 0));
        assert_eq!(t.check(0), Ok(()));

        let mut t = interval(60);
        t.grace_secs = MAX_GRACE_SECS + 1;
        assert_eq!(field_of(t.check(0)), "grace_secs");

        let mut t = interval(60);
        t.start = MAX_TIME + 1;
        assert_eq!(field_of(t.check(0)), "start");
        t.start = u64::MAX;
        assert_eq!(field_of(t.check(0)), "start");

        // Start within range, but the first occurrence would be in 10000.
        let t = timing(
            Rule::Monthly {
                day: 1,
                hour: 0,
                minute: 0,
            },
            at(9999, 12, 2, 0, 0),
        );
        assert_eq!(field_of(t.check(0)), "start");
        let t = timing(
            Rule::Daily {
                every_days: 1,
                hour: 0,
                minute: 0,
            },
            MAX_TIME,
        );
        assert_eq!(field_of(t.check(0)), "start");
    }

    #[test]
    fn check_messages_name_field_and_range() {
        let t = timing(
            Rule::Monthly {
                day: 32,
                hour: 9,
                minute: 0,
            },
            0,
        );
        let e = t.check(0).expect_err("day 32");
        assert_eq!(
            e.to_string(),
            "schedule rule.day: 32 is not a day of the month (1 to 31)"
        );
        let mut t = timing(
            Rule::Monthly {
                day: 31,
                hour: 9,
                minute: 0,
            },
            at(2027, 1, 15, 10, 0),
        );
        t.until = Some(at(2027, 1, 20, 0, 0));
        let e = t.check(0).expect_err("until before first");
        assert!(e.to_string().contains("2027-01-31T09:00:00Z"), "{e}");
        let e = timing(Rule::Interval { every_secs: 5 }, 0)
            .check(60)
            .expect_err("too short");
        assert!(e.to_string().contains("minimum of 60 seconds"), "{e}");
    }

    #[test]
    fn invalid_rules_have_no_occurrences() {
        for rule in [
            Rule::Monthly {
                day: 0,
                hour: 0,
                minute: 0,
            },
            Rule::Monthly {
                day: 200,
                hour: 0,
                minute: 0,
            },
            Rule::Weekly {
                weekday: Weekday::Monday,
                hour: 24,
                minute: 0,
            },
            Rule::Daily {
                every_days: 0,
                hour: 0,
                minute: 0,
            },
            Rule::Interval { every_secs: 0 },
        ] {
            let t = timing(rule, 1_000);
            assert_eq!(t.occurrence_at(0), None, "{rule:?}");
            assert_eq!(
                t.due(0, u64::MAX, 10),
                Due {
                    steps: vec![],
                    next_due_at: None,
                    finished: true
                }
            );
        }
    }

    #[test]
    fn due_pays_within_grace_and_skips_after_when_told() {
        let start = at(2027, 1, 1, 0, 0);
        let mut t = timing(Rule::Interval { every_secs: 3600 }, start);
        t.grace_secs = 600;
        t.missed = Missed::Skip;
        // At start + 2h + 600s: occurrence 0 (2h late) and 1 (1h late) are
        // missed, 2 is exactly at the end of its grace.
        let now = start + 7200 + 600;
        let d = t.due(0, now, 10);
        assert_eq!(
            d,
            Due {
                steps: vec![
                    Step::Skip {
                        occurrence: 0,
                        due_at: start
                    },
                    Step::Skip {
                        occurrence: 1,
                        due_at: start + 3600
                    },
                    Step::Pay {
                        occurrence: 2,
                        due_at: start + 7200
                    },
                ],
                next_due_at: Some(start + 3 * 3600),
                finished: false,
            }
        );
        // One second later, occurrence 2 is missed too.
        let d = t.due(2, now + 1, 10);
        assert_eq!(
            d.steps,
            vec![Step::Skip {
                occurrence: 2,
                due_at: start + 7200
            }]
        );
        // Missed::Pay pays them all, late.
        t.missed = Missed::Pay;
        let d = t.due(0, now + 1, 10);
        assert_eq!(d.steps.len(), 3);
        assert!(d.steps.iter().all(|s| matches!(s, Step::Pay { .. })));
        assert_eq!(
            d.steps.iter().map(Step::occurrence).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
    }

    #[test]
    fn due_before_start_and_between_occurrences() {
        let start = at(2027, 1, 15, 10, 0);
        let t = timing(
            Rule::Monthly {
                day: 31,
                hour: 9,
                minute: 0,
            },
            start,
        );
        let d = t.due(0, start, 5);
        assert_eq!(
            d,
            Due {
                steps: vec![],
                next_due_at: Some(at(2027, 1, 31, 9, 0)),
                finished: false
            }
        );
        // Occurrence 0 handled, asked again on Feb 1.
        let d = t.due(1, at(2027, 2, 1, 0, 0), 5);
        assert_eq!(d.steps, vec![]);
        assert_eq!(d.next_due_at, Some(at(2027, 2, 28, 9, 0)));
        // Exactly at the due time counts as due.
        let d = t.due(1, at(2027, 2, 28, 9, 0), 5);
        assert_eq!(
            d.steps,
            vec![Step::Pay {
                occurrence: 1,
                due_at: at(2027, 2, 28, 9, 0)
            }]
        );
    }

    #[test]
    fn due_stops_at_max() {
        let start = 1_000_000;
        let t = timing(Rule::Interval { every_secs: 10 }, start);
        let d = t.due(5, start + 1_000, 3);
        assert_eq!(
            d.steps.iter().map(Step::occurrence).collect::<Vec<_>>(),
            vec![5, 6, 7]
        );
        // The next one is already due: ask again straight away.
        assert_eq!(d.next_due_at, Some(start + 80));
        assert!(!d.finished);
        let d = t.due(5, start + 1_000, 0);
        assert_eq!(d.steps, vec![]);
        assert_eq!(d.next_due_at, Some(start + 50));
        assert!(!d.finished);
    }

    #[test]
    fn due_finishes_with_count() {
        let start = 1_000_000;
        let mut t = timing(Rule::Interval { every_secs: 10 }, start);
        t.count = Some(3);
        let d = t.due(0, start + 15, 10);
        assert_eq!(d.steps.len(), 2);
        assert_eq!(d.next_due_at, Some(start + 20));
        assert!(!d.finished);
        let d = t.due(2, start + 1_000, 10);
        assert_eq!(
            d.steps,
            vec![Step::Pay {
                occurrence: 2,
                due_at: start + 20
            }]
        );
        assert_eq!(d.next_due_at, None);
        assert!(d.finished);
        // Stopping at max exactly on the last one still reports finished.
        let d = t.due(0, start + 1_000, 3);
        assert_eq!(d.steps.len(), 3);
        assert!(d.finished);
        // Everything handled.
        let d = t.due(3, start + 1_000, 10);
        assert_eq!(
            d,
            Due {
                steps: vec![],
                next_due_at: None,
                finished: true
            }
        );
        let d = t.due(u64::MAX, u64::MAX, 10);
        assert!(d.finished && d.steps.is_empty());
    }

    #[test]
    fn due_finishes_with_until() {
        let start = at(2027, 1, 4, 0, 0); // a Monday
        let mut t = timing(
            Rule::Weekly {
                weekday: Weekday::Wednesday,
                hour: 12,
                minute: 0,
            },
            start,
        );
        t.until = Some(at(2027, 1, 20, 12, 0));
        let d = t.due(0, at(2027, 1, 14, 0, 0), 10);
        assert_eq!(
            d.steps.iter().map(Step::due_at).collect::<Vec<_>>(),
            vec![at(2027, 1, 6, 12, 0), at(2027, 1, 13, 12, 0)]
        );
        assert_eq!(d.next_due_at, Some(at(2027, 1, 20, 12, 0)));
        assert!(!d.finished);
        let d = t.due(2, at(2027, 6, 1, 0, 0), 10);
        assert_eq!(d.steps.len(), 1);
        assert_eq!(d.next_due_at, None);
        assert!(d.finished);
    }

    #[test]
    fn serde_shape_and_defaults() {
        let json = r#"{"rule":{"kind":"weekly","weekday":"monday","hour":9,"minute":30},"start":1800007200}"#;
        let t: Timing = serde_json::from_str(json).expect("parse");
        assert_eq!(
            t,
            timing(
                Rule::Weekly {
                    weekday: Weekday::Monday,
                    hour: 9,
                    minute: 30
                },
                1_800_007_200
            )
        );
        assert_eq!(t.grace_secs, 3600);
        assert_eq!(t.missed, Missed::Pay);
        let back = serde_json::to_value(&t).expect("serialize");
        assert_eq!(
            back,
            serde_json::json!({
                "rule": {"kind": "weekly", "weekday": "monday", "hour": 9, "minute": 30},
                "start": 1_800_007_200u64,
                "missed": "pay",
                "grace_secs": 3600,
            })
        );
        let full = Timing {
            rule: Rule::Daily {
                every_days: 2,
                hour: 1,
                minute: 2,
            },
            start: 5,
            count: Some(7),
            until: Some(99_999),
            missed: Missed::Skip,
            grace_secs: 60,
        };
        let s = serde_json::to_string(&full).expect("serialize");
        assert_eq!(serde_json::from_str::<Timing>(&s).expect("parse"), full);
        for rule in [
            Rule::Monthly {
                day: 31,
                hour: 0,
                minute: 0,
            },
            Rule::Interval { every_secs: 60 },
        ] {
            let s = serde_json::to_string(&rule).expect("serialize");
            assert_eq!(serde_json::from_str::<Rule>(&s).expect("parse"), rule);
        }
        assert_eq!(
            serde_json::to_string(&Rule::Interval { every_secs: 60 }).expect("serialize"),
            r#"{"kind":"interval","every_secs":60}"#
        );
    }

    #[test]
    fn serde_refuses_unknown_and_bad_values() {
        for bad in [
            r#"{"rule":{"kind":"interval","every_secs":60},"start":1,"extra":1}"#,
            r#"{"rule":{"kind":"interval","every_secs":60,"day":1},"start":1}"#,
            r#"{"rule":{"kind":"yearly","every_secs":60},"start":1}"#,
            r#"{"rule":{"kind":"weekly","weekday":"Mon","hour":1,"minute":0},"start":1}"#,
            r#"{"rule":{"kind":"monthly","day":256,"hour":1,"minute":0},"start":1}"#,
            r#"{"rule":{"kind":"interval","every_secs":60},"start":1,"missed":"later"}"#,
            r#"{"rule":{"kind":"interval","every_secs":60},"start":-1}"#,
        ] {
            assert!(serde_json::from_str::<Timing>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn weekday_conversions_round_trip() {
        for w in [
            chrono::Weekday::Mon,
            chrono::Weekday::Tue,
            chrono::Weekday::Wed,
            chrono::Weekday::Thu,
            chrono::Weekday::Fri,
            chrono::Weekday::Sat,
            chrono::Weekday::Sun,
        ] {
            let ours = Weekday::from(w);
            assert_eq!(chrono::Weekday::from(ours), w);
            assert_eq!(ours.num_days_from_monday(), w.num_days_from_monday());
        }
    }

    fn weekday_strategy() -> impl Strategy<Value = Weekday> {
        prop_oneof![
            Just(Weekday::Monday),
            Just(Weekday::Tuesday),
            Just(Weekday::Wednesday),
            Just(Weekday::Thursday),
            Just(Weekday::Friday),
            Just(Weekday::Saturday),
            Just(Weekday::Sunday),
        ]
    }

    fn valid_rule() -> impl Strategy<Value = Rule> {
        prop_oneof![
            (1u8..=31, 0u8..=23, 0u8..=59).prop_map(|(day, hour, minute)| Rule::Monthly {
                day,
                hour,
                minute
            }),
            (weekday_strategy(), 0u8..=23, 0u8..=59).prop_map(|(weekday, hour, minute)| {
                Rule::Weekly {
                    weekday,
                    hour,
                    minute,
                }
            }),
            (1u32..=366, 0u8..=23, 0u8..=59).prop_map(|(every_days, hour, minute)| {
                Rule::Daily {
                    every_days,
                    hour,
                    minute,
                }
            }),
            prop_oneof![1u64..=100_000, 1u64..=1u64 << 40]
                .prop_map(|every_secs| Rule::Interval { every_secs }),
        ]
    }

    fn any_rule() -> impl Strategy<Value = Rule> {
        prop_oneof![
            (any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(day, hour, minute)| Rule::Monthly {
                day,
                hour,
                minute
            }),
            (weekday_strategy(), any::<u8>(), any::<u8>()).prop_map(|(weekday, hour, minute)| {
                Rule::Weekly {
                    weekday,
                    hour,
                    minute,
                }
            }),
            (any::<u32>(), any::<u8>(), any::<u8>()).prop_map(|(every_days, hour, minute)| {
                Rule::Daily {
                    every_days,
                    hour,
                    minute,
                }
            }),
            any::<u64>().prop_map(|every_secs| Rule::Interval { every_secs }),
        ]
    }

    fn start_strategy() -> impl Strategy<Value = u64> {
        prop_oneof![
            0u64..=MAX_TIME,
            1_700_000_000u64..=2_000_000_000,
            MAX_TIME - 100 * DAY..=MAX_TIME,
        ]
    }

    /// Valid timings: limits drawn at random, then the check applied.
    fn valid_timing() -> impl Strategy<Value = Timing> {
        (
            valid_rule(),
            start_strategy(),
            proptest::option::of(1u32..=1_000),
            proptest::option::of(1u64..=(1u64 << 36)),
            prop_oneof![Just(Missed::Pay), Just(Missed::Skip)],
            0u64..=MAX_GRACE_SECS,
        )
            .prop_map(
                |(rule, start, count, until_after, missed, grace_secs)| Timing {
                    rule,
                    start,
                    count,
                    until: until_after.map(|a| start.saturating_add(a)),
                    missed,
                    grace_secs,
                },
            )
            .prop_filter("valid", |t| t.check(0).is_ok())
    }

    fn n_strategy() -> impl Strategy<Value = u64> {
        prop_oneof![0u64..50, 0u64..2_000_000, any::<u64>()]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn occurrences_increase_and_never_precede_start(t in valid_timing(), n in n_strategy()) {
            let first = t.occurrence_at(0);
            prop_assert!(first.is_some(), "checked timing has occurrence 0");
            match (t.occurrence_at(n), t.occurrence_at(n.saturating_add(1))) {
                (Some(a), Some(b)) => {
                    prop_assert!(a >= t.start);
                    prop_assert!(a < b || n == u64::MAX);
                    prop_assert!(b <= MAX_TIME);
                }
                (None, later) => prop_assert_eq!(later, None, "None is final"),
                (Some(a), None) => {
                    prop_assert!(a >= t.start);
                    prop_assert!(a <= MAX_TIME);
                }
            }
            if let (Some(u), Some(a)) = (t.until, t.occurrence_at(n)) {
                prop_assert!(a <= u);
            }
            if let Some(c) = t.count {
                prop_assert_eq!(t.occurrence_at(u64::from(c)), None);
            }
        }

        #[test]
        fn occurrences_follow_the_rule(t in valid_timing(), n in 0u64..200) {
            let (Some(first), Some(occ)) = (t.occurrence_at(0), t.occurrence_at(n)) else {
                return Ok(());
            };
            let dt = DateTime::from_timestamp(i64::try_from(occ).expect("range"), 0)
                .expect("range")
                .naive_utc();
            let first_dt = DateTime::from_timestamp(i64::try_from(first).expect("range"), 0)
                .expect("range")
                .naive_utc();
            match t.rule {
                Rule::Monthly { day, hour, minute } => {
                    prop_assert_eq!((dt.hour(), dt.minute(), dt.second()),
                        (u32::from(hour), u32::from(minute), 0));
                    let len = u32::from(dt.date().num_days_in_month());
                    prop_assert_eq!(dt.day(), u32::from(day).min(len));
                    let months = |d: chrono::NaiveDateTime| i64::from(d.year()) * 12 + i64::from(d.month0());
                    prop_assert_eq!(months(dt) - months(first_dt), i64::try_from(n).expect("small"));
                    // Occurrence 0 is the first: the month before has its
                    // instant before start.
                    let prev = monthly_instant(months(first_dt) - 1, day, hour, minute);
                    prop_assert!(prev.is_none_or(|p| p < t.start));
                    if u32::from(day) == first_dt.day() {
                        let expected = first_dt
                            .checked_add_months(Months::new(u32::try_from(n).expect("small")));
                        prop_assert_eq!(Some(dt), expected);
                    }
                }
                Rule::Weekly { weekday, hour, minute } => {
                    prop_assert_eq!(Weekday::from(dt.weekday()), weekday);
                    prop_assert_eq!((dt.hour(), dt.minute(), dt.second()),
                        (u32::from(hour), u32::from(minute), 0));
                    prop_assert_eq!(occ - first, n * WEEK);
                    prop_assert!(first < t.start + WEEK);
                }
                Rule::Daily { every_days, hour, minute } => {
                    prop_assert_eq!((dt.hour(), dt.minute(), dt.second()),
                        (u32::from(hour), u32::from(minute), 0));
                    prop_assert_eq!(occ - first, n * u64::from(every_days) * DAY);
                    prop_assert!(first < t.start + DAY);
                }
                Rule::Interval { every_secs } => {
                    prop_assert_eq!(first, t.start);
                    prop_assert_eq!(occ, t.start + n * every_secs);
                }
            }
        }

        #[test]
        fn due_is_consistent_with_occurrence_at(
            t in valid_timing(),
            next in prop_oneof![0u64..20, 0u64..2_000, any::<u64>()],
            now_offset in prop_oneof![0u64..DAY, 0u64..400 * DAY, any::<u64>()],
            max in 0usize..40,
        ) {
            let now = t.start.saturating_add(now_offset);
            let d = t.due(next, now, max);
            prop_assert!(d.steps.len() <= max);
            for (i, step) in d.steps.iter().enumerate() {
                let n = next + u64::try_from(i).expect("small");
                prop_assert_eq!(step.occurrence(), n);
                prop_assert!(step.occurrence() >= next);
                prop_assert!(step.due_at() <= now);
                prop_assert_eq!(t.occurrence_at(n), Some(step.due_at()));
                let on_time = now <= step.due_at().saturating_add(t.grace_secs);
                let pay = on_time || t.missed == Missed::Pay;
                prop_assert_eq!(matches!(step, Step::Pay { .. }), pay);
            }
            let after = next.checked_add(u64::try_from(d.steps.len()).expect("small"));
            prop_assert_eq!(d.next_due_at, after.and_then(|a| t.occurrence_at(a)));
            prop_assert_eq!(d.finished, d.next_due_at.is_none());
            if let Some(nd) = d.next_due_at {
                prop_assert!(nd > now || d.steps.len() == max);
            }
        }

        #[test]
        fn arbitrary_timings_never_panic(
            rule in any_rule(),
            start in any::<u64>(),
            count in proptest::option::of(any::<u32>()),
            until in proptest::option::of(any::<u64>()),
            grace_secs in any::<u64>(),
            n in any::<u64>(),
            now in any::<u64>(),
            min in any::<u64>(),
        ) {
            let t = Timing { rule, start, count, until, missed: Missed::Skip, grace_secs };
            let checked = t.check(min);
            let a = t.occurrence_at(n);
            let b = n.checked_add(1).and_then(|m| t.occurrence_at(m));
            if let (Some(a), Some(b)) = (a, b) {
                prop_assert!(a < b);
            }
            let d = t.due(n, now, 3);
            prop_assert!(d.steps.iter().all(|s| s.occurrence() >= n && s.due_at() <= now));
            if checked.is_ok() {
                prop_assert!(t.occurrence_at(0).is_some());
            }
        }
    }
}
