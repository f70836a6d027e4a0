//! The device's parts, each in its own home: its command parsing, its device
//! logic, its config section, its state and its Home Assistant entities,
//! written against the hardware traits only. No part knows MQTT: a part
//! takes commands by the topic table's verbs and returns what changed as
//! values keyed by the table's state paths.
//!
//! `parts!` is the registry: one line per part makes its arm of `Part`
//! and of `Command`, and starts it with the others.

pub mod button;
pub mod buzzer;
pub mod health;
pub(crate) mod input;
pub mod leds;
pub mod matrix;
pub mod message_board;
pub(crate) mod sim;

use std::future::Future;

use crate::clock::Zone;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::agent::AgentError;
use crate::config::gpio::{Checked, GpioPlan, Lines};
use crate::config::Settings;
use crate::hardware::{Hardware, HardwareError, Wire};
use crate::mqtt::topic::{self, Verb};
use crate::parts::button::ButtonEvent;
use crate::parts::input::CommandError;
use crate::parts::matrix::engine::MatrixState;

/// A Home Assistant entity a part offers, in the topic table's terms:
/// discovery adds the topics, the device and availability. A
/// `device_automation` (a device trigger) is framed as one: its `state` is
/// the topic it fires on.
#[derive(Debug, Clone, Default)]
pub struct Entity {
    /// Home Assistant's component (`light`, `sensor`, ...).
    pub component: &'static str,
    /// The object id, unique on the device.
    pub object: String,
    /// The entity's name.
    pub name: String,
    /// Whether the part is enabled; a disabled one's entity is removed.
    pub enabled: bool,
    /// The command it takes, with the LED it names (for `led/<name>/set`).
    pub command: Option<(Verb, &'static str)>,
    /// The state topic below base it reads.
    pub state: Option<String>,
    /// A template of attributes read from the state topic (Home
    /// Assistant's `json_attributes_template`).
    pub attributes: Option<&'static str>,
    /// The rest of its config.
    pub fields: serde_json::Value,
}

/// A part's section of the configuration: what the config check, the
/// topic table's subscriptions, the hardware wiring and discovery need of
/// it before (or without) the part running.
pub(crate) trait Section {
    /// Whether the part is fitted.
    fn enabled(&self) -> bool;

    /// The verbs of the topic table the part takes when fitted.
    fn verbs(&self) -> &'static [Verb] {
        &[]
    }

    /// Checks its values and adds its GPIO lines to `lines` (when fitted).
    fn check(&self, gpio: &GpioPlan<'_>, lines: &mut Lines) -> Checked;

    /// What it needs of the pins when fitted, on `chip` unless it names its own.
    fn wires(&self, _chip: &str) -> Vec<Wire> {
        Vec::new()
    }

    /// Its Home Assistant entities, fitted or not (`effects`: the matrix's
    /// named patterns).
    fn entities(&self, effects: &[&str]) -> Vec<Entity>;
}

/// The `Section` methods every part's section has alike: it is fitted by
/// its `enabled` key and takes the verbs its folder's `VERBS` lists.
macro_rules! fitted_by_enabled {
    () => {
        fn enabled(&self) -> bool {
            self.enabled
        }

        fn verbs(&self) -> &'static [crate::mqtt::topic::Verb] {
            super::VERBS
        }
    };
}
pub(crate) use fitted_by_enabled;

/// The time a part acts at, by both clocks, with the agent's counters.
#[derive(Debug, Clone)]
pub(crate) struct Now {
    /// The monotonic time (timers, rate limits).
    pub at: Instant,
    /// The wall clock (what the board shows, event times).
    pub wall: DateTime<Utc>,
    /// The device's time zone.
    pub time_zone: Zone,
    /// What the agent has done so far.
    pub stats: Stats,
}

/// The agent's counters, as the health report shows them.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Stats {
    /// Commands carried out.
    pub applied: u64,
    /// Commands refused.
    pub rejected: u64,
    /// Connections to the broker after the first.
    pub reconnections: u64,
    /// When a command was last refused or a part last failed.
    pub last_error: Option<DateTime<Zone>>,
}

/// What a part changed, for the core to publish: paths below base, from
/// the topic table's state rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Out {
    /// A retained state (the latest per path is what counts).
    State(String, Bytes),
    /// An event (a button press, a clock tick): not retained.
    Event(&'static str, Bytes),
    /// What the part offers Home Assistant changed (the matrix's effects):
    /// its discovery is announced again.
    Rediscover,
    /// The command just carried out will be answered once more, later, as
    /// number `.1` of the part whose state is at `.0` (the board answers
    /// again when the panel has shown a message).
    Awaits(&'static str, u64),
    /// The later answer to the command that [`Out::Awaits`] numbered so.
    Answer(&'static str, u64, Bytes),
}

impl Out {
    /// A retained state at `path`.
    pub(crate) fn state(path: impl Into<String>, payload: impl Into<Bytes>) -> Out {
        Out::State(path.into(), payload.into())
    }
}

/// Something that happened, which any part may react to.
#[derive(Debug)]
pub(crate) enum Event {
    /// A whole minute of the time zone came.
    Minute(DateTime<Zone>),
    /// The button did something.
    Button(ButtonEvent),
    /// The matrix engine reports its state.
    Matrix(MatrixState),
    /// The broker connection went down.
    Offline,
    /// The broker connection came up.
    Online,
    /// Every state goes out again (Home Assistant came back): an event a
    /// subscriber needs for a value (the last clock tick) may go again too.
    Announce,
    /// A part's hardware failed; the path names the part's state topic.
    Failed(&'static str, HardwareError),
    /// Show where the device is (Home Assistant's identify button): the
    /// matrix and the LEDs flash, the buzzer beeps.
    Identify,
    /// The board's panel took a frame, here as a PNG.
    Drawn {
        /// The frame, as a 1-bit PNG in base64.
        png: Bytes,
    },
    /// What the board's panel did with a screen.
    Board(message_board::display::Progress),
}

/// What a part is started with.
pub(crate) struct Start<'a> {
    /// The settings.
    pub settings: &'a Settings,
    /// The hardware, from which each part takes its wires by name.
    pub hardware: &'a mut Hardware,
    /// The wall clock now.
    pub wall: DateTime<Utc>,
    /// Where the parts' tasks report what happens.
    pub events: mpsc::Sender<Event>,
    /// The parts' tasks, aborted when the agent stops.
    pub tasks: &'a mut Vec<JoinHandle<()>>,
}

impl Start<'_> {
    /// A sender for the failures of the part whose state is at `path`;
    /// each arrives as [`Event::Failed`].
    pub(crate) fn failures(&mut self, path: &'static str) -> mpsc::Sender<HardwareError> {
        self.forward(move |e| Event::Failed(path, e))
    }

    /// A sender whose values arrive as events, made by `event`.
    pub(crate) fn forward<T: Send + 'static>(
        &mut self,
        event: impl Fn(T) -> Event + Send + 'static,
    ) -> mpsc::Sender<T> {
        let (tx, mut rx) = mpsc::channel::<T>(8);
        let events = self.events.clone();
        self.tasks.push(tokio::spawn(async move {
            while let Some(v) = rx.recv().await {
                if events.send(event(v)).await.is_err() {
                    break;
                }
            }
        }));
        tx
    }
}

/// What every part does; the core drives the parts through it only.
pub(crate) trait Device: Sized {
    /// A command it takes, parsed.
    type Command: std::fmt::Debug + Clone + PartialEq;

    /// Starts the part, when the settings enable it and the hardware has it.
    fn start(start: &mut Start<'_>) -> Result<Option<Self>, AgentError>;

    /// The verbs of the topic table it takes.
    fn verbs(&self) -> &'static [Verb] {
        &[]
    }

    /// Parses a command on one of its verbs (`name`: the LED a topic names).
    fn parse(
        &self,
        verb: Verb,
        name: Option<&str>,
        payload: &[u8],
    ) -> Result<Self::Command, CommandError>;

    /// Carries out a command; on error nothing has changed.
    fn execute(&mut self, cmd: Self::Command, now: &Now) -> Result<Vec<Out>, CommandError>;

    /// Every state it has, to publish now.
    fn states(&mut self, now: &Now) -> Vec<Out>;

    /// Reacts to something that happened.
    fn react(&mut self, _event: &Event, _now: &Now) -> Vec<Out> {
        Vec::new()
    }

    /// The effects it offers Home Assistant (the matrix's named patterns),
    /// if it has any.
    fn effects(&self) -> Option<Vec<String>> {
        None
    }

    /// Its next timer due, as of `now`.
    fn deadline(&self, _now: Instant) -> Option<Instant> {
        None
    }

    /// Its timer is due.
    fn timer(&mut self, _now: &Now) -> Vec<Out> {
        Vec::new()
    }

    /// Puts its outputs at their safe values while the agent runs on (the
    /// broker has been away too long); returns its states.
    fn go_safe(&mut self, now: &Now) -> Vec<Out> {
        self.states(now)
    }

    /// Puts its outputs at their safe values and stops (shutdown); returns
    /// the states it is left in and whether the hardware took it.
    fn stop(self, now: Now) -> impl Future<Output = (Vec<Out>, Result<(), HardwareError>)>;
}

/// The registry: one line per part makes its arm of [`Part`] and of
/// [`Command`], and its place in the start order (which is the order of
/// every publish of all states, and of the shutdown).
macro_rules! parts {
    ($($(#[$doc:meta])* $arm:ident($ty:ty),)*) => {
        /// One part of the device, running.
        pub(crate) enum Part {
            $($(#[$doc])* $arm($ty),)*
        }

        /// A command for one part, as that part parsed it, or for the device.
        #[derive(Debug, Clone, PartialEq)]
        pub(crate) enum Command {
            $($(#[$doc])* $arm(<$ty as Device>::Command),)*
            /// Every part that can show where the device is does.
            Identify,
        }

        impl Part {
            /// Every part the settings enable, started.
            fn start_all(start: &mut Start<'_>) -> Result<Vec<Part>, AgentError> {
                let mut parts = Vec::new();
                $(if let Some(p) = <$ty as Device>::start(start)? {
                    parts.push(Part::$arm(p));
                })*
                Ok(parts)
            }

            fn verbs(&self) -> &'static [Verb] {
                match self { $(Part::$arm(p) => p.verbs(),)* }
            }

            fn parse(&self, verb: Verb, name: Option<&str>, payload: &[u8]) -> Result<Command, CommandError> {
                match self { $(Part::$arm(p) => p.parse(verb, name, payload).map(Command::$arm),)* }
            }

            /// Whether `cmd` is this part's.
            fn owns(&self, cmd: &Command) -> bool {
                match (self, cmd) {
                    $((Part::$arm(_), Command::$arm(_)) => true,)*
                    #[allow(unreachable_patterns)]
                    _ => false,
                }
            }

            fn execute(&mut self, cmd: Command, now: &Now) -> Result<Vec<Out>, CommandError> {
                match (self, cmd) {
                    $((Part::$arm(p), Command::$arm(c)) => p.execute(c, now),)*
                    #[allow(unreachable_patterns)]
                    (_, cmd) => Err(CommandError::Disabled(format!("{cmd:?}"))),
                }
            }

            fn states(&mut self, now: &Now) -> Vec<Out> {
                match self { $(Part::$arm(p) => p.states(now),)* }
            }

            fn react(&mut self, event: &Event, now: &Now) -> Vec<Out> {
                match self { $(Part::$arm(p) => p.react(event, now),)* }
            }

            fn effects(&self) -> Option<Vec<String>> {
                match self { $(Part::$arm(p) => p.effects(),)* }
            }

            fn deadline(&self, now: Instant) -> Option<Instant> {
                match self { $(Part::$arm(p) => p.deadline(now),)* }
            }

            fn timer(&mut self, now: &Now) -> Vec<Out> {
                match self { $(Part::$arm(p) => p.timer(now),)* }
            }

            fn go_safe(&mut self, now: &Now) -> Vec<Out> {
                match self { $(Part::$arm(p) => p.go_safe(now),)* }
            }

            async fn stop(self, now: Now) -> (Vec<Out>, Result<(), HardwareError>) {
                match self { $(Part::$arm(p) => p.stop(now).await,)* }
            }
        }
    };
}

parts! {
    /// The buzzer.
    Buzzer(buzzer::Buzzer),
    /// The PWM LEDs and the tilt rule.
    Leds(leds::Leds),
    /// The 5×5 LED matrix and its patterns.
    Matrix(matrix::Matrix),
    /// The button (its events go out before what they change).
    Button(button::Button),
    /// The message board with its display and clock.
    Board(message_board::MessageBoard),
    /// The simulated backend's own topics.
    Sim(sim::Sim),
    /// The board's report on itself.
    Health(health::Health),
}

/// The running parts.
pub(crate) struct Parts {
    list: Vec<Part>,
}

impl Parts {
    /// Every part the settings enable, started on `start.hardware`.
    pub(crate) fn start(start: &mut Start<'_>) -> Result<Parts, AgentError> {
        Ok(Parts {
            list: Part::start_all(start)?,
        })
    }

    /// Parses a command on `verb`, by the part that takes it.
    pub(crate) fn parse(
        &self,
        verb: Verb,
        name: Option<&str>,
        payload: &[u8],
    ) -> Result<Command, CommandError> {
        if verb == Verb::Identify {
            return Ok(Command::Identify);
        }
        match self.list.iter().find(|p| p.verbs().contains(&verb)) {
            Some(part) => part.parse(verb, name, payload),
            None => Err(CommandError::Disabled(topic::command(verb).part.into())),
        }
    }

    /// Carries out a command; on error nothing has changed.
    pub(crate) fn execute(&mut self, cmd: Command, now: &Now) -> Result<Vec<Out>, CommandError> {
        if cmd == Command::Identify {
            return Ok(self.react(&Event::Identify, now));
        }
        match self.list.iter_mut().find(|p| p.owns(&cmd)) {
            Some(part) => part.execute(cmd, now),
            None => Err(CommandError::Disabled(format!("{cmd:?}"))),
        }
    }

    /// Every part's states.
    pub(crate) fn states(&mut self, now: &Now) -> Vec<Out> {
        self.list.iter_mut().flat_map(|p| p.states(now)).collect()
    }

    /// The effects offered to Home Assistant (the matrix's named patterns).
    pub(crate) fn effects(&self) -> Option<Vec<String>> {
        self.list.iter().find_map(|p| p.effects())
    }

    /// What the parts make of `event`.
    pub(crate) fn react(&mut self, event: &Event, now: &Now) -> Vec<Out> {
        self.list
            .iter_mut()
            .flat_map(|p| p.react(event, now))
            .collect()
    }

    /// The next part timer due, and the part's index.
    pub(crate) fn deadline(&self, now: Instant) -> Option<(Instant, usize)> {
        self.list
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some((p.deadline(now)?, i)))
            .min_by_key(|(at, _)| *at)
    }

    /// The timer of part `index` is due.
    pub(crate) fn timer(&mut self, index: usize, now: &Now) -> Vec<Out> {
        self.list
            .get_mut(index)
            .map(|p| p.timer(now))
            .unwrap_or_default()
    }

    /// Every output at its safe value; the states.
    pub(crate) fn go_safe(&mut self, now: &Now) -> Vec<Out> {
        self.list.iter_mut().flat_map(|p| p.go_safe(now)).collect()
    }

    /// Every output at its safe value and every part stopped, in order;
    /// the states they are left in, and the first hardware failure.
    pub(crate) async fn stop(self, now: Now) -> (Vec<Out>, Result<(), HardwareError>) {
        let mut outs = Vec::new();
        let mut first = Ok(());
        for part in self.list {
            let (o, r) = part.stop(now.clone()).await;
            outs.extend(o);
            if first.is_ok() {
                first = r;
            }
        }
        (outs, first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::time::Duration;

    /// Now, in UTC, with no counts.
    fn now() -> Now {
        Now {
            at: Instant::now(),
            wall: Utc::now(),
            time_zone: Zone::utc(),
            stats: Stats::default(),
        }
    }

    /// Every part on simulated hardware, with the verbs they take.
    fn every_part() -> (crate::command::Parser, Vec<Verb>) {
        let config = "[display]\nenabled = true\nbackend = \"sim\"\nrefresh_ms = 0\n\
                      [buzzer]\nenabled = true\n";
        let parser = crate::command::Parser::new(config).unwrap();
        let verbs = Config::from_toml(&format!("[device]\nid = \"t\"\n{config}"))
            .unwrap()
            .config
            .verbs();
        (parser, verbs)
    }

    #[test]
    fn each_verb_the_config_enables_is_taken_by_exactly_one_part() {
        let (parser, verbs) = every_part();
        let parts = &parser.parts;
        assert_eq!(verbs.len(), topic::COMMANDS.len(), "every part is on");
        for verb in verbs {
            assert_eq!(topic::command(verb).verb, verb, "{verb:?} has its row");
            if verb == Verb::Identify {
                // The device's: every part may show it.
                continue;
            }
            let takers = parts
                .list
                .iter()
                .filter(|p| p.verbs().contains(&verb))
                .count();
            assert_eq!(takers, 1, "{verb:?}");
        }
    }

    #[test]
    fn a_command_goes_to_the_part_that_parsed_it_and_events_reach_every_part() {
        let (mut parser, _) = every_part();
        let parts = &mut parser.parts;
        let now = now();
        let cmd = parts.parse(Verb::Buzzer, None, b"ON").unwrap();
        assert!(matches!(cmd, Command::Buzzer(_)));
        assert_eq!(
            parts.execute(cmd, &now).unwrap(),
            vec![Out::state("buzzer", r#"{"state":"ON"}"#)]
        );
        // Online: the button's event goes out, and the board, which the
        // press restarts, shows its clock again.
        assert!(parts.react(&Event::Online, &now).is_empty());
        let out = parts.react(&Event::Button(ButtonEvent::Press), &now);
        let paths: Vec<&str> = out
            .iter()
            .map(|o| match o {
                Out::State(p, _) => p.as_str(),
                Out::Event(p, _) => p,
                Out::Rediscover | Out::Awaits(..) | Out::Answer(..) => "(core)",
            })
            .collect();
        assert_eq!(paths, ["button/event"], "the clock was running already");
        let shown = parts.parse(Verb::Message, None, b"hi").unwrap();
        parts.execute(shown, &now).unwrap();
        let out = parts.react(&Event::Button(ButtonEvent::Press), &now);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(
            matches!(&out[1], Out::State(p, _) if p == "display"),
            "{out:?}"
        );
    }

    #[test]
    fn every_whole_minute_ticks_while_a_message_is_shown_too() {
        let (mut parser, _) = every_part();
        let parts = &mut parser.parts;
        let now = now();
        let minute = |m: u32| {
            use chrono::TimeZone;
            Event::Minute(Zone::utc().with_ymd_and_hms(2026, 12, 2, 10, m, 0).unwrap())
        };
        let tick = |m: u32| {
            Out::Event(
                topic::state::CLOCK_TICK,
                format!("{{\"time\":\"2026-12-02T10:{m:02}:00+00:00\"}}").into(),
            )
        };
        assert_eq!(parts.react(&minute(1), &now), vec![tick(1)]);
        let shown = parts.parse(Verb::Message, None, b"hi").unwrap();
        parts.execute(shown, &now).unwrap();
        assert_eq!(parts.react(&minute(2), &now), vec![tick(2)]);
    }

    #[test]
    fn identify_reaches_every_part_that_can_show_it() {
        let (mut parser, _) = every_part();
        let now = now();
        let cmd = parser.parse("edge/t/identify/set", b"PRESS").unwrap();
        assert_eq!(cmd, Command::Identify);
        // The buzzer beeps (its state); the matrix and the LEDs flash.
        let out = parser.parts.execute(cmd, &now).unwrap();
        assert_eq!(
            out,
            vec![Out::state("buzzer", r#"{"state":"ON","duration":0.2}"#)]
        );
        let leds = parser.parts.list.iter().find_map(|p| match p {
            Part::Leds(l) => Some(l),
            _ => None,
        });
        assert!(
            leds.is_some_and(|l| l.deadline(now.at).is_some()),
            "the LEDs flash"
        );
    }

    #[test]
    fn presses_while_offline_go_out_when_online_with_their_time_unless_too_old() {
        let (mut parser, _) = every_part();
        let parts = &mut parser.parts;
        let t0 = Instant::now();
        let at = |s: u64, wall: &str| Now {
            at: t0 + Duration::from_secs(s),
            wall: wall.parse().unwrap(),
            ..now()
        };
        let press =
            |parts: &mut Parts, now: Now| parts.react(&Event::Button(ButtonEvent::Press), &now);
        // Before the first connection, as after a lost one: kept.
        assert!(press(parts, at(0, "2026-12-02T10:00:00Z")).is_empty());
        for _ in 0..button::KEPT_OFFLINE + 5 {
            press(parts, at(200, "2026-12-02T10:03:20Z"));
        }
        // 301 s after the first (button.offline_max_age_s is 300): that one
        // is too old; of the others the last 100 are kept.
        let out = parts.react(&Event::Online, &at(301, "2026-12-02T10:05:01Z"));
        assert_eq!(out.len(), button::KEPT_OFFLINE, "{out:?}");
        for o in &out {
            let Out::Event(path, payload) = o else {
                panic!("{o:?}")
            };
            assert_eq!(*path, topic::state::BUTTON_EVENT);
            let v: serde_json::Value = serde_json::from_slice(payload).unwrap();
            assert_eq!(v["at"], "2026-12-02T10:03:20+00:00", "its own time");
        }
        // Online now: at once.
        assert_eq!(press(parts, at(301, "2026-12-02T10:05:01Z")).len(), 1);
        assert!(parts.react(&Event::Offline, &now()).is_empty());
        assert!(
            press(parts, at(302, "2026-12-02T10:05:02Z")).is_empty(),
            "kept again"
        );
    }
}
