//! Quiet hours (docs/compliance.md): may a message go now, and if not, when?
//!
//! A message may go only when every applicable window — federal, each
//! candidate state's, the tenant's; by category — is open in every candidate
//! time zone (Reg F comment 6(b)(1)(i)-2: where the location is ambiguous,
//! only at times convenient in every location). Otherwise it is deferred to
//! the earliest instant at which all of them are open.
//!
//! # Time
//! A window `start..end` is open for local wall-clock time `t` when
//! `start <= t < end` at minute precision; weekdays and holidays are judged on
//! the local date in each zone (Guam is already tomorrow). Local time is
//! always computed from the instant with the zone's rules (never a cached
//! offset). To find when a window opens or closes, time is walked in
//! *segments between the zone's offset transitions*: inside one, local time is
//! the instant plus a constant offset, so the target instant is exact; at a
//! transition the window is re-checked. This handles the spring-forward gap
//! and the fall-back fold without a disambiguation guess: a window starting at
//! 02:30 on a spring-forward day opens at 03:00 (the first instant whose local
//! time is past 02:30 — "compatible" disambiguation would say 03:30 and defer
//! half an hour too long), and one ending at 01:30 on a fall-back day is open
//! again during the repeated 01:00–01:30.
//!
//! # Earliest opening
//! No minute scan: from `t`, every (window, zone) pair that is closed at `t`
//! stays closed until its own next opening, so no instant before the latest of
//! those openings can be all-open; jump there and re-check, until every pair
//! is open (a fixpoint) or the search passes [`SEARCH_HORIZON`].
//!
//! # Cost
//! Per (window, zone) pair: one tz conversion, one transition lookup (binary
//! searches in jiff) and integer arithmetic. The common case — one zone, two
//! windows, open — is a few hundred nanoseconds plus the `Fired` entries.

use std::fmt::Write as _;

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use crate::consent::ConsentKind;
use crate::model::Category;
use crate::policy::rules::{ClockTime, Rules, WindowRule};
use crate::policy::zones::{self, Candidates, Zone};
use crate::policy::{Effect, Fired};

/// How far ahead an opening is searched for. The longest legitimate closure
/// in the shipped rules is a long weekend plus a holiday (~4 days); 14 days
/// leaves room for tenant windows, and anything beyond is a configuration
/// that makes sending impossible.
pub const SEARCH_HORIZON: SignedDuration = SignedDuration::from_hours(14 * 24);
const HORIZON_DAYS: usize = 14;

/// The quiet-hours decision for one message at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuietVerdict {
    /// May be sent now. `closes_at`: the earliest instant a window closes in
    /// a candidate zone (`Timestamp::MAX` when none closes within the horizon
    /// or no window applies).
    Open {
        closes_at: Timestamp,
        fired: Vec<Fired>,
    },
    /// Deferred to `opens_at`, the earliest instant every window is open in
    /// every zone; `closes_at` ends that open interval.
    Closed {
        opens_at: Timestamp,
        closes_at: Timestamp,
        fired: Vec<Fired>,
    },
    /// No open instant within [`SEARCH_HORIZON`]: the configuration makes
    /// sending impossible (e.g. a tenant window outside the federal one).
    Never { fired: Vec<Fired> },
}

impl QuietVerdict {
    pub fn fired(&self) -> &[Fired] {
        match self {
            QuietVerdict::Open { fired, .. }
            | QuietVerdict::Closed { fired, .. }
            | QuietVerdict::Never { fired } => fired,
        }
    }

    pub fn is_open(&self) -> bool {
        matches!(self, QuietVerdict::Open { .. })
    }
}

/// Decides whether a message of `category` to `candidates` may be sent at
/// `at`, and if not, when.
///
/// Applicable windows: the federal ones for the category, those of every
/// candidate state, and `tenant_windows` (which apply in every zone). A rule
/// with `unless_consent` is skipped when `consent` is of that kind or
/// stronger. With no candidate zone at all (an unknown non-NANP number and no
/// address), every NANP zone is used: the number could ring anywhere, and the
/// conservative reading of Reg F comment 6(b)(1)(i)-2 is to honour them all.
///
/// The rule reports (`fired`, each a formatted detail) are built only when
/// `explain`: the dispatch path drops them for every message it sends, and
/// asks again with reports for the few it holds.
pub fn evaluate(
    rules: &Rules,
    tenant_windows: &[WindowRule],
    category: Category,
    candidates: &Candidates,
    consent: Option<ConsentKind>,
    at: Timestamp,
    explain: bool,
) -> QuietVerdict {
    let zones: &[Zone] = if candidates.zones.is_empty() {
        zones::nanp_zones()
    } else {
        &candidates.zones
    };
    let horizon = at.checked_add(SEARCH_HORIZON).unwrap_or(Timestamp::MAX);
    let applicable = || {
        rules.windows_for(category, &candidates.states).chain(
            tenant_windows
                .iter()
                .filter(move |w| w.applies_to(category)),
        )
    };
    let mut fired = Vec::new();
    let report = if explain { Some(&mut fired) } else { None };
    let mut step = pass(applicable(), zones, consent, at, horizon, report);
    let mut t = at;
    loop {
        match step {
            Pass::AllOpen { closes_at } if t == at => {
                return QuietVerdict::Open { closes_at, fired };
            }
            Pass::AllOpen { closes_at } => {
                return QuietVerdict::Closed {
                    opens_at: t,
                    closes_at,
                    fired,
                };
            }
            Pass::Closed { until: Some(next) } if next <= horizon => t = next,
            Pass::Closed { .. } => return QuietVerdict::Never { fired },
        }
        step = pass(applicable(), zones, consent, t, horizon, None);
    }
}

/// The state of every applicable (window, zone) pair at one instant.
enum Pass {
    /// All open; the earliest of their closings.
    AllOpen { closes_at: Timestamp },
    /// Some closed; the latest of their openings (`None`: one of them does
    /// not open within the horizon).
    Closed { until: Option<Timestamp> },
}

/// Checks every pair at `t`, skipping windows the consent waives. With
/// `record`, also reports each window's effect.
fn pass<'a>(
    windows: impl Iterator<Item = &'a WindowRule>,
    zones: &[Zone],
    consent: Option<ConsentKind>,
    t: Timestamp,
    horizon: Timestamp,
    mut record: Option<&mut Vec<Fired>>,
) -> Pass {
    let mut closes_at = Timestamp::MAX;
    let mut any_closed = false;
    let mut until = Some(t);
    for w in windows {
        if w.waived_by(consent) {
            if let Some(out) = record.as_deref_mut() {
                out.push(waived(w, consent));
            }
            continue;
        }
        // For the report: the zone closed the longest, how many are closed,
        // and the zone that closes first.
        let mut binding: Option<(Zone, DateTime, Option<Timestamp>)> = None;
        let mut closed_zones = 0usize;
        let mut first_close: Option<(Zone, Timestamp)> = None;
        for &z in zones {
            let tz = z.tz();
            let local = tz.to_datetime(t);
            if is_open(w, local) {
                if let Some(c) = next_change(w, tz, t, true, horizon) {
                    closes_at = closes_at.min(c);
                    if first_close.is_none_or(|(_, f)| c < f) {
                        first_close = Some((z, c));
                    }
                }
                continue;
            }
            any_closed = true;
            closed_zones += 1;
            let opens = next_change(w, tz, t, false, horizon);
            until = until.zip(opens).map(|(a, b)| a.max(b));
            let later = match binding {
                None => true,
                Some((_, _, None)) => false,
                Some((_, _, Some(prev))) => opens.is_none_or(|o| o > prev),
            };
            if later {
                binding = Some((z, local, opens));
            }
        }
        if let Some(out) = record.as_deref_mut() {
            out.push(match binding {
                Some((z, local, opens)) => deferred(w, z, local, opens, closed_zones),
                None => allowed(w, zones, t, first_close),
            });
        }
    }
    if any_closed {
        Pass::Closed { until }
    } else {
        Pass::AllOpen { closes_at }
    }
}

/// Whether a window is open at a local wall-clock time (minute precision).
fn is_open(w: &WindowRule, local: DateTime) -> bool {
    w.hours_on(local.date())
        .is_some_and(|h| h.contains(minute_of_day(local)))
}

fn minute_of_day(local: DateTime) -> u16 {
    // hour 0–23, minute 0–59: both non-negative.
    (local.hour() as u16) * 60 + local.minute() as u16
}

/// The next instant after `t` at which the window, now `open_now` in `tz`,
/// changes state; `None` if not within the horizon.
///
/// Walks the zone's offset segments: within one, local = instant + offset,
/// so the wall-clock target converts exactly; if the target lies beyond the
/// segment's end, the local clock jumps at the transition and the window is
/// re-checked there.
fn next_change(
    w: &WindowRule,
    tz: &TimeZone,
    t: Timestamp,
    open_now: bool,
    horizon: Timestamp,
) -> Option<Timestamp> {
    let mut s = t;
    while s <= horizon {
        let offset = tz.to_offset(s);
        let local = offset.to_datetime(s);
        let seg_end = tz.following(s).map(|tr| tr.timestamp()).find(|&e| e > s);
        let target =
            wall_clock_change(w, local, open_now).and_then(|l| offset.to_timestamp(l).ok());
        match (target, seg_end) {
            (Some(x), Some(e)) if x < e => return Some(x),
            (Some(x), None) => return Some(x),
            (_, Some(e)) => {
                if is_open(w, tz.to_datetime(e)) != open_now {
                    return Some(e);
                }
                s = e;
            }
            (None, None) => return None,
        }
    }
    None
}

/// The next local wall-clock time after `local` at which the window changes
/// state, as if the local clock ran without jumps.
fn wall_clock_change(w: &WindowRule, local: DateTime, open_now: bool) -> Option<DateTime> {
    let today = local.date();
    if open_now {
        // Closes at today's end, unless that is midnight and tomorrow's
        // hours start at midnight (a window open across days).
        let mut day = today;
        let mut end = w.hours_on(day)?.end;
        for _ in 0..=HORIZON_DAYS {
            if end < ClockTime::END_OF_DAY {
                return Some(at_clock(day, end));
            }
            let next = day.tomorrow().ok()?;
            match w.hours_on(next) {
                Some(h) if h.start == ClockTime::MIDNIGHT => {
                    day = next;
                    end = h.end;
                }
                _ => return Some(next.at(0, 0, 0, 0)),
            }
        }
        return None;
    }
    if let Some(h) = w.hours_on(today)
        && minute_of_day(local) < h.start.minutes()
    {
        return Some(at_clock(today, h.start));
    }
    let mut day = today;
    for _ in 0..HORIZON_DAYS {
        day = day.tomorrow().ok()?;
        if let Some(h) = w.hours_on(day) {
            return Some(at_clock(day, h.start));
        }
    }
    None
}

/// `date` at a clock time below 24:00.
fn at_clock(date: Date, c: ClockTime) -> DateTime {
    let m = c.minutes();
    // m < 1440 here: hour ≤ 23, minute ≤ 59.
    date.at((m / 60) as i8, (m % 60) as i8, 0, 0)
}

// ---------------------------------------------------------------------------
// Reporting
// ---------------------------------------------------------------------------

fn fired(w: &WindowRule, effect: Effect, detail: String) -> Fired {
    Fired {
        rule: w.id().clone(),
        citation: w.citation().clone(),
        effect,
        detail: detail.into(),
    }
}

fn hm(local: DateTime) -> impl std::fmt::Display {
    ClockTime::from_minutes(minute_of_day(local)).unwrap_or(ClockTime::MIDNIGHT)
}

/// `closed in America/Chicago (20:41 local) until 08:00`.
fn deferred(
    w: &WindowRule,
    z: Zone,
    local: DateTime,
    opens: Option<Timestamp>,
    closed_zones: usize,
) -> Fired {
    let mut d = format!("closed in {z} ({} local)", hm(local));
    match opens {
        Some(o) => {
            let open_local = z.tz().to_datetime(o);
            if open_local.date() == local.date() {
                let _ = write!(d, " until {}", hm(open_local));
            } else {
                let _ = write!(d, " until {} {}", open_local.date(), hm(open_local));
            }
        }
        None => d.push_str(", no opening within 14 days"),
    }
    if closed_zones > 1 {
        let _ = write!(d, "; closed in {} candidate zones", closed_zones);
    }
    fired(w, Effect::Defer, d)
}

/// `open in America/New_York (10:15 local) until 21:00`, or for several
/// zones the one that closes first.
fn allowed(
    w: &WindowRule,
    zones: &[Zone],
    t: Timestamp,
    first_close: Option<(Zone, Timestamp)>,
) -> Fired {
    let d = match (zones, first_close) {
        ([z], Some((_, c))) => format!(
            "open in {z} ({} local) until {}",
            hm(z.tz().to_datetime(t)),
            hm(z.tz().to_datetime(c))
        ),
        ([z], None) => format!("open in {z} ({} local)", hm(z.tz().to_datetime(t))),
        (_, Some((z, c))) => format!(
            "open in all {} candidate zones; first to close: {z} at {} local",
            zones.len(),
            hm(z.tz().to_datetime(c))
        ),
        (_, None) => format!("open in all {} candidate zones", zones.len()),
    };
    fired(w, Effect::Allow, d)
}

fn waived(w: &WindowRule, consent: Option<ConsentKind>) -> Fired {
    let have = consent.map_or("none", ConsentKind::as_str);
    let need = w.unless_consent().map_or("none", ConsentKind::as_str);
    fired(
        w,
        Effect::Allow,
        format!("waived: {have} consent on file (rule yields to {need})"),
    )
}

#[cfg(test)]
mod tests;
