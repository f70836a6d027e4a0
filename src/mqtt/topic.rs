//! The device's MQTT vocabulary in one table: every command topic below
//! `<base>` with the state topics carrying it out may publish, the state
//! topics themselves, and the rules of MQTT topic filters. The router, the
//! subscriptions, the state topics, the banner, the discovery topics and the
//! link check are all derived from it.

/// The PWM LEDs, by the name their topics carry.
pub(crate) const LED_NAMES: [&str; 2] = ["left", "right"];

/// Levels before `/set` that a filter of its own names (`<base>/+/set` to
/// `<base>/+/+/+/+/+/set`); deeper topics, however deep, arrive through one
/// filter for everything with more levels below base than any state topic
/// has, so every `/set` is answered and no state of the agent's own is
/// echoed back to it.
pub(crate) const SET_DEPTH: usize = 5;

/// What a command topic asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    /// `led/<name>/set`: one PWM LED.
    Led,
    /// `tilt/set`: a gravity vector for both LEDs.
    Tilt,
    /// `matrix/set`: the LED matrix.
    Matrix,
    /// `buzzer/set`: the buzzer.
    Buzzer,
    /// `display/message/set`: a message on the board.
    Message,
    /// `display/clock/set`: the board's clock on or off.
    Clock,
    /// `sim/button/press`: the simulated button.
    SimPress,
    /// `sim/panic`: fault injection.
    SimPanic,
    /// `identify/set`: every part that can show where the device is does.
    Identify,
    /// `matrix/pattern/<name>/set`: a pattern program saved under a name.
    SavePattern,
}

/// One command topic of the vocabulary.
#[derive(Debug)]
pub(crate) struct CommandTopic {
    /// What it asks for.
    pub verb: Verb,
    /// Its levels below base; a `+` is a name (an LED's in `led/+/set`).
    pub path: &'static str,
    /// The topics below base that carrying it out may publish, besides
    /// `error`; `led/+` is the LED the command names.
    pub publishes: &'static [&'static str],
    /// The part that takes it, with what enables it, as an error names it
    /// when no part does.
    pub part: &'static str,
}

/// The row of `verb`.
pub(crate) fn command(verb: Verb) -> &'static CommandTopic {
    COMMANDS
        .iter()
        .find(|c| c.verb == verb)
        .unwrap_or(&COMMANDS[0])
}

/// Every command topic, in the order the banner and error messages list them.
pub(crate) const COMMANDS: &[CommandTopic] = &[
    CommandTopic {
        verb: Verb::Led,
        path: "led/+/set",
        publishes: &["led/+"],
        part: "the LEDs ([tilt])",
    },
    CommandTopic {
        verb: Verb::Tilt,
        path: "tilt/set",
        publishes: &["led/left", "led/right"],
        part: "the tilt LEDs ([tilt])",
    },
    CommandTopic {
        verb: Verb::Matrix,
        path: "matrix/set",
        publishes: &["matrix"],
        part: "the LED matrix ([matrix])",
    },
    CommandTopic {
        verb: Verb::SavePattern,
        path: "matrix/pattern/+/set",
        publishes: &[],
        part: "the LED matrix ([matrix])",
    },
    CommandTopic {
        verb: Verb::Buzzer,
        path: "buzzer/set",
        publishes: &["buzzer"],
        part: "the buzzer ([buzzer])",
    },
    CommandTopic {
        verb: Verb::Message,
        path: "display/message/set",
        publishes: &["display"],
        part: "the message board ([display])",
    },
    CommandTopic {
        verb: Verb::Clock,
        path: "display/clock/set",
        publishes: &["display", "clock/tick"],
        part: "the message board ([display])",
    },
    CommandTopic {
        verb: Verb::Identify,
        path: "identify/set",
        publishes: &["matrix", "buzzer"],
        part: "identify (no fitted part can show it)",
    },
    CommandTopic {
        verb: Verb::SimPress,
        path: "sim/button/press",
        publishes: &["button/event", "display"],
        part: "the simulated button (hardware.backend is not sim, or [button] is off)",
    },
    CommandTopic {
        verb: Verb::SimPanic,
        path: "sim/panic",
        publishes: &["status"],
        part: "fault injection (hardware.backend is not sim)",
    },
];

/// The command topic below base that `edge-agent doctor` writes to, to see
/// that this device's commands arrive: a `/set` like every command (an ACL
/// for them covers it), which the agent takes and ignores.
pub(crate) const PROBE: &str = "doctor/set";

/// The state and event topics below base.
pub(crate) mod state {
    /// `online` / `offline`, retained; the last will.
    pub(crate) const STATUS: &str = "status";
    /// Version and start time, retained.
    pub(crate) const INFO: &str = "info";
    /// Rejected commands and failures, not retained.
    pub(crate) const ERROR: &str = "error";
    /// The LED matrix, retained.
    pub(crate) const MATRIX: &str = "matrix";
    /// The message board, retained.
    pub(crate) const DISPLAY: &str = "display";
    /// The board's report on itself, retained.
    pub(crate) const DIAG: &str = "diag";
    /// The board as last drawn, a PNG, retained.
    pub(crate) const DISPLAY_IMAGE: &str = "display/image";
    /// The buzzer, retained.
    pub(crate) const BUZZER: &str = "buzzer";
    /// `edge-agent doctor`'s retained round trip (cleared after it).
    pub(crate) const DOCTOR: &str = "doctor";
    /// Button presses, events.
    pub(crate) const BUTTON_EVENT: &str = "button/event";
    /// The minute clock, events.
    pub(crate) const CLOCK_TICK: &str = "clock/tick";

    /// One LED's state topic (`led/<name>`), retained.
    pub(crate) fn led(name: &str) -> String {
        format!("led/{name}")
    }
}

/// What a topic is to this device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'t> {
    /// Not one of this device's command topics.
    NotOurs,
    /// A command topic of the vocabulary.
    Command {
        /// What it asks for.
        verb: Verb,
        /// The level its row has a `+` for, as given: the LED of
        /// `led/<name>/set` (maybe no real LED), the pattern of
        /// `matrix/pattern/<name>/set`.
        name: Option<&'t str>,
    },
    /// Below base and ending in `/set`, but in no row of the table.
    Unknown,
}

/// The vocabulary of one device: its base topic, the group topics it also
/// takes commands below, and the verbs it has.
#[derive(Debug, Clone)]
pub struct Topics {
    base: String,
    groups: Vec<String>,
    verbs: Vec<Verb>,
}

impl Topics {
    /// The topics of the device below `base` that has `verbs` enabled.
    pub fn new(base: impl Into<String>, verbs: impl IntoIterator<Item = Verb>) -> Topics {
        Topics {
            base: base.into(),
            groups: Vec::new(),
            verbs: verbs.into_iter().collect(),
        }
    }

    /// The same, also taking commands below each of `groups` (shared roots
    /// like `edge/all`) as if below base.
    pub fn with_groups(mut self, groups: Vec<String>) -> Topics {
        self.groups = groups;
        self
    }

    /// The roots commands arrive below: base, then the groups.
    fn roots(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.base.as_str()).chain(self.groups.iter().map(String::as_str))
    }

    /// The base topic, `<prefix>/<device id>`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Whether the device has `verb` enabled.
    pub fn has(&self, verb: Verb) -> bool {
        self.verbs.contains(&verb)
    }

    /// A topic below base: `<base>/<path>`.
    pub fn at(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    /// The full command topic of `verb` (with `name` for its row's `+`:
    /// an LED's name, a pattern's).
    pub fn command(&self, verb: Verb, name: &str) -> String {
        let path = COMMANDS
            .iter()
            .find(|c| c.verb == verb)
            .map_or("", |c| c.path);
        self.at(&path.replacen('+', name, 1))
    }

    /// What `topic` is to this device.
    pub fn route<'t>(&self, topic: &'t str) -> Route<'t> {
        let Some(rest) = self
            .roots()
            .find_map(|root| topic.strip_prefix(root).and_then(|t| t.strip_prefix('/')))
        else {
            return Route::NotOurs;
        };
        if rest == PROBE {
            return Route::NotOurs;
        }
        for c in COMMANDS {
            if matches(c.path, rest) {
                return Route::Command {
                    verb: c.verb,
                    name: named_level(c.path, rest),
                };
            }
        }
        if rest.ends_with("/set") {
            Route::Unknown
        } else {
            Route::NotOurs
        }
    }

    /// The filters the device's commands arrive on: every `/set` below base
    /// and below each group (known or not, so an unknown one is answered;
    /// see [`SET_DEPTH`]), and the enabled commands outside that form.
    pub fn filters(&self) -> Vec<String> {
        let mut f = Vec::new();
        for root in self.roots() {
            f.extend((1..=SET_DEPTH).map(|depth| format!("{root}/{}set", "+/".repeat(depth))));
            f.push(format!("{root}/{}#", "+/".repeat(SET_DEPTH + 2)));
            for c in COMMANDS {
                if !c.path.ends_with("/set") && self.has(c.verb) {
                    f.push(format!("{root}/{}", c.path));
                }
            }
        }
        f
    }

    /// Every filter the agent needs: its commands', Home Assistant's status
    /// (when enabled) and the links'; before [`disjoint`] makes them one
    /// subscription per topic.
    pub fn wanted(
        &self,
        ha_status: Option<String>,
        links: impl IntoIterator<Item = String>,
    ) -> Vec<String> {
        let mut wanted = self.filters();
        wanted.extend(ha_status);
        wanted.extend(links);
        wanted
    }

    /// The enabled command topics below base, as an error message lists them.
    pub fn known(&self) -> String {
        let mut k = Vec::new();
        for c in COMMANDS.iter().filter(|c| self.has(c.verb)) {
            if c.verb == Verb::Led {
                k.extend(LED_NAMES.iter().map(|n| c.path.replacen('+', n, 1)));
            } else {
                k.push(c.path.replacen('+', "<name>", 1));
            }
        }
        k.join(", ")
    }

    /// The topics below base that the command `path` (below base, as a
    /// link's `do` names it) may publish when carried out, `error` included;
    /// why not, when the device has no such command.
    pub fn outputs(&self, path: &str) -> Result<Vec<String>, String> {
        let row = COMMANDS
            .iter()
            .find(|c| matches(c.path, path))
            .ok_or_else(|| format!("a command below <base>: {}", self.all_known()))?;
        if !self.has(row.verb) {
            return Err(format!(
                "a command this device has: {path} is disabled here; enabled: {}",
                self.known()
            ));
        }
        let name = named_level(row.path, path).unwrap_or_default();
        if row.verb == Verb::Led && !LED_NAMES.contains(&name) {
            return Err(format!(
                "a command this device has: there is no LED called {name:?}; the LEDs are {}",
                LED_NAMES.join(", ")
            ));
        }
        let mut out: Vec<String> = row
            .publishes
            .iter()
            .map(|p| p.replacen('+', name, 1))
            .collect();
        out.push(state::ERROR.into());
        Ok(out)
    }

    fn all_known(&self) -> String {
        COMMANDS
            .iter()
            .map(|c| c.path.replacen('+', "<name>", 1))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The level of `topic` that stands where `path` (a row's) has its `+`.
fn named_level<'t>(path: &str, topic: &'t str) -> Option<&'t str> {
    let at = path.split('/').position(|l| l == "+")?;
    topic.split('/').nth(at)
}

/// Whether `t` can be a root of topics (a base or group topic): no
/// wildcards, not a `$` topic, no empty level at either end.
pub(crate) fn plain_topic(t: &str) -> bool {
    !(t.is_empty()
        || t.contains(['+', '#', '\0'])
        || t.starts_with('/')
        || t.ends_with('/')
        || t.starts_with('$'))
}

/// Whether `filter` is a valid MQTT topic filter.
pub(crate) fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') || filter.len() > 65535 {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    levels.iter().enumerate().all(|(i, l)| match *l {
        "#" => i == levels.len() - 1,
        "+" => true,
        l => !l.contains(['+', '#']),
    })
}

/// Whether `topic` matches the MQTT topic filter `filter`.
pub(crate) fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && !filter.starts_with('$') {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether a wildcard level at the top can stand for `level`: never for a
/// `$` topic's first level.
fn wild_takes(level: &str, first: bool) -> bool {
    !(first && level.starts_with('$'))
}

/// Whether some topic matches both filters.
pub(crate) fn overlap(a: &str, b: &str) -> bool {
    let (mut x, mut y) = (a.split('/'), b.split('/'));
    let mut first = true;
    loop {
        match (x.next(), y.next()) {
            (None, None) => return true,
            (Some("#"), other) | (other, Some("#")) => {
                return other.is_none_or(|o| wild_takes(o, first));
            }
            (Some("+"), Some(o)) | (Some(o), Some("+")) => {
                if !wild_takes(o, first) {
                    return false;
                }
            }
            (Some(p), Some(q)) if p == q => {}
            _ => return false,
        }
        first = false;
    }
}

/// Whether every topic that matches `inner` matches `outer`.
pub(crate) fn covers(outer: &str, inner: &str) -> bool {
    let (mut o, mut i) = (outer.split('/'), inner.split('/'));
    let mut first = true;
    loop {
        match (o.next(), i.next()) {
            (None, None) => return true,
            (Some("#"), level) => return level.is_none_or(|l| wild_takes(l, first)),
            (Some("+"), Some(l)) if l != "#" => {
                if !wild_takes(l, first) {
                    return false;
                }
            }
            (Some(p), Some(q)) if p == q && q != "+" && q != "#" => {}
            _ => return false,
        }
        first = false;
    }
}

/// The narrowest filter of the form the two share that covers both.
fn join(a: &str, b: &str) -> String {
    let (x, y): (Vec<&str>, Vec<&str>) = (a.split('/').collect(), b.split('/').collect());
    let mut out = Vec::new();
    for k in 0..x.len().max(y.len()) {
        match (x.get(k), y.get(k)) {
            (Some(p), Some(q)) if p == q && *p != "#" => out.push(*p),
            (Some(&"#"), _) | (_, Some(&"#")) | (None, _) | (_, None) => {
                out.push("#");
                break;
            }
            _ => out.push("+"),
        }
    }
    out.join("/")
}

/// Filters to subscribe to that together match what `wanted` match, no two
/// of them the same topic: a broker sends a message once per matching
/// subscription, and each message must arrive once. A filter another covers
/// is left out; two that overlap otherwise become the one that covers both.
pub(crate) fn disjoint(wanted: &[String]) -> Vec<String> {
    let mut set: Vec<String> = Vec::new();
    for w in wanted {
        if !set.contains(w) {
            set.push(w.clone());
        }
    }
    loop {
        let pair = (0..set.len())
            .flat_map(|i| (i + 1..set.len()).map(move |j| (i, j)))
            .find(|&(i, j)| overlap(&set[i], &set[j]));
        let Some((i, j)) = pair else {
            return set;
        };
        let (a, b) = (set[i].clone(), set[j].clone());
        let merged = if covers(&a, &b) {
            a
        } else if covers(&b, &a) {
            b
        } else {
            join(&a, &b)
        };
        set.remove(j);
        set[i] = merged;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_verb() -> Topics {
        Topics::new(
            "edge/t",
            COMMANDS.iter().map(|c| c.verb).collect::<Vec<_>>(),
        )
    }

    #[test]
    fn routes_come_from_the_table() {
        let t = every_verb();
        assert_eq!(
            t.route("edge/t/led/left/set"),
            Route::Command {
                verb: Verb::Led,
                name: Some("left")
            }
        );
        assert_eq!(
            t.route("edge/t/display/clock/set"),
            Route::Command {
                verb: Verb::Clock,
                name: None
            }
        );
        assert_eq!(t.route("edge/t/a/b/c/d/e/f/set"), Route::Unknown);
        // The doctor's probe arrives, and is nobody's command.
        assert_eq!(t.route("edge/t/doctor/set"), Route::NotOurs);
        assert!(t.filters().iter().any(|f| matches(f, "edge/t/doctor/set")));
        assert_eq!(t.route("edge/t/led/left"), Route::NotOurs);
        assert_eq!(t.route("edge/other/matrix/set"), Route::NotOurs);
        assert_eq!(t.route("edge/tt/matrix/set"), Route::NotOurs);
        for c in COMMANDS {
            let topic = t.command(c.verb, "left");
            assert!(
                matches!(t.route(&topic), Route::Command { verb, .. } if verb == c.verb),
                "{topic}"
            );
            assert!(
                t.filters().iter().any(|f| matches(f, &topic)),
                "{topic} is subscribed"
            );
        }
        assert_eq!(t.command(Verb::Led, "right"), "edge/t/led/right/set");
        // However deep, a /set is subscribed to, and answered as unknown.
        for deep in ["edge/t/a/b/c/d/e/f/set", "edge/t/a/b/c/d/e/f/g/h/i/j/set"] {
            assert_eq!(t.route(deep), Route::Unknown, "{deep}");
            assert_eq!(
                t.filters().iter().filter(|f| matches(f, deep)).count(),
                1,
                "{deep}"
            );
        }
        // No state topic of the agent's own comes back to it.
        let states = [
            state::STATUS,
            state::INFO,
            state::ERROR,
            state::MATRIX,
            state::DISPLAY,
            state::BUZZER,
            state::BUTTON_EVENT,
            state::CLOCK_TICK,
            "led/left",
        ];
        for s in states {
            let topic = t.at(s);
            assert!(!t.filters().iter().any(|f| matches(f, &topic)), "{topic}");
        }
        assert_eq!(
            disjoint(&t.filters()),
            t.filters(),
            "no two filters overlap"
        );
    }

    #[test]
    fn commands_below_a_group_route_as_below_base_and_nothing_else_does() {
        let t = every_verb().with_groups(vec!["edge/all".into(), "site/kitchen".into()]);
        for root in ["edge/t", "edge/all", "site/kitchen"] {
            for c in COMMANDS {
                let topic = format!("{root}/{}", c.path.replacen('+', "left", 1));
                assert!(
                    matches!(t.route(&topic), Route::Command { verb, .. } if verb == c.verb),
                    "{topic}"
                );
                assert_eq!(
                    t.filters().iter().filter(|f| matches(f, &topic)).count(),
                    1,
                    "{topic} is subscribed once"
                );
            }
            assert_eq!(t.route(&format!("{root}/nope/set")), Route::Unknown);
        }
        // Another board's topics and the group's state-like topics are not ours.
        for other in [
            "edge/other/matrix/set",
            "edge/allx/matrix/set",
            "edge/all/matrix",
        ] {
            assert_eq!(t.route(other), Route::NotOurs, "{other}");
            assert!(!t.filters().iter().any(|f| matches(f, other)), "{other}");
        }
        // State stays below base.
        assert_eq!(t.at(state::MATRIX), "edge/t/matrix");
        assert_eq!(
            disjoint(&t.filters()),
            t.filters(),
            "no two filters overlap"
        );
    }

    #[test]
    fn outputs_name_the_led_and_refuse_what_the_device_lacks() {
        let t = every_verb();
        assert_eq!(t.outputs("led/left/set").unwrap(), ["led/left", "error"]);
        assert_eq!(
            t.outputs("tilt/set").unwrap(),
            ["led/left", "led/right", "error"]
        );
        assert!(t
            .outputs("led/middle/set")
            .unwrap_err()
            .contains("no LED called \"middle\""));
        assert!(t.outputs("toaster/set").unwrap_err().contains("matrix/set"));
        let no_buzzer = Topics::new("edge/t", [Verb::Matrix]);
        assert!(no_buzzer
            .outputs("buzzer/set")
            .unwrap_err()
            .contains("disabled"));
        assert_eq!(no_buzzer.known(), "matrix/set");
        assert!(!no_buzzer.filters().iter().any(|f| f.ends_with("sim/panic")));
    }

    #[test]
    fn filter_rules() {
        assert!(valid_filter("a/+/b/#"));
        assert!(!valid_filter("a/#/b") && !valid_filter("a+/b") && !valid_filter(""));
        assert!(matches("a/+/c", "a/b/c") && matches("a/#", "a") && matches("#", "a/b"));
        assert!(!matches("#", "$SYS/x") && matches("$SYS/#", "$SYS/x"));
        assert!(!matches("a/+", "a/b/c"));
    }

    #[test]
    fn overlap_and_cover() {
        assert!(overlap("edge/+/led/left/set", "edge/me/+/+/set"));
        assert!(overlap("edge/me/#", "edge/me/+/set"));
        assert!(overlap("a/b", "a/b/#"), "'#' takes its parent level");
        assert!(!overlap("edge/me/+/set", "edge/me/+/+/set"));
        assert!(!overlap("a/b", "a/c"));
        assert!(!overlap("#", "$SYS/x") && !overlap("+/x", "$SYS/x"));
        assert!(overlap("$SYS/#", "$SYS/x"));
        assert!(covers("edge/me/#", "edge/me/+/set"));
        assert!(covers("a/+/c", "a/b/c") && !covers("a/b/c", "a/+/c"));
        assert!(covers("a/#", "a") && !covers("a/+", "a/#"));
        assert!(!covers("#", "$SYS/x"));
    }

    /// Every valid filter and every topic of up to three levels over a small
    /// alphabet (with a `$` level), for exhaustive checks.
    fn universe() -> (Vec<String>, Vec<String>) {
        let words = ["a", "b", "$s"];
        let mut topics: Vec<String> = Vec::new();
        let mut filters: Vec<String> = Vec::new();
        let mut level: Vec<String> = vec![String::new()];
        for depth in 1..=3 {
            let mut next = Vec::new();
            for prefix in &level {
                for w in words.iter().chain(["+", "#"].iter()) {
                    if depth > 1 && w.starts_with('$') {
                        continue;
                    }
                    let t = if prefix.is_empty() {
                        w.to_string()
                    } else {
                        format!("{prefix}/{w}")
                    };
                    if valid_filter(&t) {
                        filters.push(t.clone());
                    }
                    if !w.contains(['+', '#']) && !prefix.contains(['+', '#']) {
                        topics.push(t.clone());
                    }
                    if !t.ends_with('#') {
                        next.push(t);
                    }
                }
            }
            level = next;
        }
        (filters, topics)
    }

    #[test]
    fn overlap_covers_and_disjoint_agree_with_matching_everywhere() {
        let (filters, topics) = universe();
        let hits = |f: &str| -> Vec<bool> { topics.iter().map(|t| matches(f, t)).collect() };
        let table: Vec<Vec<bool>> = filters.iter().map(|f| hits(f)).collect();
        for (i, a) in filters.iter().enumerate() {
            for (j, b) in filters.iter().enumerate() {
                let both = table[i].iter().zip(&table[j]).any(|(x, y)| *x && *y);
                assert_eq!(overlap(a, b), both, "overlap({a}, {b})");
                if covers(a, b) {
                    assert!(
                        table[j].iter().zip(&table[i]).all(|(y, x)| !*y || *x),
                        "covers({a}, {b})"
                    );
                }
            }
        }
        // Pairs and triples of wanted filters (every pair, a spread of
        // triples): each topic one of them matches arrives through exactly
        // one subscription.
        let n = filters.len();
        let mut sets: Vec<Vec<String>> = Vec::new();
        for i in 0..n {
            for j in i..n {
                sets.push(vec![filters[i].clone(), filters[j].clone()]);
                let k = (i * 31 + j * 17) % n;
                sets.push(vec![
                    filters[i].clone(),
                    filters[j].clone(),
                    filters[k].clone(),
                ]);
            }
        }
        for wanted in sets {
            let got = disjoint(&wanted);
            for t in &topics {
                let want = wanted.iter().any(|w| matches(w, t));
                let n = got.iter().filter(|g| matches(g, t)).count();
                assert!(n <= 1, "{t} twice through {got:?} (wanted {wanted:?})");
                assert!(!want || n == 1, "{t} lost by {got:?} (wanted {wanted:?})");
            }
        }
    }

    #[test]
    fn disjoint_filters_match_what_was_wanted_and_no_topic_twice() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        // Disjoint already: kept as they are.
        let own = every_verb().filters();
        assert_eq!(disjoint(&own), own);
        // A link on one of the device's own command topics: already covered.
        let mut wanted = own.clone();
        wanted.push("edge/t/led/left/set".into());
        assert_eq!(disjoint(&wanted), own);
        // A link on everything of the device's: it covers the commands.
        let mut wanted = own.clone();
        wanted.push("edge/t/#".into());
        wanted.push("homeassistant/status".into());
        assert_eq!(disjoint(&wanted), s(&["edge/t/#", "homeassistant/status"]));
        // Partly overlapping: one filter that covers both.
        let got = disjoint(&s(&["edge/+/led/left/set", "edge/t/+/+/set"]));
        assert_eq!(got, s(&["edge/+/+/+/set"]));
        let got = disjoint(&s(&["a/b", "a/b/#", "x", "a/b/c/#"]));
        assert_eq!(got, s(&["a/b/#", "x"]));
        // Whatever comes out: each wanted topic matches exactly one filter.
        let wanted = s(&[
            "edge/+/button/event",
            "edge/kitchen/#",
            "edge/t/+/set",
            "edge/t/+/+/set",
            "$SYS/broker/uptime",
            "+/kitchen/button/event",
        ]);
        let got = disjoint(&wanted);
        for topic in [
            "edge/kitchen/button/event",
            "edge/t/led/left/set",
            "edge/t/matrix/set",
            "$SYS/broker/uptime",
            "home/kitchen/button/event",
        ] {
            let n = got.iter().filter(|f| matches(f, topic)).count();
            assert_eq!(n, 1, "{topic} in {got:?}");
        }
    }

    /// The built-in broker settings (broker/rumqttd.toml) give each of a
    /// device's command filters the long commit log that holds a flood of
    /// 20,000 commands, and every other filter the short one.
    #[test]
    fn the_broker_keeps_the_long_log_for_every_command_filter() {
        let settings = crate::mqtt::broker::EmbeddedBroker {
            listen: "127.0.0.1:2883".parse().unwrap(),
            listen_v5: "127.0.0.1:2884".parse().unwrap(),
            credentials: None,
            rumqttd_toml: None,
            max_connections: 10,
        };
        let router = crate::mqtt::broker::rumqttd_config(&settings)
            .expect("the built-in settings")
            .router;
        let custom = router.custom_segment.expect("custom segments");
        let long = |filter: &str| -> Vec<(usize, usize)> {
            custom
                .iter()
                .filter(|(key, _)| rumqttd::protocol::matches(filter, key))
                .map(|(_, c)| (c.max_segment_size, c.max_segment_count))
                .collect()
        };
        let verbs = || COMMANDS.iter().map(|c| c.verb).collect::<Vec<_>>();
        let groups = vec!["all".to_string(), "site/kitchen/floor".to_string()];
        for base in ["edge/t", "home/floor/2/edge/t"] {
            let t = Topics::new(base, verbs()).with_groups(groups.clone());
            for f in t.filters() {
                let got = long(&f);
                if f.ends_with("/set") {
                    // One match (rumqttd takes the last of several, in no
                    // fixed order), whose last segments but one hold 20,000
                    // commands of 64 counted bytes.
                    assert_eq!(got.len(), 1, "{f}: {got:?}");
                    let (size, count) = got[0];
                    assert!((count - 1) * size >= 20_000 * 64, "{f}: {got:?}");
                } else {
                    assert!(got.is_empty(), "{f}: {got:?}");
                }
            }
        }
        for f in ["edge/t/+", "edge/t/led/+", "reply/edge/t", "#", "edge/#"] {
            assert!(long(f).is_empty(), "{f}");
        }
    }
}
