//! The agent's decisions as a pure core, in the manner of rumqttc's
//! `MqttState` beside its `EventLoop`: `Core::step` takes one input (a
//! message, a change of the link, a timer, a part's event) and returns what
//! to publish, as values, in order. It owns the parts and never touches the
//! network; the loop in [`super`] feeds it and hands its outputs to the
//! transport.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Zone;
use bytes::Bytes;
use chrono::DateTime;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use super::AgentError;
use crate::clock::{rfc3339, Step, WallClock};
use crate::command::Router;
use crate::config::Settings;
use crate::discovery::Announcement;
use crate::hardware::{Hardware, HardwareError};
use crate::links::{Fired, Links};
use crate::mqtt::topic::{self, state, Topics};
use crate::mqtt::transport::{Ack, Inbound, Link, ReplyTo};
use crate::parts::{Event, Now, Out, Parts, Start, Stats};
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
    /// What the parts changed, at their paths below base.
    fn below(&mut self, topics: &Topics, changed: Vec<Out>) {
        for o in changed {
            match o {
                Out::State(path, payload) => self.retain(&topics.at(&path), payload),
                Out::Event(path, payload) => self.event(&topics.at(path), payload),
                // Not below base: the core announces and answers (`Core::publish`).
                Out::Rediscover | Out::Awaits(..) | Out::Answer(..) => {}
            }
        }
    }

    fn republish_retained(&mut self) {
        self.0.push(Output::RepublishRetained);
    }
}

/// The most commands waiting for a later answer; beyond it the oldest gets
/// none (its requester has its first answer).
const AWAITING: usize = 256;

/// Where the later answers go: the requester of each command a part
/// numbered for one, oldest first.
#[derive(Debug, Default)]
struct Awaiting(VecDeque<((&'static str, u64), ReplyTo)>);

impl Awaiting {
    fn put(&mut self, part: &'static str, n: u64, to: ReplyTo) {
        if self.0.len() == AWAITING {
            self.0.pop_front();
        }
        self.0.push_back(((part, n), to));
    }

    fn take(&mut self, part: &'static str, n: u64) -> Option<ReplyTo> {
        let at = self.0.iter().position(|(k, _)| *k == (part, n))?;
        self.0.remove(at).map(|(_, to)| to)
    }
}

/// The discovery configs of the device of `settings` offering `effects`.
fn announcements(
    settings: &Settings,
    device: &serde_json::Value,
    effects: &[String],
) -> Vec<Announcement> {
    let effects: Vec<&str> = effects.iter().map(String::as_str).collect();
    crate::discovery::announcements(settings, device, &effects)
}

/// The shortest time between two announcements after Home Assistant's
/// `online`: however often it comes, every config and state goes out at
/// most once in this time.
pub(crate) const ANNOUNCE_SPACING: Duration = Duration::from_secs(5);

/// A timer of the core's, due at the instant [`Core::deadline`] gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Announce everything again (Home Assistant came back).
    Announce,
    /// The broker has been away for `safety.offline_timeout_ms`.
    Offline,
    /// A part's timer (a beep's end, the tilt timeout), by the part's place.
    Part(usize),
}

/// One thing that happened, for [`Core::step`].
#[derive(Debug)]
pub(crate) enum Input {
    /// A message arrived on a subscribed topic.
    Message(Inbound),
    /// The connection came up or went down.
    Link(Link),
    /// A whole minute of the time zone came.
    Minute(DateTime<Zone>),
    /// The wall clock was set.
    Stepped(Step),
    /// A timer from [`Core::deadline`] is due.
    Timer(Timer),
    /// A part's task reports something (a button press, the matrix's
    /// state, a hardware failure).
    Part(Event),
}

/// Rejected commands logged and published one by one, per second; a flood
/// of bad commands beyond it is counted and reported as one line. Replies
/// to requests are not limited: each goes to its own requester.
pub(crate) const ERROR_REPORTS_PER_SECOND: u32 = 50;

/// The agent's decisions: the parts, the router and links, and what the
/// connection's history requires (safe state after a long outage).
pub(crate) struct Core {
    parts: Parts,
    router: Router,
    links: Links,
    wall: Arc<dyn WallClock>,
    time_zone: Zone,
    /// `<discovery_prefix>/status`, when Home Assistant is enabled.
    ha_status: Option<String>,
    /// How long after Home Assistant's `online` to announce again.
    announce_delay: Duration,
    /// The announcement asked for, and the last one made.
    announce_due: Option<Instant>,
    last_announce: Option<Instant>,
    offline_timeout: Duration,
    /// The broker has been away since then.
    offline_since: Option<Instant>,
    went_safe: bool,
    started_at: DateTime<Zone>,
    announcements: Vec<Announcement>,
    /// What the announcements are made from, to make them again.
    discovery: (Settings, serde_json::Value),
    /// Commands that parts will answer once more, later.
    awaiting: Awaiting,
    /// Rejected commands reported one by one (log and `<base>/error`).
    error_reports: PerSecond,
    /// What the agent has done, for the health report.
    stats: Stats,
    /// Whether the broker has been reached before (a reconnection then).
    connected_before: bool,
    /// The retained commands carried out in this run, by topic.
    retained_done: std::collections::HashMap<String, Bytes>,
}

/// What the loop listens to for the core, and keeps alive while it runs.
pub(crate) struct Wiring {
    /// The filters to subscribe to: no two match one topic.
    pub filters: Vec<String>,
    /// The parts' tasks (display worker, button watcher, forwarders),
    /// aborted at the end.
    pub tasks: Vec<JoinHandle<()>>,
    /// What the parts' tasks report.
    pub events: mpsc::Receiver<Event>,
}

impl Core {
    /// The core for these settings on this hardware, and its wiring.
    pub(crate) fn new(
        settings: &Settings,
        mut hardware: Hardware,
        wall: Arc<dyn WallClock>,
    ) -> Result<(Core, Wiring), AgentError> {
        let config = &settings.config;
        let started_at = wall.now().with_timezone(&settings.time_zone);
        let (events_tx, events) = mpsc::channel(16);
        let mut tasks = Vec::new();
        let parts = Parts::start(&mut Start {
            settings,
            hardware: &mut hardware,
            wall: wall.now(),
            events: events_tx,
            tasks: &mut tasks,
        })?;
        let router = Router::new(
            Topics::new(settings.base_topic.clone(), config.verbs())
                .with_groups(settings.group_topics.clone()),
        );
        let links = Links::new(&settings.base_topic, &config.links);
        let ha_status = config.homeassistant.status_topic();
        let wanted = router.topics().wanted(ha_status.clone(), links.filters());
        // A broker sends a message once per subscription it matches: no two
        // filters may match one topic, or a command would run twice.
        let filters = topic::disjoint(&wanted);
        for wider in filters.iter().filter(|f| !wanted.contains(f)) {
            let covers: Vec<&String> = wanted.iter().filter(|w| topic::covers(wider, w)).collect();
            warn!(filter = %wider, ?covers, "link filters overlap others in part: subscribed to one filter that covers them, so each message arrives once; messages on it that no link or command wants are ignored");
        }
        let library = crate::parts::matrix::pattern::Library::shared()
            .map_err(|e| AgentError::Patterns(e.to_string()))?;
        let effects = parts
            .effects()
            .unwrap_or_else(|| library.names().into_iter().map(String::from).collect());
        let device = crate::discovery::device(settings, &crate::host::Host::new("/"));
        let core = Core {
            parts,
            router,
            links,
            wall,
            time_zone: settings.time_zone.clone(),
            ha_status,
            announce_delay: Duration::from_millis(config.homeassistant.announce_delay_ms),
            announce_due: None,
            last_announce: None,
            offline_timeout: settings.safety.offline_timeout,
            offline_since: None,
            went_safe: false,
            started_at,
            announcements: announcements(settings, &device, &effects),
            discovery: (settings.clone(), device),
            awaiting: Awaiting::default(),
            error_reports: PerSecond::new(ERROR_REPORTS_PER_SECOND, Instant::now()),
            stats: Stats::default(),
            connected_before: false,
            retained_done: std::collections::HashMap::new(),
        };
        let wiring = Wiring {
            filters,
            tasks,
            events,
        };
        Ok((core, wiring))
    }

    fn topics(&self) -> &Topics {
        self.router.topics()
    }

    /// The time by both clocks, for the parts.
    fn now(&self, at: Instant) -> Now {
        Now {
            at,
            wall: self.wall.now(),
            time_zone: self.time_zone.clone(),
            stats: self.stats.clone(),
        }
    }

    /// Notes an error now, for the health report.
    fn note_error(&mut self) {
        self.stats.last_error = Some(self.wall.now().with_timezone(&self.time_zone));
    }

    /// What goes out before the first connection: every part's state, the
    /// agent's info, the discovery configs.
    pub(crate) fn announce(&mut self) -> Vec<Output> {
        let mut out = Outbox::default();
        let now = self.now(Instant::now());
        let states = self.parts.states(&now);
        self.publish(&mut out, states);
        out.retain(&self.topics().at(state::INFO), self.info());
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

    /// Publishes what the parts changed, below base; announces what they
    /// offer Home Assistant again when that changed.
    fn publish(&mut self, out: &mut Outbox, changed: Vec<Out>) {
        for o in &changed {
            if let Out::Answer(part, n, payload) = o {
                if let Some(to) = self.awaiting.take(part, *n) {
                    out.reply(&to, payload.clone());
                }
            }
        }
        let rediscover = changed.iter().any(|o| matches!(o, Out::Rediscover));
        out.below(self.topics(), changed);
        if rediscover {
            let effects = self.parts.effects().unwrap_or_default();
            let (settings, device) = &self.discovery;
            let fresh = announcements(settings, device, &effects);
            for a in fresh.iter().filter(|a| !self.announcements.contains(a)) {
                out.retain(&a.topic, a.payload.clone());
            }
            self.announcements = fresh;
        }
    }

    /// The next timer due, if any, as of `now`.
    pub(crate) fn deadline(&self, now: Instant) -> Option<(Instant, Timer)> {
        let offline = self
            .offline_since
            .filter(|_| !self.went_safe && !self.offline_timeout.is_zero())
            .map(|since| (since + self.offline_timeout, Timer::Offline));
        let part = self.parts.deadline(now).map(|(at, i)| (at, Timer::Part(i)));
        let announce = self.announce_due.map(|at| (at, Timer::Announce));
        [announce, offline, part]
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
            Input::Minute(at) => self.react(Event::Minute(at), now, &mut out),
            Input::Stepped(step) => {
                self.started_at = step.correct(self.started_at.clone());
                info!(by_s = step.by.num_seconds(), "the wall clock was set");
                out.retain(&self.topics().at(state::INFO), self.info());
            }
            Input::Timer(timer) => self.timer(timer, now, &mut out),
            Input::Part(Event::Failed(part, e)) => {
                self.note_error();
                let error = e.to_string();
                warn!(%error, part, "a hardware write failed");
                let topic = self.topics().at(part);
                self.publish_error(&mut out, topic, &error);
            }
            Input::Part(event) => self.react(event, now, &mut out),
        }
        out.0
    }

    /// What the parts make of `event`.
    fn react(&mut self, event: Event, now: Instant, out: &mut Outbox) {
        let now = self.now(now);
        let changed = self.parts.react(&event, &now);
        self.publish(out, changed);
    }

    fn message(&mut self, msg: Inbound, now: Instant, out: &mut Outbox) {
        if self.ha_status.as_deref() == Some(msg.topic.as_str())
            && msg.payload.as_ref() == b"online"
        {
            let earliest = self.last_announce.map(|last| last + ANNOUNCE_SPACING);
            let at = earliest.map_or(now + self.announce_delay, |e| {
                e.max(now + self.announce_delay)
            });
            if self.announce_due.is_none() {
                info!(
                    in_ms = at.saturating_duration_since(now).as_millis(),
                    "Home Assistant is online: announcing again"
                );
            }
            self.announce_due.get_or_insert(at);
        }
        // Links see the message as it arrived, before any command it may be.
        let fired = self.links.fire(&msg.topic, &msg.payload, msg.retained, now);
        let came_on = fired
            .iter()
            .any(|f| matches!(f, Fired::Dropped { .. }))
            .then(|| msg.topic.clone());
        self.handle(msg, now, out);
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
                    self.handle(via, now, out);
                }
                Fired::Dropped { link, limit } => {
                    let error =
                        format!("link[{link}] fired more than {limit} times in a second; dropped");
                    self.report(
                        out,
                        now,
                        "link fired too often; message dropped",
                        came_on.as_deref().unwrap_or_default(),
                        &error,
                    );
                }
            }
        }
    }

    /// Carries out one message and then acknowledges it to the broker.
    fn handle(&mut self, mut msg: Inbound, now: Instant, out: &mut Outbox) {
        let ack = msg.ack.take();
        self.answer(msg, now, out);
        if let Some(a) = ack {
            out.ack(a);
        }
    }

    fn answer(&mut self, msg: Inbound, now: Instant, out: &mut Outbox) {
        if msg.retained && !self.first_time_retained(&msg) {
            return;
        }
        let Some(parsed) = self
            .router
            .answerable(&self.parts, &msg.topic, &msg.payload)
        else {
            return; // a link's topic, Home Assistant's status
        };
        let part_now = self.now(now);
        let result = parsed.and_then(|cmd| self.parts.execute(cmd, &part_now));
        match result {
            Ok(changed) => {
                self.stats.applied += 1;
                if let Some(to) = &msg.reply_to {
                    for o in &changed {
                        if let Out::Awaits(part, n) = o {
                            self.awaiting.put(part, *n, to.clone());
                        }
                    }
                }
                self.publish(out, changed);
                if let Some(to) = &msg.reply_to {
                    out.reply(to, Bytes::from_static(br#"{"ok":true}"#));
                }
            }
            Err(e) => {
                self.stats.rejected += 1;
                self.note_error();
                let error = e.to_string();
                self.report(out, now, "command rejected", &msg.topic, &error);
                if let Some(to) = &msg.reply_to {
                    out.reply(to, json!({ "ok": false, "error": error }).to_string());
                }
            }
        }
    }

    /// Whether a retained message (one the broker stored) is to be carried
    /// out: once per run; the broker hands it over again on every
    /// (re)subscription. An empty one clears a stored command: nothing to do.
    fn first_time_retained(&mut self, msg: &Inbound) -> bool {
        if msg.payload.is_empty() {
            return false;
        }
        let fresh = self.retained_done.get(&msg.topic) != Some(&msg.payload);
        if fresh {
            self.retained_done
                .insert(msg.topic.clone(), msg.payload.clone());
        }
        fresh
    }

    /// Reports a rejected command or a dropped link trigger (`what`, for the
    /// log), for the message that came on `topic`, within
    /// [`ERROR_REPORTS_PER_SECOND`] (log and `<base>/error`); beyond it they
    /// are counted and reported as one.
    fn report(&mut self, out: &mut Outbox, now: Instant, what: &str, topic: &str, error: &str) {
        if !self.error_reports.admit(now) {
            return;
        }
        let unreported = self.error_reports.take_refused();
        if unreported > 0 {
            warn!(
                unreported,
                "more commands were rejected than are reported one by one"
            );
            let at = self.topics().at(state::ERROR);
            self.publish_error(
                out,
                at,
                &format!(
                    "{unreported} more commands were rejected than the \
                     {ERROR_REPORTS_PER_SECOND} a second reported one by one"
                ),
            );
        }
        let topic = crate::quote::clip(topic, crate::quote::MAX_ECHO);
        warn!(%topic, %error, "{what}");
        self.publish_error(out, topic.as_ref(), error);
    }

    /// Says on `<base>/error` what went wrong with `topic`
    /// (`{"topic": ..., "error": ...}`, contract §2).
    fn publish_error(&self, out: &mut Outbox, topic: impl Into<serde_json::Value>, error: &str) {
        out.report(
            &self.topics().at(state::ERROR),
            json!({ "topic": topic.into(), "error": error }).to_string(),
        );
    }

    fn link(&mut self, link: Link, now: Instant, out: &mut Outbox) {
        match link {
            Link::Up => {
                info!(base = %self.topics().base(), "online");
                if std::mem::replace(&mut self.connected_before, true) {
                    self.stats.reconnections += 1;
                }
                self.react(Event::Online, now, out);
                if let Some(since) = self.offline_since.take() {
                    if self.went_safe {
                        let at = self.topics().at(state::STATUS);
                        self.publish_error(
                            out,
                            at,
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
                self.react(Event::Offline, now, out);
            }
        }
    }

    fn timer(&mut self, timer: Timer, now: Instant, out: &mut Outbox) {
        let at = now;
        let now = self.now(now);
        let changed = match timer {
            Timer::Announce => {
                self.announce_due = None;
                self.last_announce = Some(at);
                out.republish_retained();
                self.parts.react(&Event::Announce, &now)
            }
            Timer::Offline => {
                warn!(
                    timeout_ms = self.offline_timeout.as_millis(),
                    "the broker has been away too long: outputs to their safe values"
                );
                self.went_safe = true;
                self.parts.go_safe(&now)
            }
            Timer::Part(i) => self.parts.timer(i, &now),
        };
        self.publish(out, changed);
    }

    /// Puts every output at its safe value and stops the parts (shutdown);
    /// returns the states they are left in, to publish, and the first
    /// hardware failure.
    pub(crate) async fn stop(self) -> (Vec<Output>, Result<(), HardwareError>) {
        let mut out = Outbox::default();
        let now = self.now(Instant::now());
        let topics = self.router.topics().clone();
        let (changed, result) = self.parts.stop(now).await;
        out.below(&topics, changed);
        (out.0, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::TokioClock;
    use crate::config::Config;
    use crate::hardware::sim::SimHandles;

    /// A core on simulated hardware for `config` (below `[device] id = "t"`;
    /// without the health report unless `config` has `[diag]`), with the
    /// simulated hardware's recordings.
    fn core(config: &str) -> (Core, Wiring, SimHandles) {
        core_in(
            config,
            std::path::Path::new(crate::config::DEFAULT_STATE_DIR),
        )
    }

    /// The same, keeping its state in `state_dir`.
    fn core_in(config: &str, state_dir: &std::path::Path) -> (Core, Wiring, SimHandles) {
        let diag = if config.contains("[diag]") {
            ""
        } else {
            "[diag]\nenabled = false\n"
        };
        let mut settings = Config::from_toml(&format!(
            "[device]\nid = \"t\"\n[display]\nbackend = \"sim\"\nrefresh_ms = 0\n{config}\n{diag}"
        ))
        .unwrap();
        settings.config.device.state_dir = state_dir.to_path_buf();
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
        let online = || Input::Message(message("homeassistant/status", "online"));
        let t0 = Instant::now();
        let minute = "2026-12-02T10:01:00Z"
            .parse::<DateTime<chrono::Utc>>()
            .unwrap();
        let out = core.step(Input::Minute(minute.with_timezone(&Zone::utc())), t0);
        assert_eq!(topics_of(&out), ["edge/t/clock/tick"]);
        let out_of_minute = out;
        // After the delay (Home Assistant's discovery is not ready at once).
        assert!(core.step(online(), t0).is_empty());
        let due = t0 + Duration::from_millis(1000);
        assert_eq!(core.deadline(t0), Some((due, Timer::Announce)));
        assert!(core
            .step(online(), t0 + Duration::from_millis(400))
            .is_empty());
        assert_eq!(
            core.deadline(t0),
            Some((due, Timer::Announce)),
            "one for both"
        );
        let out = core.step(Input::Timer(Timer::Announce), due);
        assert_eq!(out[0], Output::RepublishRetained);
        // The last tick again, so the clock has a value before the next minute.
        assert_eq!(out[1..], out_of_minute[..]);
        assert_eq!(core.deadline(due), None);
        // However often it comes, at most once per ANNOUNCE_SPACING.
        assert!(core
            .step(online(), due + Duration::from_millis(100))
            .is_empty());
        assert_eq!(
            core.deadline(due),
            Some((due + ANNOUNCE_SPACING, Timer::Announce))
        );
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
            Some((t0 + Duration::from_millis(300), Timer::Part(0)))
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        let out = core.step(Input::Timer(Timer::Part(0)), Instant::now());
        assert_eq!(
            out,
            vec![Output::Retain {
                topic: "edge/t/buzzer".into(),
                payload: Bytes::from_static(br#"{"state":"OFF"}"#)
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

    #[tokio::test(start_paused = true)]
    async fn a_flash_of_the_matrix_blinks_it_then_shows_what_it_showed() {
        let (mut core, mut w, sim) = core("");
        let frames = sim.outputs("matrix").cloned().unwrap();
        let frame = "01010/01010/00000/10001/01110";
        core.step(
            Input::Message(message("edge/t/matrix/set", frame)),
            Instant::now(),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The engine's report, as the loop hands it over: the matrix is on.
        while let Ok(event) = w.events.try_recv() {
            core.step(Input::Part(event), Instant::now());
        }
        let t0 = Instant::now();
        let flash = r#"{"state": "ON", "flash": 1}"#;
        let out = core.step(Input::Message(message("edge/t/matrix/set", flash)), t0);
        assert!(!topics_of(&out).contains(&"edge/t/error"), "{out:?}");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let lit: Vec<usize> = frames
            .entries()
            .into_iter()
            .filter(|(at, _)| *at >= t0)
            .map(|(_, f)| f.iter().filter(|on| **on).count())
            .collect();
        // Lit, dark, lit, dark (two blinks of 250 ms), then the frame again.
        assert_eq!(lit, [25, 0, 25, 0, 9], "{lit:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_health_report_comes_every_interval_with_the_counters() {
        let (mut core, _w, _sim) = core("[diag]\ninterval_s = 60\nroot = \"/nonexistent\"\n");
        let t0 = Instant::now();
        let first = core.announce();
        assert!(topics_of(&first).contains(&"edge/t/diag"), "at the start");
        let due = t0 + Duration::from_secs(60);
        assert!(matches!(core.deadline(t0), Some((at, Timer::Part(_))) if at == due));
        core.step(Input::Message(message("edge/t/led/left/set", "ON")), t0);
        core.step(Input::Message(message("edge/t/led/left/set", "LOUD")), t0);
        core.step(Input::Link(Link::Up), t0);
        core.step(Input::Link(Link::Up), t0);
        // Late by 5 s: the next is still on the minute after the first.
        let late = due + Duration::from_secs(5);
        let Some((_, timer)) = core.deadline(t0) else {
            unreachable!()
        };
        let out = core.step(Input::Timer(timer), late);
        let Some(Output::Retain { payload, .. }) = out
            .iter()
            .find(|o| matches!(o, Output::Retain { topic, .. } if topic == "edge/t/diag"))
        else {
            panic!("no report: {out:?}")
        };
        let v: serde_json::Value = serde_json::from_slice(payload).unwrap();
        assert_eq!(
            (
                v["commands_applied"].as_u64(),
                v["commands_rejected"].as_u64()
            ),
            (Some(1), Some(1))
        );
        assert_eq!(v["reconnections"], 1);
        assert!(v["last_error_at"].is_string());
        // The host lacks everything under a made-up root: nulls, not guesses.
        assert!(
            v["temperature_c"].is_null() && v["under_voltage"].is_null(),
            "{v}"
        );
        assert!(
            matches!(core.deadline(late), Some((at, _)) if at == t0 + Duration::from_secs(120))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttling_flag_that_changes_is_reported_at_the_next_check() {
        let flags = "sys/devices/platform/soc/soc:firmware/get_throttled";
        let dir = crate::host::tree(&[(flags, "0x0\n")]);
        let (mut core, _w, _sim) = core(&format!(
            "[diag]\ninterval_s = 60\nthrottle_check_s = 5\nroot = {:?}\n",
            dir.path()
        ));
        let t0 = Instant::now();
        let diag = |out: &[Output]| {
            out.iter().find_map(|o| match o {
                Output::Retain { topic, payload } if topic == "edge/t/diag" => {
                    serde_json::from_slice::<serde_json::Value>(payload).ok()
                }
                _ => None,
            })
        };
        assert_eq!(diag(&core.announce()).unwrap()["under_voltage"], false);
        let at = |s| t0 + Duration::from_secs(s);
        let due = |core: &Core| core.deadline(t0);
        // Nothing changed: a look, no report.
        let (when, timer) = due(&core).unwrap();
        assert_eq!(when, at(5));
        assert_eq!(diag(&core.step(Input::Timer(timer), at(5))), None);
        // Under-voltage: reported at the next look, 7 s late or not.
        std::fs::write(dir.path().join(flags), "0x50005\n").unwrap();
        let (when, timer) = due(&core).unwrap();
        assert_eq!(when, at(10));
        let v = diag(&core.step(Input::Timer(timer), at(17))).expect("a report at once");
        assert_eq!(
            (v["under_voltage"].clone(), v["throttled"].clone()),
            (true.into(), true.into())
        );
        // Looks go on on their grid; the report stays on its own.
        let (when, timer) = due(&core).unwrap();
        assert_eq!(when, at(20));
        assert_eq!(
            diag(&core.step(Input::Timer(timer), at(20))),
            None,
            "no change since"
        );
        for s in (25..60).step_by(5) {
            let (when, timer) = due(&core).unwrap();
            assert_eq!(when, at(s));
            assert_eq!(diag(&core.step(Input::Timer(timer), at(s))), None);
        }
        let (when, timer) = due(&core).unwrap();
        assert_eq!(when, at(60));
        assert!(
            diag(&core.step(Input::Timer(timer), at(60))).is_some(),
            "the minute's report"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_saved_pattern_joins_the_effects_outlives_a_restart_and_can_be_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let matrix_config = |out: &[Output]| {
            out.iter().find_map(|o| match o {
                Output::Retain { topic, payload } if topic.ends_with("/light/t/matrix/config") => {
                    serde_json::from_slice::<serde_json::Value>(payload).ok()
                }
                _ => None,
            })
        };
        let effects = |v: &serde_json::Value| -> Vec<String> {
            serde_json::from_value(v["effect_list"].clone()).unwrap()
        };
        let (mut core, _w, _sim) = core_in("", dir.path());
        let t0 = Instant::now();
        let shipped = effects(&matrix_config(&core.announce()).unwrap());
        let save = |core: &mut Core, name: &str, payload: &str| {
            core.step(
                Input::Message(message(
                    &format!("edge/t/matrix/pattern/{name}/set"),
                    payload,
                )),
                t0,
            )
        };
        let out = save(&mut core, "cross", "10001/01010/00100/01010/10001");
        let v = matrix_config(&out).expect("the matrix announced again");
        assert_eq!(effects(&v).last().map(String::as_str), Some("cross"));
        assert_eq!(effects(&v)[..shipped.len()], shipped[..], "shipped first");
        assert_eq!(effects(&v).len(), shipped.len() + 1);
        assert_eq!(
            topics_of(&out).len(),
            1,
            "only the matrix's config: {out:?}"
        );
        let out = save(
            &mut core,
            "blinky",
            r#"{"blink": {"leds": "cross", "interval_ms": 100}}"#,
        );
        let v = matrix_config(&out).expect("announced again");
        assert!(
            effects(&v).ends_with(&["blinky".to_string(), "cross".to_string()]),
            "by name: {v}"
        );
        // It runs by name, like a shipped one.
        let out = core.step(Input::Message(message("edge/t/matrix/set", "blinky")), t0);
        assert!(!topics_of(&out).contains(&"edge/t/error"), "{out:?}");
        // Refused: a shipped name, a bad name, a bad program; nothing saved.
        for (name, payload, why) in [
            ("smiley", "11111/11111/11111/11111/11111", "shipped"),
            ("Big", "11111/11111/11111/11111/11111", "a-z"),
            ("on", "11111/11111/11111/11111/11111", "a command"),
            ("bad", r#"{"blink": {}}"#, "blink"),
            ("ghost", "", "no saved pattern called"),
        ] {
            let out = save(&mut core, name, payload);
            let error = out.iter().find_map(|o| match o {
                Output::Report { topic, payload } if topic == "edge/t/error" => {
                    Some(String::from_utf8_lossy(payload).into_owned())
                }
                _ => None,
            });
            assert!(
                error.as_deref().is_some_and(|e| e.contains(why)),
                "{name}: {out:?}"
            );
            assert!(matrix_config(&out).is_none(), "{name}");
        }
        // A new run finds them.
        drop(core);
        let (mut core, _w, _sim) = core_in("", dir.path());
        let v = matrix_config(&core.announce()).unwrap();
        assert!(
            effects(&v).ends_with(&["blinky".to_string(), "cross".to_string()]),
            "{v}"
        );
        // Empty: deleted, and gone from the effects.
        let out = save(&mut core, "cross", "");
        let v = matrix_config(&out).expect("announced again");
        assert!(!effects(&v).contains(&"cross".to_string()));
        assert!(!dir.path().join("patterns/cross.json").exists());
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_is_answered_again_by_the_panel_and_gives_way_to_the_clock_at_its_ttl() {
        use crate::parts::message_board::display::Progress;
        let (mut core, _w, _sim) = core("");
        core.announce();
        let t0 = Instant::now();
        let request = |n: &str, payload: &str| {
            let mut m = message("edge/t/display/message/set", payload);
            m.reply_to = Some(ReplyTo {
                topic: "reply/t".into(),
                correlation: Some(Bytes::from(n.to_string())),
            });
            Input::Message(m)
        };
        let replies = |out: &[Output]| -> Vec<(String, serde_json::Value)> {
            out.iter()
                .filter_map(|o| match o {
                    Output::Reply { to, payload } => Some((
                        String::from_utf8_lossy(to.correlation.as_deref()?).into_owned(),
                        serde_json::from_slice(payload).ok()?,
                    )),
                    _ => None,
                })
                .collect()
        };
        // Screen 1 is the clock at the start; the messages are 2 and 3.
        let out = core.step(request("a", "first"), t0);
        assert_eq!(replies(&out), [("a".into(), json!({"ok": true}))]);
        core.step(request("b", r#"{"text": "second", "ttl_s": 60}"#), t0);
        // The panel takes 3 (so 2 is never drawn), then shows it.
        let out = core.step(Input::Part(Event::Board(Progress::Taken(3))), t0);
        assert_eq!(replies(&out)[0].0, "a");
        assert_eq!(replies(&out)[0].1["ok"], false, "superseded: {out:?}");
        let out = core.step(Input::Part(Event::Board(Progress::Shown(3))), t0);
        let shown = replies(&out);
        assert_eq!(
            (shown[0].0.as_str(), &shown[0].1["ok"]),
            ("b", &json!(true))
        );
        assert!(shown[0].1["shown_at"].is_string());
        // Answered once more only: a repeated report changes nothing.
        assert!(replies(&core.step(Input::Part(Event::Board(Progress::Shown(3))), t0)).is_empty());
        // At its ttl, on the core's timer: the clock again.
        let Some((at, timer)) = core.deadline(t0) else {
            panic!("no deadline for the ttl")
        };
        assert_eq!(at, t0 + Duration::from_secs(60));
        let out = core.step(Input::Timer(timer), at);
        let board = out.iter().find_map(|o| match o {
            Output::Retain { topic, payload } if topic == "edge/t/display" => {
                serde_json::from_slice::<serde_json::Value>(payload).ok()
            }
            _ => None,
        });
        assert_eq!(board.expect("the board's state")["mode"], "clock");
        assert!(core
            .deadline(at)
            .is_none_or(|(d, _)| d > at + Duration::from_secs(3600)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_fade_takes_every_step_though_its_timers_fire_late() {
        let (mut core, _w, sim) = core("");
        core.announce();
        let t0 = Instant::now();
        core.step(
            Input::Message(message(
                "edge/t/led/left/set",
                r#"{"state": "ON", "brightness": 255, "transition": 1}"#,
            )),
            t0,
        );
        // Each timer taken 3 ms after it was due, as a busy loop would.
        let (mut steps, mut now) = (0, t0);
        while let Some((at, timer)) = core.deadline(now) {
            if at > t0 + Duration::from_secs(2) || steps > 200 {
                break;
            }
            now = at + Duration::from_millis(3);
            tokio::time::sleep_until(now).await;
            core.step(Input::Timer(timer), now);
            steps += 1;
        }
        // The writer writes what it is given, at most every 10 ms.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let left = sim.pwm("led/left").unwrap();
        assert_eq!(steps, 50, "one timer per 20 ms step");
        assert!(left.total() > 40, "{} writes", left.total());
        assert_eq!(left.last(), Some(1.0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_retained_command_runs_once_a_run_and_an_empty_one_clears_quietly() {
        let (mut core, _w, _sim) = core("");
        let retained = |payload: &str| {
            let mut m = message("edge/t/led/left/set", payload);
            m.retained = true;
            Input::Message(m)
        };
        let t0 = Instant::now();
        assert_eq!(
            topics_of(&core.step(retained("ON"), t0)),
            ["edge/t/led/left"]
        );
        // Redelivered on a reconnection: not again.
        assert!(core.step(retained("ON"), t0).is_empty());
        // Another one stored meanwhile: carried out.
        assert_eq!(
            topics_of(&core.step(retained("OFF"), t0)),
            ["edge/t/led/left"]
        );
        // Somebody clears the stored command: no error, nothing done.
        assert!(core.step(retained(""), t0).is_empty());
        // A live command is carried out as ever.
        let live = Input::Message(message("edge/t/led/left/set", "OFF"));
        assert_eq!(topics_of(&core.step(live, t0)), ["edge/t/led/left"]);
    }
}
