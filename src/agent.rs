//! The agent: wires the transport, the command router and the devices
//! together, answers every command, and shuts down to a safe state.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::DateTime;
use chrono_tz::Tz;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::clock::{self, rfc3339, SystemClock, WallClock};
use crate::command::{Catalog, Command, CommandError, MatrixSet, Router};
use crate::config::{DisplayBackend, DisplayConfig, Settings};
use crate::hardware::sim::ButtonInjector;
use crate::hardware::{Display, Hardware, HardwareError};
use crate::links::{Fired, Links};
use crate::mqtt::topic;
use crate::mqtt::transport::{
    Inbound, Link, Publisher, Transport, TransportError, TransportOptions,
};
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

/// How long the MQTT goodbye (`offline`, DISCONNECT) may take at shutdown.
pub const GOODBYE: Duration = Duration::from_millis(500);

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A hardware part could not be set up.
    #[error("hardware: {0}")]
    Hardware(#[from] HardwareError),
    /// The MQTT connection could not be set up.
    #[error("mqtt: {0}")]
    Transport(#[from] TransportError),
    /// The built-in pattern library is broken (a build problem).
    #[error("patterns: {0}")]
    Patterns(String),
    /// The agent's own loop panicked; the outputs were made safe after it.
    #[error("the agent loop panicked, outputs made safe: {0}")]
    Panicked(String),
}

/// The message board and the worker that draws on its panel.
struct MessageBoard {
    board: Board,
    display: DisplayHandle,
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
    base: String,
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
pub const ERROR_REPORTS_PER_SECOND: u32 = 50;

/// Messages the transport may hand over before the agent loop has taken
/// them. When it is full the transport stops reading, and the broker holds
/// the rest: a burst of large payloads (up to 2 MiB each) keeps at most
/// this many in the agent's memory.
const INBOUND_QUEUE: usize = 16;

/// The outputs' safe values (`[safety]`).
#[derive(Debug, Clone, Copy)]
struct Safe {
    /// Every LED's duty, 0..=1.
    led_duty: f64,
    /// The matrix frame.
    matrix: Frame,
}

impl Parts {
    /// Publishes every LED's state now.
    fn publish_leds(&mut self, publisher: &Publisher) {
        let Some(leds) = self.leds.as_mut() else {
            return;
        };
        for (name, state) in leds.states() {
            publish_led_state(publisher, &self.base, name, state);
        }
        leds.published(Instant::now());
    }

    /// Publishes the state of the LED `name` alone: a command to one LED
    /// changes no other (the topic table says so to the link check).
    fn publish_led(&self, publisher: &Publisher, name: &str) {
        let Some(leds) = self.leds.as_ref() else {
            return;
        };
        if let Some((name, state)) = leds.states().find(|(n, _)| *n == name) {
            publish_led_state(publisher, &self.base, name, state);
        }
    }

    /// Turns the LEDs off (broker loss while tilting) and reports it.
    fn leds_off(&mut self, publisher: &Publisher) {
        if let Some(leds) = self.leds.as_mut() {
            leds.off();
            self.publish_leds(publisher);
        }
    }

    fn publish_matrix(&self, publisher: &Publisher, state: &MatrixState) {
        let payload = json!({
            "state": if state.on { "ON" } else { "OFF" },
            "effect": state.effect,
            "frame": state.frame.to_text(),
        });
        publisher.retain(&format!("{}/matrix", self.base), payload.to_string());
    }

    fn publish_board(&self, publisher: &Publisher) {
        let Some(mb) = &self.board else { return };
        let s = mb.board.state();
        let (mode, text, from) = match &s.screen {
            Screen::Clock(_) => ("clock", None, None),
            Screen::Message { text, from, .. } => ("message", Some(text), from.as_ref()),
        };
        let payload = json!({
            "mode": mode,
            "text": text,
            "from": from,
            "shown_at": rfc3339(&s.shown_at),
            "clock": if s.clock_running { "ON" } else { "OFF" },
        });
        publisher.retain(&format!("{}/display", self.base), payload.to_string());
    }

    fn publish_buzzer(&self, publisher: &Publisher) {
        if let Some(b) = &self.buzzer {
            publisher.retain(
                &format!("{}/buzzer", self.base),
                if b.is_on() { "ON" } else { "OFF" },
            );
        }
    }

    fn publish_all(&mut self, publisher: &Publisher) {
        self.publish_buzzer(publisher);
        self.publish_leds(publisher);
        if let Some(m) = &self.matrix {
            self.publish_matrix(publisher, &m.state);
        }
        self.publish_board(publisher);
    }

    /// Draws `screen` (if any) and publishes the board's state.
    fn board_changed(&self, screen: Option<Screen>, publisher: &Publisher) {
        if let (Some(mb), Some(screen)) = (&self.board, screen) {
            mb.display.show(screen);
            self.publish_board(publisher);
        }
    }

    /// Carries out one command; on error nothing has changed.
    fn execute(&mut self, cmd: Command, publisher: &Publisher) -> Result<(), CommandError> {
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
                self.publish_led(publisher, &name);
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
                self.board_changed(Some(screen), publisher);
            }
            Command::Clock(on) => {
                let now = self.wall.now();
                let mb = self.board.as_mut().ok_or_else(no_board)?;
                if let Some(screen) = mb.board.set_clock(on, now) {
                    mb.display.show(screen);
                }
                self.publish_board(publisher);
            }
            Command::Buzzer(set) => {
                let b = self
                    .buzzer
                    .as_mut()
                    .ok_or_else(|| CommandError::Disabled("the buzzer".into()))?;
                b.set(set, Instant::now()).map_err(hw)?;
                self.publish_buzzer(publisher);
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

    /// Reports a rejected command or a dropped link trigger, for the message
    /// that came on `topic`, within [`ERROR_REPORTS_PER_SECOND`] (log and
    /// `<base>/error`); beyond it they are counted and reported as one.
    fn report(&mut self, publisher: &Publisher, topic: &str, error: &str) {
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
                publisher,
                &self.base,
                format!("{}/error", self.base),
                &format!(
                    "{unreported} more commands were rejected than the \
                     {ERROR_REPORTS_PER_SECOND} a second reported one by one"
                ),
            );
        }
        let topic = crate::quote::clip(topic, crate::quote::MAX_ECHO);
        warn!(%topic, %error, "command rejected");
        publish_error(publisher, &self.base, topic.as_ref(), error);
    }

    fn tick(&mut self, at: DateTime<Tz>, publisher: &Publisher) {
        let Some(mb) = self.board.as_mut() else {
            return;
        };
        if let Some(screen) = mb.board.tick(at) {
            mb.display.show(screen);
            publisher.event(
                &format!("{}/clock/tick", self.base),
                json!({ "time": rfc3339(&at) }).to_string(),
            );
        }
    }

    fn button(&mut self, ev: ButtonEvent, publisher: &Publisher) {
        let at = self.wall.now();
        let tz = self
            .board
            .as_ref()
            .map(|b| b.board.time_zone())
            .unwrap_or(Tz::UTC);
        publisher.event(
            &format!("{}/button/event", self.base),
            json!({ "event_type": ev.event_type(), "at": rfc3339(&at.with_timezone(&tz)) })
                .to_string(),
        );
        if ev == ButtonEvent::Press {
            let screen = self.board.as_mut().and_then(|mb| mb.board.press(at));
            self.board_changed(screen, publisher);
        }
    }

    /// Every output to its safe (off) value; returns the first failure.
    /// Puts every output at its safe value while the agent runs on (the
    /// broker has been away too long), and reports the new states.
    fn go_safe(&mut self, publisher: &Publisher) {
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
        self.publish_all(publisher);
    }

    /// Puts every output at its safe value and stops the parts (shutdown),
    /// reporting the state each output is left in.
    async fn all_safe(&mut self, publisher: &Publisher) -> Result<(), HardwareError> {
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
        self.publish_leds(publisher);
        let frame = self.safe.matrix;
        if self.matrix.is_some() {
            let safe = MatrixState {
                on: !frame.is_off(),
                effect: None,
                frame,
            };
            self.publish_matrix(publisher, &safe);
        }
        self.publish_buzzer(publisher);
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

/// Runs the agent until `shutdown` completes, then puts every output at its
/// safe value (`[safety]`; off by default), publishes `offline` and returns.
pub async fn run(
    settings: Settings,
    hardware: Hardware,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    run_with_clock(settings, hardware, Arc::new(SystemClock), shutdown).await
}

/// [`run`] with the wall clock given (tests pass one that follows paused tokio time).
pub async fn run_with_clock(
    settings: Settings,
    hardware: Hardware,
    wall: Arc<dyn WallClock>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    // A panic on this thread (the agent loop, its tasks) is the agent's own.
    crate::service::claim_thread();
    let base = settings.base_topic.clone();
    let config = &settings.config;
    let Hardware {
        leds,
        matrix,
        button,
        display,
        buzzer,
        sim,
    } = hardware;

    let (display_errors_tx, mut display_errors) = mpsc::channel::<HardwareError>(8);
    let (led_errors_tx, mut led_errors) = mpsc::channel::<HardwareError>(8);
    let (matrix_states_tx, mut matrix_states) = tokio::sync::watch::channel(MatrixState {
        on: false,
        effect: None,
        frame: Frame::OFF,
    });
    let (matrix_errors_tx, mut matrix_errors) = mpsc::channel::<HardwareError>(8);
    let library = Arc::new(Library::builtin().map_err(|e| AgentError::Patterns(e.to_string()))?);
    let mut tasks = Vec::new();
    let board = match display {
        Some(panel) => {
            let refresh = refresh_of(&config.display, panel.as_ref());
            let (handle, task) = display::spawn(panel, refresh, display_errors_tx);
            tasks.push(task);
            let (board, first) = Board::new(settings.time_zone, wall.now());
            handle.show(first);
            Some(MessageBoard {
                board,
                display: handle,
            })
        }
        None => None,
    };

    let safe = Safe {
        led_duty: f64::from(config.safety.led_percent) / 100.0,
        matrix: config
            .safety
            .matrix_frame()
            .map_err(|e| AgentError::Patterns(format!("safety.matrix: {e}")))?,
    };
    let mut parts = Parts {
        safe,
        base: base.clone(),
        wall: Arc::clone(&wall),
        leds: (!leds.is_empty()).then(|| {
            let timing = LedTiming {
                write_interval: Duration::from_millis(config.tilt.write_interval_ms),
                tilt_timeout: Duration::from_millis(config.tilt.timeout_ms),
                publish_interval: Duration::from_millis(config.tilt.state_interval_ms),
            };
            LedGroup::new(leds, timing, led_errors_tx)
        }),
        matrix: match matrix {
            Some(outputs) => {
                let (engine, task) =
                    matrix_engine::spawn(outputs, matrix_states_tx, matrix_errors_tx, safe.matrix)?;
                let state = MatrixState {
                    on: false,
                    effect: None,
                    frame: Frame::OFF,
                };
                Some(MatrixPart {
                    engine,
                    task,
                    state,
                    last: None,
                })
            }
            None => None,
        },
        board,
        buzzer: buzzer
            .map(|ch| Buzzer::new(ch, config.buzzer.tone_hz > 0.0))
            .transpose()?,
        button_injector: sim.as_ref().and_then(|s| s.button.clone()),
        error_reports: PerSecond::new(ERROR_REPORTS_PER_SECOND, Instant::now()),
    };
    let router = Router::new(
        base.clone(),
        Catalog {
            leds: parts
                .leds
                .as_ref()
                .map(|l| l.names().to_vec())
                .unwrap_or_default(),
            matrix: parts.matrix.as_ref().map(|_| Arc::clone(&library)),
            sim_button: parts.button_injector.is_some(),
            sim_faults: sim.is_some(),
            display: parts
                .board
                .as_ref()
                .map(|_| config.display.max_message_chars),
            buzzer: parts.buzzer.as_ref().map(|_| config.buzzer.max_beep_ms),
            tilt: parts
                .leds
                .as_ref()
                .is_some_and(|l| l.names().iter().any(|n| n == "left")),
        },
    );

    let (inbound_tx, mut inbound) = mpsc::channel::<Inbound>(INBOUND_QUEUE);
    let mut links = Links::new(&base, &config.links);
    let ha_status = format!("{}/status", config.homeassistant.discovery_prefix);
    let mut wanted = router.filters();
    if config.homeassistant.enabled {
        wanted.push(ha_status.clone());
    }
    wanted.extend(links.filters());
    // A broker sends a message once per subscription it matches: no two
    // filters may match one topic, or a command would run twice.
    let filters = topic::disjoint(&wanted);
    if filters.iter().any(|f| !wanted.contains(f)) || filters.len() < wanted.len() {
        info!(?filters, "links' filters overlap the agent's own: subscribed to filters that cover both, so each message arrives once");
    }
    let (mut transport, mut link) = Transport::start(
        TransportOptions::from_settings(&settings, filters),
        inbound_tx,
    )?;
    let publisher = transport.publisher();
    parts.publish_all(&publisher);
    // Minutes for the board, and steps of the wall clock (NTP at boot on a
    // Pi without a clock chip), which correct the start time.
    let mut clock_events = clock::events(Arc::clone(&wall), settings.time_zone);
    let mut started_at = wall.now().with_timezone(&settings.time_zone);
    let info = |started_at: &DateTime<Tz>| {
        json!({
            "started_at": rfc3339(started_at),
            "version": env!("CARGO_PKG_VERSION"),
        })
        .to_string()
    };
    publisher.retain(&format!("{base}/info"), info(&started_at));
    for a in crate::discovery::announcements(&settings, &library.names()) {
        publisher.retain(&a.topic, a.payload);
    }
    // Everything retained is registered: connect, and it all goes out before `online`.
    transport.connect();

    let (button_tx, mut button_rx) = mpsc::channel::<ButtonEvent>(16);
    // The input stays alive while the agent runs (a real pin's interrupt ends with it).
    let mut button = button;
    if let Some(input) = button.as_mut() {
        let edges = input.edges()?;
        let timing = Timing::from_config(&config.button);
        tasks.push(tokio::spawn(button::watch(edges, timing, button_tx)));
    }

    // The broker has been away since then; outputs go safe after the timeout.
    let offline_timeout = Duration::from_millis(config.safety.offline_timeout_ms);
    let mut offline_since: Option<Instant> = None;
    let mut went_safe = false;
    let mut systemd = crate::service::Systemd::from_env();
    let mut watchdog = systemd.watchdog_interval().map(tokio::time::interval);
    // The parts run: the board works without a broker (clock, button,
    // safe state), so systemd need not wait for one.
    systemd.ready();
    tokio::pin!(shutdown);
    let looped = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(async { loop {
        let (flushable, backlogged) = publisher.pressure();
        // A batch of acknowledgements waits while commands are queued.
        let flushable = flushable && (backlogged || inbound.is_empty());
        tokio::select! {
            _ = &mut shutdown => break,
            // Back-pressure: what the last command caused goes out first.
            _ = publisher.flush(), if flushable => {}
            Some(msg) = inbound.recv(), if !backlogged => {
                if config.homeassistant.enabled && msg.topic == ha_status && msg.payload.as_ref() == b"online" {
                    info!("Home Assistant is online: announcing again");
                    publisher.republish_retained();
                }
                // Links see the message as it arrived, before any command it may be.
                let fired = links.fire(&msg.topic, &msg.payload, msg.retained, Instant::now());
                let came_on = fired
                    .iter()
                    .any(|f| matches!(f, Fired::Dropped { .. }))
                    .then(|| msg.topic.clone());
                handle(&router, &mut parts, &publisher, msg);
                for f in fired {
                    match f {
                        Fired::Run(t) => {
                            let via = Inbound { ack: None, topic: t.topic, payload: t.payload.into(), retained: false, reply_to: None };
                            handle(&router, &mut parts, &publisher, via);
                        }
                        Fired::Dropped { link, limit } => {
                            let error = format!("link[{link}] fired more than {limit} times in a second; dropped");
                            parts.report(&publisher, came_on.as_deref().unwrap_or_default(), &error);
                        }
                    }
                }
                // Let the device tasks (the matrix engine, the display) take
                // this command before the next one replaces it: in a burst,
                // each is applied in turn while they keep up, and only what
                // they cannot keep up with is superseded (never queued).
                tokio::task::yield_now().await;
            }
            _ = async { match watchdog.as_mut() { Some(w) => { w.tick().await; } None => std::future::pending().await } } => {
                systemd.feed();
            }
            _ = sleep_until_some(parts.buzzer.as_ref().and_then(Buzzer::deadline)) => {
                if let Some(b) = parts.buzzer.as_mut() {
                    if let Err(e) = b.off() {
                        warn!(error = %e, "could not silence the buzzer");
                    }
                }
                parts.publish_buzzer(&publisher);
            }
            _ = sleep_until_some(offline_since.map(|t| t + offline_timeout)),
                if !went_safe && !offline_timeout.is_zero() =>
            {
                warn!(
                    timeout_ms = config.safety.offline_timeout_ms,
                    "the broker has been away too long: outputs to their safe values"
                );
                parts.go_safe(&publisher);
                went_safe = true;
            }
            Some(ev) = button_rx.recv() => parts.button(ev, &publisher),
            Some(event) = clock_events.recv() => match event {
                clock::ClockEvent::Minute(at) => parts.tick(at, &publisher),
                clock::ClockEvent::Stepped(step) => {
                    started_at = step.correct(started_at);
                    info!(by_s = step.by.num_seconds(), "the wall clock was set");
                    publisher.retain(&format!("{base}/info"), info(&started_at));
                }
            },
            timer = led_timer(parts.leds.as_ref()) => {
                if timer == LedTimer::TiltTimeout {
                    info!("no tilt for {} ms: LEDs off", config.tilt.timeout_ms);
                }
                if let Some(leds) = parts.leds.as_mut() {
                    leds.fire(timer);
                }
                parts.publish_leds(&publisher);
            }
            Ok(()) = matrix_states.changed() => {
                let state = matrix_states.borrow_and_update().clone();
                parts.publish_matrix(&publisher, &state);
                if let Some(m) = parts.matrix.as_mut() {
                    m.state = state;
                }
            }
            Some(e) = matrix_errors.recv() => {
                let error = e.to_string();
                warn!(%error, "matrix write failed");
                publish_error(&publisher, &base, format!("{base}/matrix"), &error);
            }
            Some(e) = led_errors.recv() => {
                let error = e.to_string();
                warn!(%error, "LED write failed");
                publish_error(&publisher, &base, format!("{base}/led"), &error);
            }
            Some(e) = display_errors.recv() => {
                let error = e.to_string();
                warn!(%error, "display refresh failed");
                publish_error(&publisher, &base, format!("{base}/display"), &error);
            }
            Ok(()) = link.changed() => {
                match *link.borrow_and_update() {
                    Link::Up => {
                        info!(base = %base, "online");
                        systemd.online();
                        let dropped = publisher.take_dropped_events();
                        if dropped > 0 {
                            info!(dropped, "events dropped while the broker was away");
                        }
                        if let Some(since) = offline_since.take() {
                            if went_safe {
                                publish_error(
                                    &publisher,
                                    &base,
                                    format!("{base}/status"),
                                    &format!(
                                        "the broker was away for {} ms (safety.offline_timeout_ms is {}): outputs went to their safe values",
                                        since.elapsed().as_millis(),
                                        config.safety.offline_timeout_ms
                                    ),
                                );
                            }
                        }
                        went_safe = false;
                    }
                    Link::Down => {
                        offline_since.get_or_insert_with(Instant::now);
                        systemd.offline();
                        warn!("broker connection lost; reconnecting");
                        if parts.leds.as_ref().is_some_and(LedGroup::tilting) {
                            parts.leds_off(&publisher);
                        }
                    }
                }
            }
        }
    }}))
    .await;
    if let Err(panic) = &looped {
        tracing::error!(panic = %panic_message(panic.as_ref()), "the agent loop panicked: outputs to their safe values, going offline");
    }

    info!("shutting down: outputs off, going offline");
    systemd.stopping();
    drop(button);
    for t in tasks {
        t.abort();
    }
    let off = parts.all_safe(&publisher).await;
    transport.shutdown(GOODBYE).await;
    if let Err(panic) = looped {
        return Err(AgentError::Panicked(panic_message(panic.as_ref())));
    }
    off.map_err(AgentError::Hardware)
}

/// The message a panic carried.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
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

/// Publishes one LED's state on `<base>/led/<name>`.
fn publish_led_state(publisher: &Publisher, base: &str, name: &str, state: LedState) {
    let payload = json!({
        "state": if state.on { "ON" } else { "OFF" },
        "brightness": state.brightness,
    });
    publisher.retain(
        &format!("{base}/{}", topic::state::led(name)),
        payload.to_string(),
    );
}

/// Completes at `deadline`; never without one.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Completes when the LEDs' next timer is due; never without one.
async fn led_timer(leds: Option<&LedGroup>) -> LedTimer {
    match leds.and_then(|l| l.next_timer(Instant::now())) {
        Some((at, timer)) => {
            tokio::time::sleep_until(at).await;
            timer
        }
        None => std::future::pending().await,
    }
}

/// Says on `<base>/error` what went wrong with `topic`
/// (`{"topic": ..., "error": ...}`, contract §2).
fn publish_error(
    publisher: &Publisher,
    base: &str,
    topic: impl Into<serde_json::Value>,
    error: &str,
) {
    publisher.report(
        &format!("{base}/error"),
        json!({ "topic": topic.into(), "error": error }).to_string(),
    );
}

/// Carries out one message and then acknowledges it to the broker.
fn handle(router: &Router, parts: &mut Parts, publisher: &Publisher, mut msg: Inbound) {
    let ack = msg.ack.take();
    answer(router, parts, publisher, msg);
    if let Some(a) = ack {
        publisher.ack(a);
    }
}

fn answer(router: &Router, parts: &mut Parts, publisher: &Publisher, msg: Inbound) {
    if !router.is_command_topic(&msg.topic) {
        return; // a link's topic, Home Assistant's status
    }
    let result = router
        .parse(&msg.topic, &msg.payload)
        .and_then(|cmd| parts.execute(cmd, publisher));
    match result {
        Ok(()) => {
            if let Some(to) = &msg.reply_to {
                publisher.reply(to, Bytes::from_static(br#"{"ok":true}"#));
            }
        }
        Err(e) => {
            let error = e.to_string();
            parts.report(publisher, &msg.topic, &error);
            if let Some(to) = &msg.reply_to {
                publisher.reply(to, json!({ "ok": false, "error": error }).to_string());
            }
        }
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
