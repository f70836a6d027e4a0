//! Wall-clock time for the agent, and the minute clock: a tick on every whole
//! minute of a time zone, aligned to :00 of the wall clock (not "60 s after
//! start"), across DST changes and steps of the wall clock (NTP setting it
//! at boot), which it also reports.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, TimeZone, Utc};
use tokio::sync::mpsc;

mod zone;

pub(crate) use zone::resolve_zone;
pub use zone::{Zone, ZoneOffset};

/// Where the current date and time come from.
pub trait WallClock: Send + Sync {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The system's real-time clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl WallClock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A wall clock that follows tokio's clock from a fixed start, so that tests
/// with paused time (`tokio::time::pause`) control the date as well; it can
/// be set, as NTP sets the system's.
#[derive(Debug)]
pub struct TokioClock {
    start: DateTime<Utc>,
    at: tokio::time::Instant,
    /// Nanoseconds the clock has been set forward (negative: back).
    set_by: AtomicI64,
}

impl TokioClock {
    /// A clock that reads `start` now and advances with tokio time.
    pub fn starting_at(start: DateTime<Utc>) -> Self {
        TokioClock {
            start,
            at: tokio::time::Instant::now(),
            set_by: AtomicI64::new(0),
        }
    }

    /// Sets the clock forward by `by` (back if negative), as a time server
    /// steps a board's clock.
    pub fn step(&self, by: TimeDelta) {
        let nanos = by.num_nanoseconds().unwrap_or(i64::MAX);
        self.set_by.fetch_add(nanos, Ordering::SeqCst);
    }
}

impl WallClock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = tokio::time::Instant::now() - self.at;
        let set_by = TimeDelta::nanoseconds(self.set_by.load(Ordering::SeqCst));
        self.start + TimeDelta::from_std(elapsed).unwrap_or(TimeDelta::MAX) + set_by
    }
}

/// The next whole minute of `tz` strictly after `now`.
pub(crate) fn next_minute(now: DateTime<Utc>, tz: &Zone) -> DateTime<Zone> {
    let local = now.with_timezone(tz);
    // Whole minutes of the zone: every zone in use today has an offset of
    // whole minutes, so truncating the UTC instant is the same as truncating
    // the local time.
    let floored = local
        .clone()
        .duration_trunc(TimeDelta::minutes(1))
        .unwrap_or(local);
    floored + TimeDelta::minutes(1)
}

/// How often the minute clock reads the wall clock between minutes, so that
/// a tick after the clock is set comes within this of the new whole minute.
pub(crate) const STEP_CHECK: Duration = Duration::from_secs(1);

/// The smallest jump of the wall clock, against the time that passed, that
/// counts as the clock being set; smaller differences (NTP slewing, a late
/// read on a busy board) are followed without a report.
pub(crate) const STEP_THRESHOLD: Duration = Duration::from_secs(1);

/// The wall clock was set (NTP at boot on a board without a clock chip, or
/// by hand), or the board was suspended: the wall clock moved by a different
/// amount than the time that passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// How far the wall clock moved beyond the time that passed (negative:
    /// it was set back).
    pub by: TimeDelta,
    /// The wall clock's reading when the step was noticed.
    pub now: DateTime<Utc>,
}

impl Step {
    /// A time read from the wall clock before the step, as the wall clock
    /// reads it since (e.g. when the agent started).
    pub(crate) fn correct<T: TimeZone>(&self, before: DateTime<T>) -> DateTime<T> {
        before + self.by
    }
}

/// What the minute clock reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClockEvent {
    /// A whole minute of the zone came (on the wall clock as set now).
    Minute(DateTime<Zone>),
    /// The wall clock was set; the next `Minute` follows the new time.
    Stepped(Step),
}

/// Sends every whole minute of `tz` and every step of the wall clock, until
/// the receiver goes away.
pub fn events(wall: Arc<dyn WallClock>, tz: Zone) -> mpsc::Receiver<ClockEvent> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(minute_clock(wall, tz, tx));
    rx
}

/// The minute clock's task.
async fn minute_clock(wall: Arc<dyn WallClock>, tz: Zone, tx: mpsc::Sender<ClockEvent>) {
    let threshold = TimeDelta::from_std(STEP_THRESHOLD).unwrap_or(TimeDelta::MAX);
    // The last reading of both clocks: between readings the wall clock is
    // expected to advance as tokio's monotonic clock does. Deadlines are
    // tokio instants worked out from the latest reading.
    let mut read_at = tokio::time::Instant::now();
    let mut read = wall.now();
    let mut next = next_minute(read, &tz);
    loop {
        let due = read_at
            + (next.with_timezone(&Utc) - read)
                .to_std()
                .unwrap_or(Duration::ZERO);
        tokio::time::sleep_until(due.min(read_at + STEP_CHECK)).await;
        let (at, now) = (tokio::time::Instant::now(), wall.now());
        let passed = TimeDelta::from_std(at - read_at).unwrap_or(TimeDelta::MAX);
        let expected = read.checked_add_signed(passed).unwrap_or(now);
        let by = now - expected;
        if by.abs() > threshold {
            // Where the last reading falls on the new time: a whole minute
            // of the new time since then is due now.
            next = next_minute(now.checked_sub_signed(passed).unwrap_or(now), &tz);
            if tx
                .send(ClockEvent::Stepped(Step { by, now }))
                .await
                .is_err()
            {
                break;
            }
        }
        (read_at, read) = (at, now);
        if now >= next {
            // Late wake-ups (a busy board) still report the minute that was
            // due, then realign on the next one.
            let due = std::mem::replace(&mut next, next_minute(now, &tz));
            if tx.send(ClockEvent::Minute(due)).await.is_err() {
                break;
            }
        }
    }
}

/// Formats a time as RFC 3339 with its offset and whole seconds.
pub(crate) fn rfc3339<T: TimeZone>(t: &DateTime<T>) -> String
where
    T::Offset: std::fmt::Display,
{
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// The zone `name` from the system's zoneinfo, or the built-in table.
    fn zone(name: &str) -> Zone {
        Zone::named(name, std::path::Path::new(zone::ZONEINFO)).unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn next_minute_is_the_next_whole_minute() {
        let tz = zone("Europe/Berlin");
        assert_eq!(
            rfc3339(&next_minute(utc("2026-11-24T18:07:13.5Z"), &tz)),
            "2026-11-24T19:08:00+01:00"
        );
        assert_eq!(
            rfc3339(&next_minute(utc("2026-11-24T18:07:00Z"), &tz)),
            "2026-11-24T19:08:00+01:00"
        );
        // A zone with a 45-minute offset.
        let nepal = zone("Asia/Kathmandu");
        assert_eq!(
            rfc3339(&next_minute(utc("2026-11-24T18:07:13Z"), &nepal)),
            "2026-11-24T23:53:00+05:45"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn ticks_land_on_whole_minutes_across_a_dst_change() {
        // Berlin springs forward at 01:00 UTC on 2026-03-29: 01:59 CET, then 03:00 CEST.
        let tz = zone("Europe/Berlin");
        let wall = Arc::new(TokioClock::starting_at(utc("2026-03-29T00:58:20.250Z")));
        let t0 = tokio::time::Instant::now();
        let mut rx = ticks(wall.clone(), tz);
        let mut seen = Vec::new();
        for _ in 0..3 {
            let tick = rx.recv().await.unwrap();
            // Delivered exactly when the wall clock reads the whole minute.
            assert_eq!(wall.now(), tick.with_timezone(&Utc));
            seen.push((rfc3339(&tick), tokio::time::Instant::now() - t0));
        }
        assert_eq!(
            seen,
            vec![
                (
                    "2026-03-29T01:59:00+01:00".to_string(),
                    Duration::from_millis(39_750)
                ),
                (
                    "2026-03-29T03:00:00+02:00".to_string(),
                    Duration::from_millis(99_750)
                ),
                (
                    "2026-03-29T03:01:00+02:00".to_string(),
                    Duration::from_millis(159_750)
                ),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn ticks_across_the_autumn_change_repeat_the_local_hour() {
        // Berlin falls back at 01:00 UTC on 2026-10-25: 02:59 CEST, then 02:00 CET.
        let tz = zone("Europe/Berlin");
        let wall = Arc::new(TokioClock::starting_at(utc("2026-10-25T00:58:59Z")));
        let mut rx = ticks(wall, tz);
        let a = rx.recv().await.unwrap();
        let b = rx.recv().await.unwrap();
        assert_eq!(rfc3339(&a), "2026-10-25T02:59:00+02:00");
        assert_eq!(rfc3339(&b), "2026-10-25T02:00:00+01:00");
    }

    /// The minutes of [`events`], its steps passed over.
    struct Minutes(mpsc::Receiver<ClockEvent>);

    impl Minutes {
        async fn recv(&mut self) -> Option<DateTime<Zone>> {
            loop {
                if let ClockEvent::Minute(t) = self.0.recv().await? {
                    return Some(t);
                }
            }
        }
    }

    fn ticks(wall: Arc<dyn WallClock>, tz: Zone) -> Minutes {
        Minutes(events(wall, tz))
    }

    /// A wall clock reading 18:07:20.250 UTC now, and now.
    async fn clock_at_18_07_20() -> (Arc<TokioClock>, tokio::time::Instant) {
        let wall = Arc::new(TokioClock::starting_at(utc("2026-11-24T18:07:20.250Z")));
        (wall, tokio::time::Instant::now())
    }

    async fn next_tick(rx: &mut Minutes, t0: tokio::time::Instant) -> (String, Duration) {
        let tick = rx.recv().await.unwrap();
        (rfc3339(&tick), tokio::time::Instant::now() - t0)
    }

    /// Steps `wall` by `by` when `at` has passed since `t0`.
    async fn step_at(wall: &TokioClock, t0: tokio::time::Instant, at: Duration, by: TimeDelta) {
        tokio::time::sleep_until(t0 + at).await;
        wall.step(by);
    }

    #[tokio::test(start_paused = true)]
    async fn a_tick_after_the_clock_is_set_forward_carries_the_new_time() {
        let (wall, t0) = clock_at_18_07_20().await;
        let mut rx = ticks(wall.clone(), Zone::utc());
        assert_eq!(
            next_tick(&mut rx, t0).await,
            (
                "2026-11-24T18:08:00+00:00".into(),
                Duration::from_millis(39_750)
            )
        );
        // NTP at 18:08:10.5: the clock was 1 h 37 min behind.
        let by = TimeDelta::minutes(97);
        step_at(&wall, t0, Duration::from_millis(50_250), by).await;
        assert_eq!(
            next_tick(&mut rx, t0).await,
            (
                "2026-11-24T19:46:00+00:00".into(),
                Duration::from_millis(99_750)
            )
        );
        assert_eq!(rfc3339(&wall.now()), "2026-11-24T19:46:00+00:00");
        assert_eq!(
            next_tick(&mut rx, t0).await,
            (
                "2026-11-24T19:47:00+00:00".into(),
                Duration::from_millis(159_750)
            )
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_tick_after_the_clock_is_set_back_carries_the_new_time() {
        let (wall, t0) = clock_at_18_07_20().await;
        let mut rx = ticks(wall.clone(), Zone::utc());
        next_tick(&mut rx, t0).await;
        step_at(
            &wall,
            t0,
            Duration::from_millis(50_250),
            -TimeDelta::minutes(10),
        )
        .await;
        assert_eq!(
            next_tick(&mut rx, t0).await,
            (
                "2026-11-24T17:59:00+00:00".into(),
                Duration::from_millis(99_750)
            )
        );
        assert_eq!(rfc3339(&wall.now()), "2026-11-24T17:59:00+00:00");
    }

    #[tokio::test(start_paused = true)]
    async fn a_step_of_part_of_a_minute_moves_the_tick_to_the_new_whole_minute() {
        let (wall, t0) = clock_at_18_07_20().await;
        let mut rx = ticks(wall.clone(), Zone::utc());
        next_tick(&mut rx, t0).await;
        // 18:08:10.5 becomes 19:45:40.5: 19.5 s to the next whole minute,
        // noticed at the next reading (50.75 s), so the tick is on time.
        let by = TimeDelta::minutes(97) + TimeDelta::seconds(30);
        step_at(&wall, t0, Duration::from_millis(50_250), by).await;
        assert_eq!(
            next_tick(&mut rx, t0).await,
            (
                "2026-11-24T19:46:00+00:00".into(),
                Duration::from_millis(69_750)
            )
        );
        assert_eq!(rfc3339(&wall.now()), "2026-11-24T19:46:00+00:00");
    }

    #[tokio::test(start_paused = true)]
    async fn a_minute_passed_between_the_step_and_the_next_reading_comes_at_that_reading() {
        let (wall, t0) = clock_at_18_07_20().await;
        let mut rx = ticks(wall.clone(), Zone::utc());
        next_tick(&mut rx, t0).await;
        // 18:08:10.5 becomes 19:45:59.8; the clock reads 19:46:00 at 50.45 s,
        // 0.3 s before the ticker next reads it.
        let by = TimeDelta::milliseconds(97 * 60_000 + 49_300);
        step_at(&wall, t0, Duration::from_millis(50_250), by).await;
        let (tick, at) = next_tick(&mut rx, t0).await;
        assert_eq!(tick, "2026-11-24T19:46:00+00:00");
        assert_eq!(at, Duration::from_millis(50_750));
        assert!(at - Duration::from_millis(50_450) < STEP_CHECK);
        assert_eq!(
            next_tick(&mut rx, t0).await,
            (
                "2026-11-24T19:47:00+00:00".into(),
                Duration::from_millis(110_450)
            )
        );
    }

    #[tokio::test(start_paused = true)]
    async fn events_report_a_step_before_the_minute_that_follows_it() {
        let (wall, t0) = clock_at_18_07_20().await;
        // Read when the agent started, before NTP.
        let started_at = wall.now();
        let mut rx = events(wall.clone(), Zone::utc());
        let first = rx.recv().await.unwrap();
        assert!(
            matches!(first, ClockEvent::Minute(t) if rfc3339(&t) == "2026-11-24T18:08:00+00:00")
        );
        let by = TimeDelta::minutes(97);
        step_at(&wall, t0, Duration::from_millis(50_250), by).await;
        let ClockEvent::Stepped(step) = rx.recv().await.unwrap() else {
            panic!("expected a step first");
        };
        // Noticed at the first reading after it.
        assert_eq!(
            tokio::time::Instant::now() - t0,
            Duration::from_millis(50_750)
        );
        assert_eq!(step.by, by);
        assert_eq!(step.now, utc("2026-11-24T19:45:11Z"));
        assert_eq!(step.correct(started_at), utc("2026-11-24T19:44:20.250Z"));
        let ClockEvent::Minute(t) = rx.recv().await.unwrap() else {
            panic!("expected the minute");
        };
        assert_eq!(rfc3339(&t), "2026-11-24T19:46:00+00:00");
        // Set back: a negative step.
        step_at(
            &wall,
            t0,
            Duration::from_millis(120_100),
            -TimeDelta::minutes(10),
        )
        .await;
        let ClockEvent::Stepped(step) = rx.recv().await.unwrap() else {
            panic!("expected a step");
        };
        assert_eq!(step.by, -TimeDelta::minutes(10));
    }

    #[tokio::test(start_paused = true)]
    async fn drift_below_the_threshold_is_followed_without_a_report() {
        let (wall, t0) = clock_at_18_07_20().await;
        let mut rx = events(wall.clone(), Zone::utc());
        rx.recv().await.unwrap();
        // Half a second, in small steps as NTP slews: no report, and the
        // tick follows the clock.
        for i in 0..5 {
            step_at(
                &wall,
                t0,
                Duration::from_millis(45_250 + i * 1000),
                TimeDelta::milliseconds(100),
            )
            .await;
        }
        let ClockEvent::Minute(t) = rx.recv().await.unwrap() else {
            panic!("no step is expected");
        };
        assert_eq!(rfc3339(&t), "2026-11-24T18:09:00+00:00");
        assert_eq!(
            tokio::time::Instant::now() - t0,
            Duration::from_millis(99_250)
        );
        assert_eq!(wall.now(), t.with_timezone(&Utc));
    }

    #[test]
    fn zones_resolve_or_say_what_is_allowed() {
        let utc = resolve_zone(Some("UTC")).unwrap();
        assert_eq!(utc.name(), "UTC");
        assert_eq!(
            rfc3339(&utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()),
            "2026-01-01T00:00:00+00:00"
        );
        assert!(resolve_zone(Some("Mars/Olympus"))
            .unwrap_err()
            .contains("IANA"));
    }
}
