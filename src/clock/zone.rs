//! The clock's time zone, read at run time from the system's zoneinfo
//! (TZif files, parsed by the `tz-rs` crate) rather than compiled in, with a
//! small built-in table of POSIX rules for boards without tzdata.
//!
//! [`Zone`] implements chrono's [`TimeZone`], so the rest of the agent keeps
//! to `DateTime<Zone>`.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use chrono::{
    FixedOffset, MappedLocalTime, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone, Utc,
};
use tz::timezone::TimeZoneSettings;
use tz::LocalTimeType;

/// Where the zoneinfo files are when `TZDIR` does not say.
pub(crate) const ZONEINFO: &str = "/usr/share/zoneinfo";

/// The system's zone file, read when neither the config nor `TZ` names one.
const LOCALTIME: &str = "/etc/localtime";

/// The largest zone file read: real TZif files are a few KiB; this keeps a
/// `TZ` pointing at a device or a huge file from being read whole.
const MAX_TZIF: u64 = 256 * 1024;

/// Common zones as POSIX rules (their current rules, from tzdata 2025b), for
/// a board without tzdata: right for current dates, not for history.
const BUILT_IN: &[(&str, &str)] = &[
    ("UTC", "UTC0"),
    ("Etc/UTC", "UTC0"),
    ("GMT", "GMT0"),
    ("Etc/GMT", "GMT0"),
    ("Europe/London", "GMT0BST,M3.5.0/1,M10.5.0"),
    ("Europe/Dublin", "GMT0IST,M3.5.0/1,M10.5.0"),
    ("Europe/Lisbon", "WET0WEST,M3.5.0/1,M10.5.0"),
    ("Europe/Berlin", "CET-1CEST,M3.5.0,M10.5.0/3"),
    ("Europe/Paris", "CET-1CEST,M3.5.0,M10.5.0/3"),
    ("Europe/Madrid", "CET-1CEST,M3.5.0,M10.5.0/3"),
    ("Europe/Rome", "CET-1CEST,M3.5.0,M10.5.0/3"),
    ("Europe/Amsterdam", "CET-1CEST,M3.5.0,M10.5.0/3"),
    ("Europe/Warsaw", "CET-1CEST,M3.5.0,M10.5.0/3"),
    ("Europe/Athens", "EET-2EEST,M3.5.0/3,M10.5.0/4"),
    ("Europe/Helsinki", "EET-2EEST,M3.5.0/3,M10.5.0/4"),
    ("Europe/Kyiv", "EET-2EEST,M3.5.0/3,M10.5.0/4"),
    ("Europe/Moscow", "MSK-3"),
    ("America/New_York", "EST5EDT,M3.2.0,M11.1.0"),
    ("America/Chicago", "CST6CDT,M3.2.0,M11.1.0"),
    ("America/Denver", "MST7MDT,M3.2.0,M11.1.0"),
    ("America/Phoenix", "MST7"),
    ("America/Los_Angeles", "PST8PDT,M3.2.0,M11.1.0"),
    ("America/Sao_Paulo", "<-03>3"),
    ("Asia/Kolkata", "IST-5:30"),
    ("Asia/Kathmandu", "<+0545>-5:45"),
    ("Asia/Shanghai", "CST-8"),
    ("Asia/Tokyo", "JST-9"),
    ("Australia/Sydney", "AEST-10AEDT,M10.1.0,M4.1.0/3"),
    ("Pacific/Auckland", "NZST-12NZDT,M9.5.0,M4.1.0/3"),
];

/// A time zone: its rules and the name it was given (shown at start and in
/// `config show`). Loaded once with the config; a clone shares the rules.
#[derive(Clone)]
pub struct Zone(Arc<Rules>);

/// What a [`Zone`] shares between its clones.
#[derive(PartialEq, Eq)]
struct Rules {
    /// The name as configured (`Europe/Berlin`, a POSIX rule, a path).
    name: String,
    /// The transitions and the rule after them.
    tz: tz::TimeZone,
}

/// UTC, shared by every [`Zone::utc`].
static UTC_ZONE: LazyLock<Zone> = LazyLock::new(|| {
    let tz = LocalTimeType::new(0, false, Some(b"UTC"))
        .ok()
        .and_then(|utc| tz::TimeZone::new(vec![], vec![utc], vec![], None).ok())
        .unwrap_or_else(tz::TimeZone::utc);
    Zone::new("UTC", tz)
});

impl Zone {
    /// The zone `tz`, shown as `name`.
    fn new(name: &str, tz: tz::TimeZone) -> Zone {
        Zone(Arc::new(Rules {
            name: name.to_owned(),
            tz,
        }))
    }

    /// UTC, the zone of a system that names none.
    pub fn utc() -> Zone {
        UTC_ZONE.clone()
    }

    /// The name it was given, e.g. `Europe/Berlin`.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The zone `name` (an IANA name or a POSIX TZ rule): the zoneinfo
    /// file `dir/name`, else the built-in table, else `name` read as a POSIX
    /// rule. The error says what would be accepted and where it looked.
    pub(crate) fn named(name: &str, dir: &Path) -> Result<Zone, String> {
        if !is_zone_path(name) {
            return Err(format!(
                "{name:?} is not an IANA time zone name (e.g. Europe/Berlin, UTC): \
                 a name under the zoneinfo directory has no '..', leading '/' or empty part"
            ));
        }
        let path = dir.join(name);
        let file = match Zone::from_file(name, &path) {
            Ok(zone) => return Ok(zone),
            Err(why) => why,
        };
        if let Some((_, rule)) = BUILT_IN.iter().find(|(n, _)| *n == name) {
            if let Some(tz) = posix(rule) {
                return Ok(Zone::new(name, tz));
            }
        }
        if let Some(tz) = posix(name) {
            return Ok(Zone::new(name, tz));
        }
        Err(format!(
            "{name:?} is not an IANA time zone name (e.g. Europe/Berlin, UTC) nor a POSIX \
             TZ rule (e.g. CET-1CEST,M3.5.0,M10.5.0/3): {file}, and it is not one of the \
             built-in zones"
        ))
    }

    /// The TZif file at `path`, named `name`; the error says what was wrong
    /// with the file.
    fn from_file(name: &str, path: &Path) -> Result<Zone, String> {
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_TZIF).read_to_end(&mut bytes))
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => format!("there is no {}", path.display()),
                _ => format!("{} could not be read ({e})", path.display()),
            })?;
        let tz = tz::TimeZone::from_tz_data(&bytes)
            .ok()
            .filter(offsets_fit)
            .ok_or_else(|| format!("{} is not a TZif file", path.display()))?;
        Ok(Zone::new(name, tz))
    }

    /// The local time type in effect at `unix_time` (seconds).
    fn local_type_at(&self, unix_time: i64) -> LocalTimeType {
        let tz = self.0.tz.as_ref();
        match tz.find_local_time_type(unix_time) {
            Ok(t) => *t,
            // Only for a file without a rule after its last transition, or
            // instants out of its range: the nearest type there is.
            Err(_) => tz
                .transitions()
                .last()
                .and_then(|t| tz.local_time_types().get(t.local_time_type_index()))
                .or_else(|| tz.local_time_types().first())
                .copied()
                .unwrap_or_else(LocalTimeType::utc),
        }
    }

    /// Its offset of the local time type `local`, for chrono.
    fn offset(&self, local: LocalTimeType) -> ZoneOffset {
        ZoneOffset {
            zone: self.clone(),
            local,
        }
    }
}

/// Whether chrono can hold every offset of `tz` (less than a day).
fn offsets_fit(tz: &tz::TimeZone) -> bool {
    tz.as_ref()
        .local_time_types()
        .iter()
        .all(|t| FixedOffset::east_opt(t.ut_offset()).is_some())
}

/// `rule` as a POSIX TZ rule only (no file is read for it).
fn posix(rule: &str) -> Option<tz::TimeZone> {
    TimeZoneSettings::new(&[], |_| Err("no file is read for a rule".into()))
        .parse_posix_tz(rule)
        .ok()
        .filter(offsets_fit)
}

/// Whether `name` can be looked up under the zoneinfo directory: relative,
/// no `..` and no empty part.
fn is_zone_path(name: &str) -> bool {
    !name.starts_with('/') && name.split('/').all(|part| !part.is_empty() && part != "..")
}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Zone").field(&self.0.name).finish()
    }
}

/// Its name, as configured.
impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.name)
    }
}

impl PartialEq for Zone {
    fn eq(&self, other: &Zone) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl Eq for Zone {}

/// The offset of a [`Zone`] at one time, with the zone itself (chrono gets
/// the zone of a `DateTime` back from its offset).
#[derive(Clone)]
pub struct ZoneOffset {
    zone: Zone,
    local: LocalTimeType,
}

impl ZoneOffset {
    /// Whether daylight saving time is in effect.
    pub fn is_dst(&self) -> bool {
        self.local.is_dst()
    }
}

impl Offset for ZoneOffset {
    fn fix(&self) -> FixedOffset {
        // Every offset was checked to fit when the zone was loaded.
        FixedOffset::east_opt(self.local.ut_offset()).unwrap_or_else(|| Utc.fix())
    }
}

/// The zone's abbreviation (`CET`, `CEST`, `+0545`), as `%Z` shows it.
impl fmt::Display for ZoneOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.local.time_zone_designation() {
            "" => write!(f, "{}", self.fix()),
            abbreviation => f.write_str(abbreviation),
        }
    }
}

impl fmt::Debug for ZoneOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.fix())
    }
}

impl TimeZone for Zone {
    type Offset = ZoneOffset;

    fn from_offset(offset: &ZoneOffset) -> Zone {
        offset.zone.clone()
    }

    fn offset_from_local_date(&self, local: &NaiveDate) -> MappedLocalTime<ZoneOffset> {
        self.offset_from_local_datetime(&local.and_time(NaiveTime::MIN))
    }

    fn offset_from_local_datetime(&self, local: &NaiveDateTime) -> MappedLocalTime<ZoneOffset> {
        use chrono::{Datelike, Timelike};
        use tz::datetime::FoundDateTimeKind::Normal;
        let (Ok(month), Ok(day), Ok(hour), Ok(minute), Ok(second)) = (
            u8::try_from(local.month()),
            u8::try_from(local.day()),
            u8::try_from(local.hour()),
            u8::try_from(local.minute()),
            u8::try_from(local.second()),
        ) else {
            return MappedLocalTime::None;
        };
        let found = tz::DateTime::find(
            local.year(),
            month,
            day,
            hour,
            minute,
            second,
            0,
            self.0.tz.as_ref(),
        );
        // In order of their UTC time; a time skipped by a change is none.
        match found.map(|f| f.into_inner()).as_deref() {
            Ok([Normal(a)]) => MappedLocalTime::Single(self.offset(*a.local_time_type())),
            Ok([Normal(a), Normal(b)]) => MappedLocalTime::Ambiguous(
                self.offset(*a.local_time_type()),
                self.offset(*b.local_time_type()),
            ),
            _ => MappedLocalTime::None,
        }
    }

    fn offset_from_utc_date(&self, utc: &NaiveDate) -> ZoneOffset {
        self.offset_from_utc_datetime(&utc.and_time(NaiveTime::MIN))
    }

    fn offset_from_utc_datetime(&self, utc: &NaiveDateTime) -> ZoneOffset {
        self.offset(self.local_type_at(utc.and_utc().timestamp()))
    }
}

/// Where the zoneinfo files are: `TZDIR`, else [`ZONEINFO`].
fn zoneinfo_dir() -> PathBuf {
    std::env::var_os("TZDIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| PathBuf::from(ZONEINFO), PathBuf::from)
}

/// The time zone named in the config (see [`Zone::named`]), or the
/// system's (`TZ`, then `/etc/localtime`), or UTC.
pub(crate) fn resolve_zone(name: Option<&str>) -> Result<Zone, String> {
    let dir = zoneinfo_dir();
    match name {
        Some(n) => Zone::named(n, &dir),
        None => {
            let tz = std::env::var("TZ").ok();
            Ok(system_zone(tz.as_deref(), &dir, Path::new(LOCALTIME)))
        }
    }
}

/// The system's zone: `tz` (the `TZ` variable: a name, a POSIX rule or a
/// file's path, with or without a leading ':'), else the TZif file
/// `localtime`, else UTC.
fn system_zone(tz: Option<&str>, dir: &Path, localtime: &Path) -> Zone {
    if let Some(v) = tz.map(|v| v.strip_prefix(':').unwrap_or(v)) {
        let zone = if v.starts_with('/') {
            Zone::from_file(&link_name(Path::new(v)), Path::new(v))
        } else {
            Zone::named(v, dir)
        };
        if let Ok(zone) = zone {
            return zone;
        }
    }
    let name = std::fs::read_link(localtime)
        .map(|target| link_name(&target))
        .unwrap_or_else(|_| localtime.display().to_string());
    Zone::from_file(&name, localtime).unwrap_or_else(|_| Zone::utc())
}

/// The zone's name in a path to its file: what follows `zoneinfo/`, else
/// the whole path.
fn link_name(path: &Path) -> String {
    let s = path.to_string_lossy();
    match s.split_once("zoneinfo/") {
        Some((_, name)) if !name.is_empty() => name.to_owned(),
        _ => s.into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::rfc3339;
    use chrono::DateTime;

    /// A TZif (version 2) file of one local time type, `offset` seconds
    /// east of UTC and called `abbreviation`, with `rule` as its footer.
    fn tzif(offset: i32, abbreviation: &str, rule: &str) -> Vec<u8> {
        let chars = abbreviation.len() as u32 + 1;
        let mut block = b"TZif2".to_vec();
        block.extend([0; 15]);
        // isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt.
        for count in [0, 0, 0, 0, 1, chars] {
            block.extend(u32::to_be_bytes(count));
        }
        block.extend(offset.to_be_bytes());
        block.extend([0, 0]);
        block.extend(abbreviation.as_bytes());
        block.push(0);
        // The same block again for 64-bit times (there are none), then
        // the rule.
        let mut file = block.repeat(2);
        file.extend(format!("\n{rule}\n").as_bytes());
        file
    }

    /// A zoneinfo directory holding `files` (name, contents).
    fn zoneinfo(files: &[(&str, Vec<u8>)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        dir
    }

    fn at(zone: &Zone, utc: &str) -> String {
        let t = DateTime::parse_from_rfc3339(utc)
            .unwrap()
            .with_timezone(zone);
        format!("{} {}", rfc3339(&t), t.format("%Z"))
    }

    fn local(zone: &Zone, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> Vec<String> {
        match zone.with_ymd_and_hms(y, mo, d, h, mi, 0) {
            MappedLocalTime::Single(t) => vec![rfc3339(&t)],
            MappedLocalTime::Ambiguous(a, b) => vec![rfc3339(&a), rfc3339(&b)],
            MappedLocalTime::None => vec![],
        }
    }

    /// Berlin's changes of 2026, whichever way the zone was loaded.
    fn assert_berlin(zone: &Zone) {
        assert_eq!(zone.name(), "Europe/Berlin");
        assert_eq!(
            at(zone, "2026-01-15T12:00:00Z"),
            "2026-01-15T13:00:00+01:00 CET"
        );
        assert_eq!(
            at(zone, "2026-03-29T00:59:59Z"),
            "2026-03-29T01:59:59+01:00 CET"
        );
        assert_eq!(
            at(zone, "2026-03-29T01:00:00Z"),
            "2026-03-29T03:00:00+02:00 CEST"
        );
        assert_eq!(
            at(zone, "2026-10-25T00:59:59Z"),
            "2026-10-25T02:59:59+02:00 CEST"
        );
        assert_eq!(
            at(zone, "2026-10-25T01:00:00Z"),
            "2026-10-25T02:00:00+01:00 CET"
        );
        // 02:30 is skipped in spring and comes twice in autumn.
        assert_eq!(local(zone, 2026, 3, 29, 2, 30), Vec::<String>::new());
        assert_eq!(
            local(zone, 2026, 10, 25, 2, 30),
            ["2026-10-25T02:30:00+02:00", "2026-10-25T02:30:00+01:00"]
        );
        assert_eq!(
            local(zone, 2026, 7, 1, 12, 0),
            ["2026-07-01T12:00:00+02:00"]
        );
    }

    #[test]
    fn berlin_from_the_system_zoneinfo_or_the_built_in_rule() {
        // The system's file where tzdata is installed, the built-in rule
        // where it is not.
        assert_berlin(&Zone::named("Europe/Berlin", Path::new(ZONEINFO)).unwrap());
        let empty = zoneinfo(&[]);
        assert_berlin(&Zone::named("Europe/Berlin", empty.path()).unwrap());
    }

    #[test]
    fn kathmandu_is_5_45_ahead_without_tzdata() {
        let empty = zoneinfo(&[]);
        let zone = Zone::named("Asia/Kathmandu", empty.path()).unwrap();
        assert_eq!(
            at(&zone, "2026-11-24T18:07:00Z"),
            "2026-11-24T23:52:00+05:45 +0545"
        );
    }

    #[test]
    fn a_zoneinfo_file_comes_before_the_built_in_table() {
        let dir = zoneinfo(&[
            ("Europe/Berlin", tzif(3 * 3600, "TST", "TST-3")),
            ("Test/Zone", tzif(-(3 * 3600 + 1800), "NST", "NST3:30")),
        ]);
        let berlin = Zone::named("Europe/Berlin", dir.path()).unwrap();
        assert_eq!(
            at(&berlin, "2026-07-01T12:00:00Z"),
            "2026-07-01T15:00:00+03:00 TST"
        );
        let zone = Zone::named("Test/Zone", dir.path()).unwrap();
        assert_eq!(zone.to_string(), "Test/Zone");
        assert_eq!(
            at(&zone, "2026-07-01T12:00:00Z"),
            "2026-07-01T08:30:00-03:30 NST"
        );
    }

    #[test]
    fn a_posix_rule_is_a_zone_of_its_own() {
        let empty = zoneinfo(&[]);
        let rule = "EST5EDT,M3.2.0,M11.1.0";
        let zone = Zone::named(rule, empty.path()).unwrap();
        assert_eq!(zone.name(), rule);
        assert_eq!(
            at(&zone, "2026-01-15T12:00:00Z"),
            "2026-01-15T07:00:00-05:00 EST"
        );
        assert_eq!(
            at(&zone, "2026-07-01T12:00:00Z"),
            "2026-07-01T08:00:00-04:00 EDT"
        );
        let fixed = Zone::named("<+0545>-5:45", empty.path()).unwrap();
        assert_eq!(
            at(&fixed, "2026-01-15T12:00:00Z"),
            "2026-01-15T17:45:00+05:45 +0545"
        );
    }

    #[test]
    fn utc_and_gmt_are_built_in() {
        let empty = zoneinfo(&[]);
        for (name, abbreviation) in [("UTC", "UTC"), ("Etc/UTC", "UTC"), ("GMT", "GMT")] {
            let zone = Zone::named(name, empty.path()).unwrap();
            assert_eq!(
                at(&zone, "2026-07-01T12:00:00Z"),
                format!("2026-07-01T12:00:00+00:00 {abbreviation}")
            );
        }
        assert_eq!(
            at(&Zone::utc(), "2026-07-01T12:00:00Z"),
            "2026-07-01T12:00:00+00:00 UTC"
        );
    }

    #[test]
    fn an_unknown_name_says_what_is_accepted_and_where_it_looked() {
        let dir = zoneinfo(&[("Mars/Base", b"not a zone".to_vec())]);
        let e = Zone::named("Mars/Olympus", dir.path()).unwrap_err();
        assert!(e.contains("is not an IANA time zone name"), "{e}");
        assert!(e.contains("POSIX TZ rule"), "{e}");
        let file = dir.path().join("Mars/Olympus");
        assert!(
            e.contains(&format!("there is no {}", file.display())),
            "{e}"
        );
        assert!(e.contains("built-in"), "{e}");
        let e = Zone::named("Mars/Base", dir.path()).unwrap_err();
        let file = dir.path().join("Mars/Base");
        assert!(
            e.contains(&format!("{} is not a TZif file", file.display())),
            "{e}"
        );
        // A broken file does not hide the built-in rule.
        let dir = zoneinfo(&[("Europe/Berlin", b"not a zone".to_vec())]);
        assert_berlin(&Zone::named("Europe/Berlin", dir.path()).unwrap());
    }

    #[test]
    fn names_leaving_the_zoneinfo_directory_are_refused() {
        // A real zone one level up: still not read.
        let dir = zoneinfo(&[("outside", tzif(3600, "OUT", "OUT-1"))]);
        let inner = dir.path().join("zoneinfo");
        std::fs::create_dir(&inner).unwrap();
        let outside = dir.path().join("outside");
        let outside = outside.to_str().unwrap();
        for name in [
            "../outside",
            "Europe/../../outside",
            outside,
            "Europe//Berlin",
            "Europe/",
            "",
        ] {
            let e = Zone::named(name, &inner).unwrap_err();
            assert!(
                e.contains("no '..', leading '/' or empty part"),
                "{name}: {e}"
            );
        }
    }

    #[test]
    fn the_system_zone_is_tz_then_localtime_then_utc() {
        let dir = zoneinfo(&[
            ("Test/Zone", tzif(3 * 3600, "TST", "TST-3")),
            ("localtime", tzif(-3600, "LOC", "LOC1")),
        ]);
        let empty = zoneinfo(&[]);
        let file = dir.path().join("Test/Zone");
        let localtime = dir.path().join("localtime");
        let missing = dir.path().join("missing");
        // TZ: a name (with or without ':'), a rule, a file's path.
        for tz in ["Test/Zone", ":Test/Zone"] {
            let zone = system_zone(Some(tz), dir.path(), &missing);
            assert_eq!(zone.name(), "Test/Zone");
            assert_eq!(
                at(&zone, "2026-07-01T12:00:00Z"),
                "2026-07-01T15:00:00+03:00 TST"
            );
        }
        assert_berlin(&system_zone(Some(":Europe/Berlin"), empty.path(), &missing));
        let rule = "CET-1CEST,M3.5.0,M10.5.0/3";
        let zone = system_zone(Some(rule), empty.path(), &missing);
        assert_eq!(
            at(&zone, "2026-07-01T12:00:00Z"),
            "2026-07-01T14:00:00+02:00 CEST"
        );
        let path = file.to_str().unwrap();
        let zone = system_zone(Some(path), empty.path(), &missing);
        assert_eq!(zone.name(), path);
        assert_eq!(
            at(&zone, "2026-07-01T12:00:00Z"),
            "2026-07-01T15:00:00+03:00 TST"
        );
        // No TZ, or one that names nothing: the local time file itself.
        for tz in [None, Some(""), Some("Mars/Olympus")] {
            let zone = system_zone(tz, empty.path(), &localtime);
            assert_eq!(zone.name(), localtime.display().to_string());
            assert_eq!(
                at(&zone, "2026-07-01T12:00:00Z"),
                "2026-07-01T11:00:00-01:00 LOC"
            );
        }
        // A link into a zoneinfo directory gives the zone's name.
        let link = dir.path().join("link");
        let target = dir.path().join("zoneinfo/Test/Zone");
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&file, &target).unwrap();
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert_eq!(system_zone(None, empty.path(), &link).name(), "Test/Zone");
        // Nothing at all: UTC.
        assert_eq!(system_zone(None, empty.path(), &missing), Zone::utc());
    }

    #[test]
    fn the_built_in_rules_agree_with_the_system_tzdata() {
        // Checked where tzdata is installed: every hour of 2026 and 2027.
        let start = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .timestamp();
        let mut compared = 0;
        for (name, rule) in BUILT_IN {
            let Ok(file) = Zone::from_file(name, &Path::new(ZONEINFO).join(name)) else {
                continue;
            };
            let built_in = Zone::new(name, posix(rule).unwrap());
            for hour in 0..2 * 365 * 24 {
                let t = start + hour * 3600;
                let (a, b) = (file.local_type_at(t), built_in.local_type_at(t));
                assert_eq!(
                    (a.ut_offset(), a.time_zone_designation()),
                    (b.ut_offset(), b.time_zone_designation()),
                    "{name} at {t}"
                );
            }
            compared += 1;
        }
        eprintln!(
            "{compared} of {} built-in zones compared with {ZONEINFO}",
            BUILT_IN.len()
        );
    }
}
