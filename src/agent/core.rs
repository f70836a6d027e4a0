//! The agent's decisions as a pure core, in the manner of rumqttc's
//! `MqttState` beside its `EventLoop`: `Core::step` takes one input (a
//! message, a change of the link, a timer, a part's report) and returns what
//! to publish, as values, in order. It owns the parts and never touches the
//! network; the loop in [`super`] feeds it and hands its outputs to the
//! transport.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::DateTime;
use chrono_tz::Tz;
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use super::AgentError;
use crate::clock::{rfc3339, Step, WallClock};
use crate::command::{Catalog, Command, CommandError, MatrixSet, Router};
use crate::config::{DisplayBackend, DisplayConfig, Settings};
use crate::discovery::Announcement;
use crate::hardware::sim::ButtonInjector;
use crate::hardware::{Display, Hardware, HardwareError, InputEdges};
use crate::links::{Fired, Links};
use crate::mqtt::topic::{self, state, Topics};
use crate::mqtt::transport::{Ack, Inbound, Link, ReplyTo};
use crate::parts::button::{self, ButtonEvent, Timing};
use crate::parts::buzzer::Buzzer;
use crate::parts::leds::{LedGroup, LedState, LedTimer, LedTiming};
use crate::parts::matrix::engine::{
    self as matrix_engine, MatrixCommand, MatrixHandle, MatrixState,
};
use crate::parts::matrix::pattern::{Library, Node};
use crate::parts::matrix::Frame;
use crate::parts::message_board::board::Board;
use crate::parts::message_board::display::{self, DisplayHandle, Refresh};
use crate::parts::message_board::render::Screen;
use crate::rate::PerSecond;

/// What the core decided to publish, as a value; the loop hands each to the
/// transport in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Output {
    /// A retained state (the latest per topic is what counts).
    Retain {
        /// The full topic.
        topic: String,
        /// The payload.
        payload: Bytes,
    },
    /// An event (button, clock tick): not retained.
    Event {
        /// The full topic.
        topic: String,
        /// The payload.
        payload: Bytes,
    },
    /// An error report on `<base>/error`.
    Report {
        /// The full topic.
        topic: String,
        /// The payload.
        payload: Bytes,
    },
    /// The answer to a request (MQTT 5 response topic).
    Reply {
        /// Where it goes.
        to: ReplyTo,
        /// The payload.
        payload: Bytes,
    },
    /// The acknowledgement of a handled command, owed to the broker.
    Ack(Ack),
    /// Every retained topic again (Home Assistant came back).
    RepublishRetained,
}

/// The outputs of one step, in order.
#[derive(Debug, Default)]
pub(crate) struct Outbox(Vec<Output>);

impl Outbox {
    fn retain(&mut self, topic: &str, payload: impl Into<Bytes>) {
        self.0.push(Output::Retain {
            topic: topic.to_string(),
            payload: payload.into(),
        });
    }
    fn event(&mut self, topic: &str, payload: impl Into<Bytes>) {
        self.0.push(Output::Event {
            topic: topic.to_string(),
            payload: payload.into(),
        });
    }
    fn report(&mut self, topic: &str, payload: impl Into<Bytes>) {
        self.0.push(Output::Report {
            topic: topic.to_string(),
            payload: payload.into(),
        });
    }
    fn reply(&mut self, to: &ReplyTo, payload: impl Into<Bytes>) {
        self.0.push(Output::Reply {
            to: to.clone(),
            payload: payload.into(),
        });
    }
    fn ack(&mut self, ack: Ack) {
        self.0.push(Output::Ack(ack));
    }
    fn republish_retained(&mut self) {
        self.0.push(Output::RepublishRetained);
    }
}

/// A timer of the core's, due at the instant [`Core::deadline`] gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// A beep ends.
    Buzzer,
    /// The broker has been away for `safety.offline_timeout_ms`.
    Offline,
    /// One of the LEDs' timers (tilt timeout, rate-limited state).
    Led(LedTimer),
}

/// One thing that happened, for [`Core::step`].
#[derive(Debug)]
pub(crate) enum Input {
    /// A message arrived on a subscribed topic.
    Message(Inbound),
    /// The connection came up or went down.
    Link(Link),
    /// A whole minute of the time zone came.
    Minute(DateTime<Tz>),
    /// The wall clock was set.
    Stepped(Step),
    /// The button did something.
    Button(ButtonEvent),
    /// A timer from [`Core::deadline`] is due.
    Timer(Timer),
    /// The matrix engine reports its state.
    Matrix(MatrixState),
    /// A part's hardware failed; the state path below base names the part.
    Failed(&'static str, HardwareError),
}

/// The message board and the worker that draws on its panel.
struct MessageBoard {
    board: Board,
    display: DisplayHandle,
}

impl MessageBoard {
    /// The board on `panel`, showing its first screen, with its panel's worker.
    fn start(
        settings: &Settings,
        panel: Box<dyn Display>,
        now: DateTime<chrono::Utc>,
        errors: mpsc::Sender<HardwareError>,
    ) -> (MessageBoard, JoinHandle<()>) {
        let refresh = refresh_of(&settings.config.display, panel.as_ref());
        let (handle, task) = display::spawn(panel, refresh, errors);
        let (board, first) = Board::new(settings.time_zone, now);
        handle.show(first);
        let board = MessageBoard {
            board,
            display: handle,
        };
        (board, task)
    }
}

/// The matrix's pattern engine and what it last reported.
struct MatrixPart {
    engine: MatrixHandle,
    task: tokio::task::JoinHandle<()>,
    state: MatrixState,
    /// The program ON brings back.
    last: Option<(Arc<Node>, Option<String>)>,
}

/// The device parts and the topics their state goes to.
struct Parts {
    topics: Topics,
    wall: Arc<dyn WallClock>,
    leds: Option<LedGroup>,
    matrix: Option<MatrixPart>,
    board: Option<MessageBoard>,
    buzzer: Option<Buzzer>,
    button_injector: Option<ButtonInjector>,
    safe: Safe,
    /// Rejected commands reported one by one (log and `<base>/error`).
    error_reports: PerSecond,
}

/// Rejected commands logged and published one by one, per second; a flood
/// of bad commands beyond it is counted and reported as one line. Replies
/// to requests are not limited: each goes to its own requester.
pub(crate) const ERROR_REPORTS_PER_SECOND: u32 = 50;

/// The outputs' safe values (`[safety]`).
#[derive(Debug, Clone, Copy)]
struct Safe {
    /// Every LED's duty, 0..=1.
    led_duty: f64,
    /// The matrix frame.
    matrix: Frame,
}

impl Parts {
    /// The parts the hardware has, started, with what the loop listens to
    /// for them (the subscriptions are left for the core to fill in).
    fn build(
        settings: &Settings,
        hardware: Hardware,
        wall: Arc<dyn WallClock>,
    ) -> Result<(Parts, Wiring), AgentError> {
        let config = &settings.config;
        let mut hardware = hardware;
        let leds: Vec<_> = topic::LED_NAMES
            .iter()
            .filter_map(|&n| Some((n.to_string(), hardware.pwm(&state::led(n))?)))
            .collect();
        let matrix = hardware.outputs(state::MATRIX);
        let button = hardware.input("button");
        let buzzer = hardware.pwm(state::BUZZER);
        let display = hardware.display.take();
        let sim = hardware.sim.take();
        let (display_errors_tx, display_errors) = mpsc::channel::<HardwareError>(8);
        let (led_errors_tx, led_errors) = mpsc::channel::<HardwareError>(8);
        let (matrix_states_tx, matrix_states) = watch::channel(MatrixState::default());
        let (matrix_errors_tx, matrix_errors) = mpsc::channel::<HardwareError>(8);
        let mut tasks = Vec::new();
        let board = display.map(|panel| {
            let (board, task) = MessageBoard::start(settings, panel, wall.now(), display_errors_tx);
            tasks.push(task);
            board
        });
        let safe = Safe {
            led_duty: f64::from(config.safety.led_percent) / 100.0,
            matrix: config
                .safety
                .matrix_frame()
                .map_err(|e| AgentError::Patterns(format!("safety.matrix: {e}")))?,
        };
        let leds = (!leds.is_empty()).then(|| {
            let timing = LedTiming {
                write_interval: Duration::from_millis(config.tilt.write_interval_ms),
                tilt_timeout: Duration::from_millis(config.tilt.timeout_ms),
                publish_interval: Duration::from_millis(config.tilt.state_interval_ms),
            };
            LedGroup::new(leds, timing, led_errors_tx)
        });
        let matrix = match matrix {
            Some(outputs) => {
                let (engine, task) =
                    matrix_engine::spawn(outputs, matrix_states_tx, matrix_errors_tx, safe.matrix)?;
                Some(MatrixPart {
                    engine,
                    task,
                    state: MatrixState::default(),
                    last: None,
                })
            }
            None => None,
        };
        let (button_tx, button_events) = mpsc::channel::<ButtonEvent>(16);
        let mut button = button;
        if let Some(input) = button.as_mut() {
            let edges = input.edges()?;
            let timing = Timing::from_config(&config.button);
            tasks.push(tokio::spawn(button::watch(edges, timing, button_tx)));
        }
        let parts = Parts {
            safe,
            topics: Topics::new(settings.base_topic.clone(), config.verbs()),
            wall,
            leds,
            matrix,
            board,
            buzzer: buzzer
                .map(|ch| Buzzer::new(ch, config.buzzer.tone_hz > 0.0))
                .transpose()?,
            button_injector: sim.as_ref().and_then(|s| s.input("button").cloned()),
            error_reports: PerSecond::new(ERROR_REPORTS_PER_SECOND, Instant::now()),
        };
        let wiring = Wiring {
            filters: Vec::new(),
            tasks,
            button,
            button_events,
            matrix_states,
            display_errors,
            led_errors,
            matrix_errors,
        };
        Ok((parts, wiring))
    }

    /// What the router needs to know of the parts there are.
    fn catalog(&self, settings: &Settings, sim_faults: bool, library: &Arc<Library>) -> Catalog {
        let config = &settings.config;
        Catalog {
            leds: self
                .leds
                .as_ref()
                .map(|l| l.names().to_vec())
                .unwrap_or_default(),
            matrix: self.matrix.as_ref().map(|_| Arc::clone(library)),
            sim_button: self.button_injector.is_some(),
            sim_faults,
            display: self
                .board
                .as_ref()
                .map(|_| config.display.max_message_chars),
            buzzer: self.buzzer.as_ref().map(|_| config.buzzer.max_beep_ms),
            tilt: self
                .leds
                .as_ref()
                .is_some_and(|l| l.names().iter().any(|n| n == "left")),
        }
    }

    /// Publishes every LED's state now.
    fn publish_leds(&mut self, out: &mut Outbox) {
        let Some(leds) = self.leds.as_mut() else {
            return;
        };
        for (name, state) in leds.states() {
            publish_led_state(out, &self.topics, name, state);
        }
        leds.published(Instant::now());
    }

    /// Publishes the state of the LED `name` alone: a command to one LED
    /// changes no other (the topic table says so to the link check).
    fn publish_led(&self, out: &mut Outbox, name: &str) {
        let Some(leds) = self.leds.as_ref() else {
            return;
        };
        if let Some((name, state)) = leds.states().find(|(n, _)| *n == name) {
            publish_led_state(out, &self.topics, name, state);
        }
    }

    /// Turns the LEDs off (broker loss while tilting) and reports it.
    fn leds_off(&mut self, out: &mut Outbox) {
        if let Some(leds) = self.leds.as_mut() {
            leds.off();
            self.publish_leds(out);
        }
    }

    fn publish_matrix(&self, out: &mut Outbox, state: &MatrixState) {
        out.retain(&self.topics.at(state::MATRIX), state.payload());
    }

    fn publish_board(&self, out: &mut Outbox) {
        let Some(mb) = &self.board else { return };
        out.retain(&self.topics.at(state::DISPLAY), mb.board.state().payload());
    }

    fn publish_buzzer(&self, out: &mut Outbox) {
        if let Some(b) = &self.buzzer {
            out.retain(&self.topics.at(state::BUZZER), b.payload());
        }
    }

    fn publish_all(&mut self, out: &mut Outbox) {
        self.publish_buzzer(out);
        self.publish_leds(out);
        if let Some(m) = &self.matrix {
            self.publish_matrix(out, &m.state);
        }
        self.publish_board(out);
    }

    /// Draws `screen` (if any) and publishes the board's state.
    fn board_changed(&self, screen: Option<Screen>, out: &mut Outbox) {
        if let (Some(mb), Some(screen)) = (&self.board, screen) {
            mb.display.show(screen);
            self.publish_board(out);
        }
    }

    /// Carries out one command; on error nothing has changed.
    fn execute(&mut self, cmd: Command, out: &mut Outbox) -> Result<(), CommandError> {
        let hw =
            |e: HardwareError| CommandError::BadPayload(format!("the hardware refused it: {e}"));
        let no_board = || CommandError::Disabled("the message board".into());
        match cmd {
            Command::Led { name, set } => {
                let leds = self
                    .leds
                    .as_mut()
                    .ok_or_else(|| CommandError::Disabled(format!("LED {name}")))?;
                if !leds.command(&name, set) {
                    return Err(CommandError::Disabled(format!("LED {name}")));
                }
                self.publish_led(out, &name);
            }
            Command::Tilt(t) => {
                let leds = self
                    .leds
                    .as_mut()
                    .ok_or_else(|| CommandError::Disabled("the tilt LEDs".into()))?;
                leds.tilt(t, Instant::now());
            }
            Command::Matrix(set) => {
                let m = self
                    .matrix
                    .as_mut()
                    .ok_or_else(|| CommandError::Disabled("the LED matrix".into()))?;
                // The engine reports the new state when the program starts.
                let cmd = match set {
                    MatrixSet::Run { program, effect } => MatrixCommand::Run { program, effect },
                    MatrixSet::Off => MatrixCommand::Off,
                    MatrixSet::On => {
                        let (program, effect) = m
                            .last
                            .clone()
                            .unwrap_or_else(|| (Arc::new(Node::Frame(Frame::ALL)), None));
                        MatrixCommand::Run { program, effect }
                    }
                };
                m.engine.send(cmd.clone()).map_err(hw)?;
                if let MatrixCommand::Run { program, effect } = cmd {
                    m.last = Some((program, effect));
                }
            }
            Command::DisplayMessage { text, from } => {
                let now = self.wall.now();
                let mb = self.board.as_mut().ok_or_else(no_board)?;
                let screen = mb.board.message(text, from, now);
                self.board_changed(Some(screen), out);
            }
            Command::Clock(on) => {
                let now = self.wall.now();
                let mb = self.board.as_mut().ok_or_else(no_board)?;
                if let Some(screen) = mb.board.set_clock(on, now) {
                    mb.display.show(screen);
                }
                self.publish_board(out);
            }
            Command::Buzzer(set) => {
                let b = self
                    .buzzer
                    .as_mut()
                    .ok_or_else(|| CommandError::Disabled("the buzzer".into()))?;
                b.set(set, Instant::now()).map_err(hw)?;
                self.publish_buzzer(out);
            }
            Command::SimPanic { in_loop: false } => {
                // A task dies, as a bug in one would: the process must notice.
                tokio::spawn(async { panic!("injected through the sim/panic topic") });
            }
            Command::SimPanic { in_loop: true } => {
                panic!("injected into the agent loop through the sim/panic topic")
            }
            Command::SimButtonPress => {
                let inj = self
                    .button_injector
                    .clone()
                    .ok_or_else(|| CommandError::Disabled("the simulated button".into()))?;
                tokio::spawn(async move { inj.press().await });
            }
        }
        Ok(())
    }

    /// Reports a rejected command or a dropped link trigger (`what`, for the
    /// log), for the message that came on `topic`, within
    /// [`ERROR_REPORTS_PER_SECOND`] (log and `<base>/error`); beyond it they
    /// are counted and reported as one.
    fn report(&mut self, out: &mut Outbox, what: &'static str, topic: &str, error: &str) {
        if !self.error_reports.admit(Instant::now()) {
            return;
        }
        let unreported = self.error_reports.take_refused();
        if unreported > 0 {
            warn!(
                unreported,
                "more commands were rejected than are reported one by one"
            );
            publish_error(
                out,
                &self.topics,
                self.topics.at(state::ERROR),
                &format!(
                    "{unreported} more commands were rejected than the \
                     {ERROR_REPORTS_PER_SECOND} a second reported one by one"
                ),
            );
        }
        let topic = crate::quote::clip(topic, crate::quote::MAX_ECHO);
        warn!(%topic, %error, "{what}");
        publish_error(out, &self.topics, topic.as_ref(), error);
    }

    fn tick(&mut self, at: DateTime<Tz>, out: &mut Outbox) {
        let Some(mb) = self.board.as_mut() else {
            return;
        };
        if let Some(screen) = mb.board.tick(at) {
            mb.display.show(screen);
            out.event(
                &self.topics.at(state::CLOCK_TICK),
                json!({ "time": rfc3339(&at) }).to_string(),
            );
        }
    }

    fn button(&mut self, ev: ButtonEvent, out: &mut Outbox) {
        let at = self.wall.now();
        let tz = self
            .board
            .as_ref()
            .map(|b| b.board.time_zone())
            .unwrap_or(Tz::UTC);
        out.event(
            &self.topics.at(state::BUTTON_EVENT),
            ev.payload(&at.with_timezone(&tz)),
        );
        if ev == ButtonEvent::Press {
            let screen = self.board.as_mut().and_then(|mb| mb.board.press(at));
            self.board_changed(screen, out);
        }
    }

    /// Puts every output at its safe value while the agent runs on (the
    /// broker has been away too long), and reports the new states.
    fn go_safe(&mut self, out: &mut Outbox) {
        if let Some(b) = self.buzzer.as_mut() {
            if let Err(e) = b.off() {
                warn!(error = %e, "could not silence the buzzer");
            }
        }
        if let Some(leds) = self.leds.as_mut() {
            leds.safe(self.safe.led_duty);
        }
        if let Some(m) = self.matrix.as_mut() {
            let cmd = if self.safe.matrix.is_off() {
                MatrixCommand::Off
            } else {
                MatrixCommand::Run {
                    program: Arc::new(Node::Frame(self.safe.matrix)),
                    effect: None,
                }
            };
            if let Err(e) = m.engine.send(cmd) {
                warn!(error = %e, "could not put the matrix in its safe state");
            }
        }
        self.publish_all(out);
    }

    /// Puts every output at its safe value and stops the parts (shutdown),
    /// reporting the state each output is left in.
    async fn all_safe(&mut self, out: &mut Outbox) -> Result<(), HardwareError> {
        let mut first = None;
        if let Some(b) = self.buzzer.as_mut() {
            if let Err(e) = b.off() {
                warn!(error = %e, "could not silence the buzzer");
                first.get_or_insert(e);
            }
        }
        if let Some(leds) = self.leds.as_mut() {
            leds.safe(self.safe.led_duty);
        }
        self.publish_leds(out);
        let frame = self.safe.matrix;
        if self.matrix.is_some() {
            let safe = MatrixState {
                on: !frame.is_off(),
                effect: None,
                frame,
            };
            self.publish_matrix(out, &safe);
        }
        self.publish_buzzer(out);
        if let Some(leds) = self.leds.take() {
            // The writer's last act is to write the off state; it stops after that.
            leds.finish(self.safe.led_duty, Duration::from_millis(200))
                .await;
        }
        if let Some(m) = self.matrix.take() {
            // Without its handle the engine shows the safe frame and stops.
            drop(m.engine);
            let mut task = m.task;
            if tokio::time::timeout(Duration::from_millis(200), &mut task)
                .await
                .is_err()
            {
                task.abort();
                first.get_or_insert(HardwareError::Invalid(
                    "the matrix did not stop in time".into(),
                ));
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// The agent's decisions: the parts, the router and links, and what the
/// connection's history requires (safe state after a long outage).
pub(crate) struct Core {
    parts: Parts,
    router: Router,
    links: Links,
    /// `<discovery_prefix>/status`, when Home Assistant is enabled.
    ha_status: Option<String>,
    offline_timeout: Duration,
    tilt_timeout: Duration,
    /// The broker has been away since then.
    offline_since: Option<Instant>,
    went_safe: bool,
    started_at: DateTime<Tz>,
    announcements: Vec<Announcement>,
}

/// What the loop listens to for the core, and keeps alive while it runs.
pub(crate) struct Wiring {
    /// The filters to subscribe to: no two match one topic.
    pub filters: Vec<String>,
    /// The parts' tasks (display worker, button watcher), aborted at the end.
    pub tasks: Vec<JoinHandle<()>>,
    /// The button input; a real pin's interrupt ends with it.
    pub button: Option<Box<dyn InputEdges>>,
    /// The button's events.
    pub button_events: mpsc::Receiver<ButtonEvent>,
    /// The matrix engine's states.
    pub matrix_states: watch::Receiver<MatrixState>,
    /// Hardware failures: the display's, the LEDs', the matrix's.
    pub display_errors: mpsc::Receiver<HardwareError>,
    /// See [`Wiring::display_errors`].
    pub led_errors: mpsc::Receiver<HardwareError>,
    /// See [`Wiring::display_errors`].
    pub matrix_errors: mpsc::Receiver<HardwareError>,
}

impl Core {
    /// The core for these settings on this hardware, and its wiring.
    pub(crate) fn new(
        settings: &Settings,
        hardware: Hardware,
        wall: Arc<dyn WallClock>,
    ) -> Result<(Core, Wiring), AgentError> {
        let config = &settings.config;
        let library =
            Arc::new(Library::builtin().map_err(|e| AgentError::Patterns(e.to_string()))?);
        let started_at = wall.now().with_timezone(&settings.time_zone);
        let sim_faults = hardware.sim.is_some();
        let (parts, mut wiring) = Parts::build(settings, hardware, wall)?;
        let router = Router::new(
            settings.base_topic.clone(),
            parts.catalog(settings, sim_faults, &library),
        );
        let links = Links::new(&settings.base_topic, &config.links);
        let ha_status = config.homeassistant.status_topic();
        let wanted = router.topics().wanted(ha_status.clone(), links.filters());
        // A broker sends a message once per subscription it matches: no two
        // filters may match one topic, or a command would run twice.
        wiring.filters = topic::disjoint(&wanted);
        for wider in wiring.filters.iter().filter(|f| !wanted.contains(f)) {
            let covers: Vec<&String> = wanted.iter().filter(|w| topic::covers(wider, w)).collect();
            warn!(filter = %wider, ?covers, "link filters overlap others in part: subscribed to one filter that covers them, so each message arrives once; messages on it that no link or command wants are ignored");
        }
        let core = Core {
            parts,
            router,
            links,
            ha_status,
            offline_timeout: Duration::from_millis(config.safety.offline_timeout_ms),
            tilt_timeout: Duration::from_millis(config.tilt.timeout_ms),
            offline_since: None,
            went_safe: false,
            started_at,
            announcements: crate::discovery::announcements(settings, &library.names()),
        };
        Ok((core, wiring))
    }

    /// What goes out before the first connection: every part's state, the
    /// agent's info, the discovery configs.
    pub(crate) fn announce(&mut self) -> Vec<Output> {
        let mut out = Outbox::default();
        self.parts.publish_all(&mut out);
        out.retain(&self.router.topics().at(state::INFO), self.info());
        for a in &self.announcements {
            out.retain(&a.topic, a.payload.clone());
        }
        out.0
    }

    fn info(&self) -> String {
        json!({
            "started_at": rfc3339(&self.started_at),
            "version": env!("CARGO_PKG_VERSION"),
        })
        .to_string()
    }

    /// The next timer due, if any, as of `now`.
    pub(crate) fn deadline(&self, now: Instant) -> Option<(Instant, Timer)> {
        let buzzer = self
            .parts
            .buzzer
            .as_ref()
            .and_then(Buzzer::deadline)
            .map(|at| (at, Timer::Buzzer));
        let offline = self
            .offline_since
            .filter(|_| !self.went_safe && !self.offline_timeout.is_zero())
            .map(|since| (since + self.offline_timeout, Timer::Offline));
        let led = self
            .parts
            .leds
            .as_ref()
            .and_then(|l| l.next_timer(now))
            .map(|(at, t)| (at, Timer::Led(t)));
        [buzzer, offline, led]
            .into_iter()
            .flatten()
            .min_by_key(|(at, _)| *at)
    }

    /// Decides what `input` changes, at `now`; returns what to publish, in order.
    pub(crate) fn step(&mut self, input: Input, now: Instant) -> Vec<Output> {
        let mut out = Outbox::default();
        match input {
            Input::Message(msg) => self.message(msg, now, &mut out),
            Input::Link(link) => self.link(link, now, &mut out),
            Input::Minute(at) => self.parts.tick(at, &mut out),
            Input::Stepped(step) => {
                self.started_at = step.correct(self.started_at);
                info!(by_s = step.by.num_seconds(), "the wall clock was set");
                out.retain(&self.router.topics().at(state::INFO), self.info());
            }
            Input::Button(ev) => self.parts.button(ev, &mut out),
            Input::Timer(timer) => self.timer(timer, &mut out),
            Input::Matrix(state) => {
                self.parts.publish_matrix(&mut out, &state);
                if let Some(m) = self.parts.matrix.as_mut() {
                    m.state = state;
                }
            }
            Input::Failed(part, e) => {
                let error = e.to_string();
                match part {
                    state::MATRIX => warn!(%error, "matrix write failed"),
                    state::DISPLAY => warn!(%error, "display refresh failed"),
                    _ => warn!(%error, "LED write failed"),
                }
                publish_error(
                    &mut out,
                    self.router.topics(),
                    self.router.topics().at(part),
                    &error,
                );
            }
        }
        out.0
    }

    fn message(&mut self, msg: Inbound, now: Instant, out: &mut Outbox) {
        if self.ha_status.as_deref() == Some(msg.topic.as_str())
            && msg.payload.as_ref() == b"online"
        {
            info!("Home Assistant is online: announcing again");
            out.republish_retained();
        }
        // Links see the message as it arrived, before any command it may be.
        let fired = self.links.fire(&msg.topic, &msg.payload, msg.retained, now);
        let came_on = fired
            .iter()
            .any(|f| matches!(f, Fired::Dropped { .. }))
            .then(|| msg.topic.clone());
        handle(&self.router, &mut self.parts, out, msg);
        for f in fired {
            match f {
                Fired::Run(t) => {
                    let via = Inbound {
                        ack: None,
                        topic: t.topic,
                        payload: t.payload.into(),
                        retained: false,
                        reply_to: None,
                    };
                    handle(&self.router, &mut self.parts, out, via);
                }
                Fired::Dropped { link, limit } => {
                    let error =
                        format!("link[{link}] fired more than {limit} times in a second; dropped");
                    self.parts.report(
                        out,
                        "link fired too often; message dropped",
                        came_on.as_deref().unwrap_or_default(),
                        &error,
                    );
                }
            }
        }
    }

    fn link(&mut self, link: Link, now: Instant, out: &mut Outbox) {
        match link {
            Link::Up => {
                info!(base = %self.router.topics().base(), "online");
                if let Some(since) = self.offline_since.take() {
                    if self.went_safe {
                        publish_error(
                            out,
                            self.router.topics(),
                            self.router.topics().at(state::STATUS),
                            &format!(
                                "the broker was away for {} ms (safety.offline_timeout_ms is {}): outputs went to their safe values",
                                now.saturating_duration_since(since).as_millis(),
                                self.offline_timeout.as_millis()
                            ),
                        );
                    }
                }
                self.went_safe = false;
            }
            Link::Down => {
                self.offline_since.get_or_insert(now);
                warn!("broker connection lost; reconnecting");
                if self.parts.leds.as_ref().is_some_and(LedGroup::tilting) {
                    self.parts.leds_off(out);
                }
            }
        }
    }

    fn timer(&mut self, timer: Timer, out: &mut Outbox) {
        match timer {
            Timer::Buzzer => {
                if let Some(b) = self.parts.buzzer.as_mut() {
                    if let Err(e) = b.off() {
                        warn!(error = %e, "could not silence the buzzer");
                    }
                }
                self.parts.publish_buzzer(out);
            }
            Timer::Offline => {
                warn!(
                    timeout_ms = self.offline_timeout.as_millis(),
                    "the broker has been away too long: outputs to their safe values"
                );
                self.parts.go_safe(out);
                self.went_safe = true;
            }
            Timer::Led(t) => {
                if t == LedTimer::TiltTimeout {
                    info!("no tilt for {} ms: LEDs off", self.tilt_timeout.as_millis());
                }
                if let Some(leds) = self.parts.leds.as_mut() {
                    leds.fire(t);
                }
                self.parts.publish_leds(out);
            }
        }
    }

    /// Puts every output at its safe value and stops the parts (shutdown);
    /// returns the states they are left in, to publish, and the first
    /// hardware failure.
    pub(crate) async fn stop(mut self) -> (Vec<Output>, Result<(), HardwareError>) {
        let mut out = Outbox::default();
        let result = self.parts.all_safe(&mut out).await;
        (out.0, result)
    }
}

/// Publishes one LED's state on `<base>/led/<name>`.
fn publish_led_state(out: &mut Outbox, topics: &Topics, name: &str, state: LedState) {
    out.retain(&topics.at(&state::led(name)), state.payload());
}

/// Says on `<base>/error` what went wrong with `topic`
/// (`{"topic": ..., "error": ...}`, contract §2).
fn publish_error(
    out: &mut Outbox,
    topics: &Topics,
    topic: impl Into<serde_json::Value>,
    error: &str,
) {
    out.report(
        &topics.at(state::ERROR),
        json!({ "topic": topic.into(), "error": error }).to_string(),
    );
}

/// Carries out one message and then acknowledges it to the broker.
fn handle(router: &Router, parts: &mut Parts, out: &mut Outbox, mut msg: Inbound) {
    let ack = msg.ack.take();
    answer(router, parts, out, msg);
    if let Some(a) = ack {
        out.ack(a);
    }
}

fn answer(router: &Router, parts: &mut Parts, out: &mut Outbox, msg: Inbound) {
    let Some(parsed) = router.answerable(&msg.topic, &msg.payload) else {
        return; // a link's topic, Home Assistant's status
    };
    let result = parsed.and_then(|cmd| parts.execute(cmd, out));
    match result {
        Ok(()) => {
            if let Some(to) = &msg.reply_to {
                out.reply(to, Bytes::from_static(br#"{"ok":true}"#));
            }
        }
        Err(e) => {
            let error = e.to_string();
            parts.report(out, "command rejected", &msg.topic, &error);
            if let Some(to) = &msg.reply_to {
                out.reply(to, json!({ "ok": false, "error": error }).to_string());
            }
        }
    }
}

/// How the display task refreshes `panel`: off the runtime's thread when
/// it can take long, and with `refresh_ms` imitating a real panel's refresh
/// on the backends that stand in for one (config/edge-agent.toml).
fn refresh_of(display: &DisplayConfig, panel: &dyn Display) -> Refresh {
    let stand_in = matches!(display.backend, DisplayBackend::Sim | DisplayBackend::Png);
    Refresh {
        blocking: panel.is_slow(),
        simulated: if stand_in {
            Duration::from_millis(display.refresh_ms)
        } else {
            Duration::ZERO
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::png_file::PngDisplay;
    use crate::hardware::sim::SimDisplay;
    use crate::hardware::BitFrame;

    /// A real panel, as far as the agent can tell: the trait's defaults.
    struct Panel;
    impl Display for Panel {
        fn size(&self) -> (u32, u32) {
            (8, 8)
        }
        fn show(&mut self, _: &BitFrame) -> Result<(), HardwareError> {
            Ok(())
        }
    }

    use crate::clock::TokioClock;
    use crate::config::Config;
    use crate::hardware::sim::SimHandles;

    /// A core on simulated hardware for `config` (below `[device] id = "t"`),
    /// with the simulated hardware's recordings.
    fn core(config: &str) -> (Core, Wiring, SimHandles) {
        let settings = Config::from_toml(&format!(
            "[device]\nid = \"t\"\n[display]\nbackend = \"sim\"\nrefresh_ms = 0\n{config}"
        ))
        .unwrap();
        let hw = Hardware::from_settings(&settings).unwrap();
        let sim = hw.sim.clone().unwrap();
        let wall = Arc::new(TokioClock::starting_at(
            "2026-12-02T10:00:00Z".parse().unwrap(),
        ));
        let (core, wiring) = Core::new(&settings, hw, wall).unwrap();
        (core, wiring, sim)
    }

    fn message(topic: &str, payload: &str) -> Inbound {
        Inbound {
            ack: None,
            topic: topic.into(),
            payload: Bytes::copy_from_slice(payload.as_bytes()),
            retained: false,
            reply_to: None,
        }
    }

    fn topics_of(out: &[Output]) -> Vec<&str> {
        out.iter()
            .map(|o| match o {
                Output::Retain { topic, .. }
                | Output::Event { topic, .. }
                | Output::Report { topic, .. } => topic.as_str(),
                Output::Reply { to, .. } => to.topic.as_str(),
                Output::Ack(_) => "ack",
                Output::RepublishRetained => "republish",
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_command_publishes_its_state_then_answers_then_is_acknowledged() {
        let (mut core, _w, _sim) = core("");
        let reply = ReplyTo {
            topic: "reply/x".into(),
            correlation: Some(Bytes::from_static(b"7")),
        };
        let mut msg = message("edge/t/led/left/set", "ON");
        msg.ack = Some(Ack::qos1(3));
        msg.reply_to = Some(reply.clone());
        let out = core.step(Input::Message(msg.clone()), Instant::now());
        assert_eq!(
            out,
            vec![
                Output::Retain {
                    topic: "edge/t/led/left".into(),
                    payload: Bytes::from_static(br#"{"brightness":255,"state":"ON"}"#),
                },
                Output::Reply {
                    to: reply.clone(),
                    payload: Bytes::from_static(br#"{"ok":true}"#),
                },
                Output::Ack(Ack::qos1(3)),
            ]
        );
        // Refused: reported, answered with the reason, still acknowledged;
        // nothing changed, so no state.
        msg.topic = "edge/t/led/middle/set".into();
        let out = core.step(Input::Message(msg), Instant::now());
        assert_eq!(topics_of(&out), ["edge/t/error", "reply/x", "ack"]);
        let Output::Reply { payload, .. } = &out[1] else {
            unreachable!()
        };
        assert!(payload.starts_with(br#"{"error":"there is no LED called"#));
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_outage_puts_the_outputs_safe_once_and_the_return_says_so() {
        let (mut core, _w, sim) = core("[safety]\noffline_timeout_ms = 1000\nled_percent = 10\n");
        core.step(
            Input::Message(message("edge/t/led/left/set", "ON")),
            Instant::now(),
        );
        let t0 = Instant::now();
        assert_eq!(core.deadline(t0), None);
        core.step(Input::Link(Link::Down), t0);
        assert_eq!(
            core.deadline(t0),
            Some((t0 + Duration::from_secs(1), Timer::Offline))
        );
        // A short outage changes nothing.
        tokio::time::sleep(Duration::from_millis(999)).await;
        assert!(core
            .deadline(Instant::now())
            .is_some_and(|(at, _)| at > Instant::now()));
        tokio::time::sleep(Duration::from_millis(1)).await;
        let out = core.step(Input::Timer(Timer::Offline), Instant::now());
        assert!(topics_of(&out).contains(&"edge/t/led/left"), "{out:?}");
        assert!(topics_of(&out).contains(&"edge/t/matrix"), "{out:?}");
        assert_eq!(core.deadline(Instant::now()), None, "safe once");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(sim.pwm("led/left").and_then(|r| r.last()), Some(0.1));
        let out = core.step(Input::Link(Link::Up), t0 + Duration::from_secs(3));
        let [Output::Report { topic, payload }] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(topic, "edge/t/error");
        let v: serde_json::Value = serde_json::from_slice(payload).unwrap();
        assert_eq!(v["topic"], "edge/t/status");
        assert!(
            v["error"].as_str().unwrap().contains("away for 3000 ms"),
            "{v}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_router_and_the_config_check_see_the_same_commands() {
        use crate::mqtt::topic::COMMANDS;
        for config in [
            "",
            "[buzzer]\nenabled = true\n",
            // (Below core()'s [display] table: the first line is its.)
            "enabled = false\n[tilt]\nenabled = false\n[matrix]\nenabled = false\n[button]\nenabled = false\n",
        ] {
            let (core, _w, _sim) = core(config);
            let settings = Config::from_toml(&format!(
                "[device]\nid = \"t\"\n[display]\nbackend = \"sim\"\nrefresh_ms = 0\n{config}"
            ))
            .unwrap();
            let checked = settings.config.verbs();
            for c in COMMANDS {
                assert_eq!(
                    core.router.topics().has(c.verb),
                    checked.contains(&c.verb),
                    "{:?} with {config:?}",
                    c.verb
                );
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn zero_offline_timeout_is_never() {
        let (mut core, _w, _sim) = core("[safety]\noffline_timeout_ms = 0\n");
        core.step(Input::Link(Link::Down), Instant::now());
        assert_eq!(core.deadline(Instant::now()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_link_fires_on_live_messages_only() {
        let (mut core, _w, _sim) = core(
            "[[link]]\non = \"edge/o/button/event\"\ndo = \"led/left/set\"\npayload = \"ON\"\n",
        );
        let out = core.step(
            Input::Message(message("edge/o/button/event", "{}")),
            Instant::now(),
        );
        assert_eq!(topics_of(&out), ["edge/t/led/left"]);
        let mut retained = message("edge/o/button/event", "{}");
        retained.retained = true;
        assert!(core
            .step(Input::Message(retained), Instant::now())
            .is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn home_assistant_coming_online_announces_everything_again() {
        let (mut core, _w, _sim) = core("");
        let out = core.step(
            Input::Message(message("homeassistant/status", "online")),
            Instant::now(),
        );
        assert_eq!(out, vec![Output::RepublishRetained]);
        let first = core.announce();
        let topics = topics_of(&first);
        let info = topics.iter().position(|t| *t == "edge/t/info").unwrap();
        let discovery = topics
            .iter()
            .position(|t| t.starts_with("homeassistant/"))
            .unwrap();
        assert!(topics.contains(&"edge/t/led/left") && topics.contains(&"edge/t/display"));
        assert!(info < discovery, "{topics:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_beep_ends_on_its_deadline() {
        let (mut core, _w, sim) = core("[buzzer]\nenabled = true\n");
        let t0 = Instant::now();
        let out = core.step(
            Input::Message(message("edge/t/buzzer/set", r#"{"beep_ms": 300}"#)),
            t0,
        );
        assert_eq!(topics_of(&out), ["edge/t/buzzer"]);
        assert_eq!(
            core.deadline(t0),
            Some((t0 + Duration::from_millis(300), Timer::Buzzer))
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        let out = core.step(Input::Timer(Timer::Buzzer), Instant::now());
        assert_eq!(
            out,
            vec![Output::Retain {
                topic: "edge/t/buzzer".into(),
                payload: Bytes::from_static(b"OFF")
            }]
        );
        assert_eq!(sim.pwm("buzzer").unwrap().last(), Some(0.0));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_reports_and_writes_the_safe_states() {
        let (mut core, _w, sim) = core("[safety]\nled_percent = 20\n");
        core.step(
            Input::Message(message("edge/t/led/right/set", "ON")),
            Instant::now(),
        );
        let (out, result) = core.stop().await;
        result.unwrap();
        let topics = topics_of(&out);
        assert_eq!(
            topics,
            ["edge/t/led/left", "edge/t/led/right", "edge/t/matrix"]
        );
        assert_eq!(sim.pwm("led/right").and_then(|r| r.last()), Some(0.2));
        assert_eq!(sim.pwm("led/left").and_then(|r| r.last()), Some(0.2));
    }

    #[test]
    fn refresh_ms_imitates_a_panel_on_the_stand_ins_and_file_writes_leave_the_runtime() {
        let with = |backend| DisplayConfig {
            backend,
            refresh_ms: 1500,
            ..DisplayConfig::default()
        };
        let slow = Duration::from_millis(1500);
        let sim = refresh_of(&with(DisplayBackend::Sim), &SimDisplay::new(8, 8));
        assert_eq!((sim.blocking, sim.simulated), (false, slow));
        let png = refresh_of(&with(DisplayBackend::Png), &PngDisplay::new("x.png", 8, 8));
        assert_eq!((png.blocking, png.simulated), (true, slow));
        let epd = refresh_of(&with(DisplayBackend::Epd), &Panel);
        assert_eq!((epd.blocking, epd.simulated), (true, Duration::ZERO));
    }
}
