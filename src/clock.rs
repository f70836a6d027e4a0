//! Wall-clock time for the agent, and the minute clock: a tick on every whole
//! minute of a time zone, aligned to :00 of the wall clock (not "60 s after
//! start"), across DST changes.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use tokio::sync::mpsc;

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
/// with paused time (`tokio::time::pause`) control the date as well.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    start: DateTime<Utc>,
    at: tokio::time::Instant,
}

impl TokioClock {
    /// A clock that reads `start` now and advances with tokio time.
    pub fn starting_at(start: DateTime<Utc>) -> Self {
        TokioClock {
            start,
            at: tokio::time::Instant::now(),
        }
    }
}

impl WallClock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = tokio::time::Instant::now() - self.at;
        self.start + TimeDelta::from_std(elapsed).unwrap_or(TimeDelta::MAX)
    }
}

/// The next whole minute of `tz` strictly after `now`.
pub fn next_minute(now: DateTime<Utc>, tz: Tz) -> DateTime<Tz> {
    let local = now.with_timezone(&tz);
    // Whole minutes of the zone: every zone in use today has an offset of
    // whole minutes, so truncating the UTC instant is the same as truncating
    // the local time.
    let floored = local.duration_trunc(TimeDelta::minutes(1)).unwrap_or(local);
    floored + TimeDelta::minutes(1)
}

/// Sends the local time on every whole minute of `tz`, until the receiver goes away.
pub fn ticks(wall: Arc<dyn WallClock>, tz: Tz) -> mpsc::Receiver<DateTime<Tz>> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        loop {
            let now = wall.now();
            let next = next_minute(now, tz);
            let wait = (next.with_timezone(&Utc) - now)
                .to_std()
                .unwrap_or(Duration::ZERO);
            tokio::time::sleep(wait).await;
            // Late wake-ups (a busy board, a suspended VM) still report the
            // minute that was due, then realign on the next one.
            if tx.send(next).await.is_err() {
                break;
            }
        }
    });
    rx
}

/// The time zone named in the config, or the system's (`TZ`, then
/// `/etc/localtime`), or UTC.
pub fn resolve_zone(name: Option<&str>) -> Result<Tz, String> {
    match name {
        Some(n) => n
            .parse::<Tz>()
            .map_err(|_| format!("{n:?} is not an IANA time zone name (e.g. Europe/Berlin, UTC)")),
        None => Ok(system_zone().unwrap_or(Tz::UTC)),
    }
}

fn system_zone() -> Option<Tz> {
    if let Ok(tz) = std::env::var("TZ") {
        if let Ok(z) = tz.trim_start_matches(':').parse::<Tz>() {
            return Some(z);
        }
    }
    let target = std::fs::read_link("/etc/localtime").ok()?;
    let s = target.to_string_lossy();
    let name = s.split("zoneinfo/").nth(1)?;
    name.parse::<Tz>().ok()
}

/// Formats a time as RFC 3339 with its offset and whole seconds.
pub fn rfc3339<T: TimeZone>(t: &DateTime<T>) -> String
where
    T::Offset: std::fmt::Display,
{
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn next_minute_is_the_next_whole_minute() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        assert_eq!(
            rfc3339(&next_minute(utc("2026-11-24T18:07:13.5Z"), tz)),
            "2026-11-24T19:08:00+01:00"
        );
        assert_eq!(
            rfc3339(&next_minute(utc("2026-11-24T18:07:00Z"), tz)),
            "2026-11-24T19:08:00+01:00"
        );
        // A zone with a 45-minute offset.
        let nepal: Tz = "Asia/Kathmandu".parse().unwrap();
        assert_eq!(
            rfc3339(&next_minute(utc("2026-11-24T18:07:13Z"), nepal)),
            "2026-11-24T23:53:00+05:45"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn ticks_land_on_whole_minutes_across_a_dst_change() {
        // Berlin springs forward at 01:00 UTC on 2026-03-29: 01:59 CET, then 03:00 CEST.
        let tz: Tz = "Europe/Berlin".parse().unwrap();
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
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let wall = Arc::new(TokioClock::starting_at(utc("2026-10-25T00:58:59Z")));
        let mut rx = ticks(wall, tz);
        let a = rx.recv().await.unwrap();
        let b = rx.recv().await.unwrap();
        assert_eq!(rfc3339(&a), "2026-10-25T02:59:00+02:00");
        assert_eq!(rfc3339(&b), "2026-10-25T02:00:00+01:00");
    }

    #[test]
    fn zones_resolve_or_say_what_is_allowed() {
        assert_eq!(resolve_zone(Some("UTC")).unwrap(), Tz::UTC);
        assert!(resolve_zone(Some("Mars/Olympus"))
            .unwrap_err()
            .contains("IANA"));
        let _ = Tz::UTC.with_ymd_and_hms(2026, 1, 1, 0, 0, 0);
    }
}
