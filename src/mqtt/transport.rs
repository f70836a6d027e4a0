//! MQTT transport: connect, reconnect with capped exponential backoff,
//! subscribe, publish, last will. This is the only module that knows rumqttc.
//!
//! The transport keeps the retained state the agent has published (topic →
//! payload) and republishes it, with `<base>/status` = `online` last, after
//! every (re)connection, together with the subscriptions. While the broker is
//! away, retained updates only change that cache and events are dropped, so
//! nothing queues up without bound.
//!
//! What the agent publishes goes to an outbox that [`Publisher::flush`]
//! hands to the connection, waiting while the connection's queue is full.
//! The agent takes the next command only once the outbox is empty
//! ([`Publisher::pressure`]): back-pressure instead of dropped replies.
//! Retained updates of one topic coalesce in the outbox, and events beyond
//! [`EVENT_BACKLOG`] are dropped and counted, so it stays small. QoS 1
//! commands are acknowledged to the broker ([`Publisher::ack`]) only after
//! the agent has applied or rejected them: at least once, end to end.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::{Filter, LastWill, Packet, Publish, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions};
use rumqttc::Outgoing;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::config::Settings;

/// Payload of `<base>/status` while the agent runs.
pub(crate) const ONLINE: &str = "online";
/// Payload of `<base>/status` after a stop, and of the last will.
pub(crate) const OFFLINE: &str = "offline";

/// Largest packet the agent accepts from the broker.
const MAX_INCOMING_PACKET: u32 = 2 * 1024 * 1024;

/// Requests the connection's queue holds before [`Publisher::flush`] waits.
/// It must hold a whole announcement (subscriptions, every retained topic,
/// `online`), which the connection task makes without waiting.
const REQUEST_QUEUE: usize = 256;

/// Our QoS 1 publishes in flight (unacknowledged) at once; rumqttc's own
/// default sizes a table for 65,535.
const OUTGOING_INFLIGHT: u16 = 64;

/// Unacknowledged QoS 1 commands the broker may hand us at once
/// (MQTT 5 receive maximum); the rest wait at the broker.
const RECEIVE_MAXIMUM: u16 = 32;

/// Acknowledgements the outbox gathers before the agent hands them over
/// (when nothing else waits there).
const ACK_BATCH: usize = 16;

/// Events (button presses, ticks, error reports) the outbox holds while the
/// connection cannot take them; more are dropped and counted.
pub(crate) const EVENT_BACKLOG: usize = 1024;

/// How long the broker keeps an event or a reply for a subscriber that is
/// away (MQTT 5 message expiry), in seconds: a press or an answer is news
/// for a minute, not an hour later.
pub(crate) const EVENT_EXPIRY_S: u32 = 60;

/// `props` with the message expiry `expiry`.
fn expiring(props: PublishProperties, expiry: Option<u32>) -> PublishProperties {
    PublishProperties {
        message_expiry_interval: expiry,
        ..props
    }
}

/// Payload bytes of received messages the connection task holds while the
/// agent is busy; beyond it (or [`HELD_MESSAGES`]), it stops reading (TCP
/// pushes back on the broker) until the agent takes one.
const HELD_BYTES: usize = 4 * 1024 * 1024;

/// Received messages the connection task holds while the agent is busy.
/// The broker should send no more than [`RECEIVE_MAXIMUM`] unacknowledged
/// QoS 1 commands, but Mosquitto 2.0 was seen to send several hundred at
/// once after a reconnection, and QoS 0 ones are not limited at all.
const HELD_MESSAGES: usize = 8 * RECEIVE_MAXIMUM as usize;

/// Where the answer to a command goes (MQTT 5 request/response).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReplyTo {
    /// The response topic the sender asked for.
    pub topic: String,
    /// Correlation data to hand back unchanged.
    pub correlation: Option<Bytes>,
}

/// A message that arrived on a subscribed topic.
#[derive(Debug, Clone)]
pub(crate) struct Inbound {
    /// What acknowledges it to the broker once handled (QoS 1); `None` for
    /// a message the agent made itself (a link's command).
    pub ack: Option<Ack>,
    /// The topic it was published on.
    pub topic: String,
    /// Its payload, as sent.
    pub payload: Bytes,
    /// Whether the broker delivered it as a retained message.
    pub retained: bool,
    /// Where to send the acknowledgement, if the sender asked for one.
    pub reply_to: Option<ReplyTo>,
}

/// The acknowledgement a received QoS 1 or 2 message is owed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ack {
    pkid: u16,
    qos: QoS,
}

impl Ack {
    /// What `p` is owed; `None` at QoS 0.
    fn of(p: &Publish) -> Option<Ack> {
        (p.qos != QoS::AtMostOnce).then_some(Ack {
            pkid: p.pkid,
            qos: p.qos,
        })
    }

    /// The acknowledgement of the QoS 1 message `pkid`, for tests of what
    /// is owed without a broker.
    #[cfg(test)]
    pub(crate) fn qos1(pkid: u16) -> Ack {
        Ack {
            pkid,
            qos: QoS::AtLeastOnce,
        }
    }

    /// The packet rumqttc's `ack` takes: only its id and QoS are read.
    fn packet(self) -> Publish {
        let mut p = Publish::new("", self.qos, Bytes::new(), None);
        p.pkid = self.pkid;
        p
    }
}

/// The connection's state as the rest of the agent sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Link {
    /// Not (yet, or no longer) connected.
    Down,
    /// Connected, subscribed, and `online` published.
    Up,
}

/// Settings of the connection, taken from the validated configuration.
#[derive(Debug, Clone)]
pub(crate) struct TransportOptions {
    /// MQTT client id.
    pub client_id: String,
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// CA certificates for TLS; `None` = plain TCP.
    pub tls_ca: Option<Vec<u8>>,
    /// Whether to use TLS (`mqtts://`); the CA is then `tls_ca`.
    pub tls: bool,
    /// User name and password.
    pub credentials: Option<(String, String)>,
    /// Keep-alive interval.
    pub keep_alive: Duration,
    /// `<base>/status`: carries `online`, `offline` and the last will.
    pub status_topic: String,
    /// Topic filters to subscribe to after each connection.
    pub filters: Vec<String>,
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// How long the broker keeps the session while we are away (0 = clean
    /// session each time).
    pub session_expiry: u32,
    /// The message expiry of events and replies, in seconds; none through
    /// the embedded broker, whose 3.1.1 listener drops a subscriber sent a
    /// message with properties (docs/known-issues.md).
    pub expiry: Option<u32>,
}

impl TransportOptions {
    /// Options for the agent described by `settings`, subscribing to `filters`.
    pub(crate) fn from_settings(settings: &Settings, filters: Vec<String>) -> Self {
        let timing = &settings.timing;
        TransportOptions {
            client_id: settings.client_id.clone(),
            host: settings.endpoint.host.clone(),
            port: settings.endpoint.port,
            tls_ca: settings.ca.clone(),
            tls: settings.endpoint.tls,
            credentials: settings
                .credentials
                .as_ref()
                .map(|(u, p)| (u.clone(), p.expose().to_string())),
            keep_alive: timing.keep_alive,
            status_topic: format!(
                "{}/{}",
                settings.base_topic,
                crate::mqtt::topic::state::STATUS
            ),
            filters,
            backoff_min: timing.backoff_min,
            backoff_max: timing.backoff_max,
            session_expiry: timing.session_expiry_s,
            expiry: settings.broker.is_none().then_some(EVENT_EXPIRY_S),
        }
    }
}

/// How long a flush waits before it tries again to hand a message to a
/// connection whose queue is full.
const ROOM_WAIT: Duration = Duration::from_millis(1);

/// The user property of a reply that names the board's base topic.
pub(crate) const REPLY_FROM: &str = "base";

/// Why the transport could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The TLS settings could not be used.
    #[error("TLS: {0}")]
    Tls(String),
}

struct Shared {
    link: Link,
    retained: BTreeMap<String, Bytes>,
    outbox: VecDeque<Out>,
    /// Numbers the outbox's entries, so a flush removes only what it sent.
    next_seq: u64,
    /// Events in the outbox now.
    events: usize,
    /// Acknowledgements in the outbox now.
    acks: usize,
    /// Events dropped since this was last reported.
    dropped: u64,
    /// The connection task waits for the agent to take a message: the agent
    /// takes it even with a backlog, since only the connection task can
    /// hand the backlog to the network.
    waiting: bool,
}

/// One request waiting in the outbox.
#[derive(Debug, Clone)]
struct Out {
    seq: u64,
    what: OutKind,
}

#[derive(Debug, Clone)]
enum OutKind {
    /// Retained state: superseded in place by a newer payload for its topic.
    Retained { topic: String, payload: Bytes },
    /// An event: dropped while offline or beyond [`EVENT_BACKLOG`].
    Event { topic: String, payload: Bytes },
    /// An answer to a command, or an error report: never dropped.
    Answer {
        topic: String,
        payload: Bytes,
        props: Option<PublishProperties>,
    },
    /// The acknowledgement of a handled QoS 1 command.
    Ack(Ack),
}

impl Shared {
    fn new() -> Shared {
        Shared {
            link: Link::Down,
            retained: BTreeMap::new(),
            outbox: VecDeque::new(),
            next_seq: 0,
            events: 0,
            acks: 0,
            dropped: 0,
            waiting: false,
        }
    }

    fn push(&mut self, what: OutKind) {
        let seq = self.next_seq;
        self.next_seq += 1;
        match &what {
            OutKind::Retained { topic, .. } => {
                let same = self
                    .outbox
                    .iter_mut()
                    .find(|o| matches!(&o.what, OutKind::Retained { topic: t, .. } if t == topic));
                if let Some(o) = same {
                    // A new number too: a flush sending the old payload
                    // right now must not take the entry out as sent.
                    *o = Out { seq, what };
                    return;
                }
            }
            OutKind::Event { topic, .. } => {
                if self.link != Link::Up || self.events >= EVENT_BACKLOG {
                    self.dropped += 1;
                    if self.dropped.is_power_of_two() {
                        warn!(
                            topic,
                            dropped = self.dropped,
                            "events dropped: the broker is away or not taking them"
                        );
                    }
                    return;
                }
                self.events += 1;
            }
            OutKind::Ack(_) => self.acks += 1,
            OutKind::Answer { .. } => {}
        }
        self.outbox.push_back(Out { seq, what });
    }

    /// Takes the entry numbered `seq` out of the outbox's front, once the
    /// connection has it; nothing if it was superseded meanwhile.
    fn sent(&mut self, seq: u64) {
        if self.outbox.front().is_some_and(|o| o.seq == seq) {
            match self.outbox.pop_front().map(|o| o.what) {
                Some(OutKind::Event { .. }) => self.events -= 1,
                Some(OutKind::Ack(_)) => self.acks -= 1,
                _ => {}
            }
        }
    }

    /// Whether the agent must hand the outbox over before it takes another
    /// command: anything but acknowledgements is waiting, or a batch of
    /// those. Acknowledgements alone may wait for a few more commands (a
    /// flood of refused ones), each sent after its command all the same.
    fn backlogged(&self) -> bool {
        !self.waiting && (self.outbox.len() > self.acks || self.acks >= ACK_BATCH)
    }

    /// Forgets what a new connection republishes anyway: retained state
    /// (the announcement sends the latest) and events (dropped offline).
    fn link_lost(&mut self) {
        self.outbox
            .retain(|o| matches!(o.what, OutKind::Answer { .. } | OutKind::Ack(_)));
        self.dropped += self.events as u64;
        self.events = 0;
    }
}

/// Publishes on behalf of the agent; cheap to clone.
#[derive(Clone)]
pub(crate) struct Publisher {
    client: AsyncClient,
    shared: Arc<Mutex<Shared>>,
    status_topic: Arc<str>,
    /// Rung when the connection task starts waiting for the agent to take
    /// a message: a flush waiting for room then gives way, since only the
    /// connection task makes room.
    wake: Arc<tokio::sync::Notify>,
    /// The message expiry of events and replies (`TransportOptions::expiry`).
    expiry: Option<u32>,
}

/// The running transport: the handle that stops it and the event-loop task.
pub(crate) struct Transport {
    publisher: Publisher,
    task: tokio::task::JoinHandle<()>,
    stop: watch::Sender<bool>,
    go: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Capped exponential backoff between reconnect attempts.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `min`, doubles per failure, never above `max`.
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max,
            next: min,
        }
    }
    /// The delay before the next attempt.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }
    /// Back to `min` after a successful connection.
    pub(crate) fn reset(&mut self) {
        self.next = self.min;
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

fn mqtt_options(
    options: &TransportOptions,
    client_id: &str,
) -> Result<MqttOptions, TransportError> {
    let mut mqtt = MqttOptions::new(client_id, &options.host, options.port);
    mqtt.set_keep_alive(options.keep_alive)
        .set_outgoing_inflight_upper_limit(OUTGOING_INFLIGHT)
        .set_receive_maximum(Some(RECEIVE_MAXIMUM))
        .set_clean_start(options.session_expiry == 0)
        .set_session_expiry_interval(Some(options.session_expiry).filter(|s| *s > 0))
        .set_max_packet_size(Some(MAX_INCOMING_PACKET))
        .set_connection_timeout(5);
    // Commands and replies are small: send each at once, not after Nagle's wait.
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    mqtt.set_network_options(net);
    if let Some((user, pass)) = &options.credentials {
        mqtt.set_credentials(user, pass);
    }
    if options.tls {
        // ring is the one TLS provider built in; installing it twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca = options.tls_ca.clone().ok_or_else(|| {
            TransportError::Tls(
                "mqtts:// needs mqtt.ca_file (the CA that signed the broker's certificate)".into(),
            )
        })?;
        mqtt.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Simple {
                ca,
                alpn: None,
                client_auth: None,
            },
        ));
    }
    Ok(mqtt)
}

/// Why a one-off request got no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestError {
    /// The connection could not be set up.
    #[error("{0}")]
    Setup(#[from] TransportError),
    /// The broker could not be reached or refused us.
    #[error("cannot reach the broker at {broker}: {reason}")]
    Unreachable {
        /// host:port.
        broker: String,
        /// What went wrong.
        reason: String,
    },
    /// Nobody answered in time.
    #[error("no answer on {topic} within {} s; is the agent running?", within.as_secs_f32())]
    NoAnswer {
        /// The request topic.
        topic: String,
        /// How long we waited.
        within: Duration,
    },
}

/// A short-lived client of the command-line tools (`fleet`, `doctor`):
/// connected with a clean session that it leaves none of behind, under a
/// client id of its own made from the agent's and `role`. `anonymous`
/// leaves the configured credentials out.
/// Something no other run or client makes: the process id and the time.
pub(crate) fn nonce() -> String {
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{}-{at}", std::process::id())
}

/// The options of a short-lived client in `role` (a clean session it
/// leaves none of behind, a client id of its own), and the nonce in its id.
fn one_off_options(
    options: &TransportOptions,
    role: &str,
    anonymous: bool,
) -> Result<(MqttOptions, String), TransportError> {
    let nonce = nonce();
    let client_id = format!("{}-{role}-{nonce}", options.client_id);
    let mut mqtt = if anonymous {
        let options = TransportOptions {
            credentials: None,
            ..options.clone()
        };
        mqtt_options(&options, &client_id)?
    } else {
        mqtt_options(options, &client_id)?
    };
    mqtt.set_clean_start(true).set_session_expiry_interval(None);
    Ok((mqtt, nonce))
}

pub(crate) async fn one_off(
    options: &TransportOptions,
    role: &str,
    anonymous: bool,
    within: Duration,
) -> Result<(AsyncClient, EventLoop), RequestError> {
    let (mqtt, _) = one_off_options(options, role, anonymous)?;
    let (client, mut eventloop) = AsyncClient::new(mqtt, 64);
    let broker = format!("{}:{}", options.host, options.port);
    let connect = async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(describe(&e)),
            }
        }
    };
    match tokio::time::timeout(within, connect).await {
        Ok(Ok(())) => Ok((client, eventloop)),
        Ok(Err(reason)) => Err(RequestError::Unreachable { broker, reason }),
        Err(_) => Err(RequestError::Unreachable {
            broker,
            reason: format!("no answer within {} s", within.as_secs_f32()),
        }),
    }
}

/// An answer to a request.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    /// The reply's payload.
    pub payload: Bytes,
    /// The base topic of the board that answered, as its reply names it.
    pub from: Option<String>,
}

/// How many answers a request waits for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Answers {
    /// The first one.
    One,
    /// The first and the second (the board's when it has shown a message).
    Two,
    /// Every one that comes until none has come for `quiet` (a group of
    /// boards answers one by one), within the request's time.
    Many {
        /// How long after the last answer to stop waiting.
        quiet: Duration,
    },
}

/// Publishes one MQTT 5 request (response topic + correlation data) and
/// returns the answers; for `edge-agent send`. No answer at all is an error.
pub(crate) async fn request(
    options: &TransportOptions,
    topic: &str,
    payload: Bytes,
    within: Duration,
    answers: Answers,
) -> Result<Vec<Answer>, RequestError> {
    let (mqtt, nonce) = one_off_options(options, "send", false)?;
    let reply_topic = format!("edge-agent/reply/{}", mqtt.client_id());
    let (client, mut eventloop) = AsyncClient::new(mqtt, 16);
    let correlation = Bytes::from(nonce.into_bytes());
    let broker = format!("{}:{}", options.host, options.port);
    let deadline = tokio::time::Instant::now() + within;
    let mut got: Vec<Answer> = Vec::new();
    loop {
        // After an answer, a group's next one must come within the quiet time.
        let until = match (answers, got.is_empty()) {
            (Answers::Many { quiet }, false) => deadline.min(tokio::time::Instant::now() + quiet),
            _ => deadline,
        };
        let event = match tokio::time::timeout_at(until, eventloop.poll()).await {
            Ok(event) => event,
            Err(_) => break,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                let _ = client.try_subscribe(&reply_topic, QoS::AtLeastOnce);
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                // Not shown later than the sender waits for it: a board
                // that was away does not show it minutes after.
                let expiry = options
                    .expiry
                    .map(|_| u32::try_from(within.as_secs_f64().ceil() as u64).unwrap_or(u32::MAX));
                let props = PublishProperties {
                    response_topic: Some(reply_topic.clone()),
                    correlation_data: Some(correlation.clone()),
                    message_expiry_interval: expiry.map(|e| e.max(1)),
                    ..Default::default()
                };
                let _ = client.try_publish_with_properties(
                    topic,
                    QoS::AtLeastOnce,
                    false,
                    payload.clone(),
                    props,
                );
            }
            Ok(Event::Incoming(Packet::Publish(p)))
                if p.topic == reply_topic.as_bytes()
                    && p.properties
                        .as_ref()
                        .and_then(|pr| pr.correlation_data.as_ref())
                        == Some(&correlation) =>
            {
                let from = p.properties.as_ref().and_then(|pr| {
                    pr.user_properties
                        .iter()
                        .find(|(k, _)| k == REPLY_FROM)
                        .map(|(_, v)| v.clone())
                });
                got.push(Answer {
                    payload: p.payload,
                    from,
                });
                match answers {
                    Answers::One => break,
                    Answers::Two if got.len() == 2 => break,
                    _ => {}
                }
            }
            Ok(_) => {}
            Err(e) => {
                return Err(RequestError::Unreachable {
                    broker: broker.clone(),
                    reason: describe(&e),
                })
            }
        }
    }
    if got.is_empty() {
        return Err(RequestError::NoAnswer {
            topic: topic.to_string(),
            within,
        });
    }
    let _ = client.try_disconnect();
    // Let the DISCONNECT go out; the answers are in hand either way.
    let _ = tokio::time::timeout(Duration::from_millis(200), eventloop.poll()).await;
    Ok(got)
}

impl Transport {
    /// Sets up the connection; it is made in the background from
    /// [`Transport::connect`] on, so that the retained state registered
    /// before is all published before `online`. Incoming messages on the
    /// filters go to `inbound`; link changes to the returned watch.
    pub(crate) fn start(
        options: TransportOptions,
        inbound: mpsc::Sender<Inbound>,
    ) -> Result<(Transport, watch::Receiver<Link>), TransportError> {
        let mut mqtt = mqtt_options(&options, &options.client_id)?;
        mqtt.set_manual_acks(true);
        mqtt.set_last_will(LastWill::new(
            &options.status_topic,
            OFFLINE,
            QoS::AtLeastOnce,
            true,
            None,
        ));
        let (client, eventloop) = AsyncClient::new(mqtt, REQUEST_QUEUE);
        let shared = Arc::new(Mutex::new(Shared::new()));
        let publisher = Publisher {
            client,
            shared: Arc::clone(&shared),
            status_topic: options.status_topic.clone().into(),
            wake: Arc::new(tokio::sync::Notify::new()),
            expiry: options.expiry,
        };
        let (link_tx, link_rx) = watch::channel(Link::Down);
        let (stop_tx, stop_rx) = watch::channel(false);
        let (go_tx, go_rx) = tokio::sync::oneshot::channel();
        let loop_publisher = publisher.clone();
        let task = tokio::spawn(async move {
            // Without `connect` (the agent failed before it) there is nothing to do.
            if go_rx.await.is_ok() {
                run_loop(
                    eventloop,
                    loop_publisher,
                    options,
                    inbound,
                    link_tx,
                    stop_rx,
                )
                .await;
            }
        });
        Ok((
            Transport {
                publisher,
                task,
                stop: stop_tx,
                go: Some(go_tx),
            },
            link_rx,
        ))
    }

    /// Starts connecting (and reconnecting) to the broker.
    pub(crate) fn connect(&mut self) {
        if let Some(go) = self.go.take() {
            let _ = go.send(());
        }
    }

    /// A handle for publishing.
    pub(crate) fn publisher(&self) -> Publisher {
        self.publisher.clone()
    }

    /// Publishes `offline`, disconnects cleanly (so the broker drops the last
    /// will) and stops, taking at most `within`.
    pub(crate) async fn shutdown(mut self, within: Duration) {
        // Never connected: the loop ends without starting.
        drop(self.go.take());
        // What the agent said before the stop goes out first (replies, the
        // safe state), as far as the broker takes it in half the time.
        let _ = tokio::time::timeout(within / 2, self.publisher.flush()).await;
        let connected = lock(&self.publisher.shared).link == Link::Up;
        let _ = self.stop.send(true);
        if connected {
            let p = &self.publisher;
            let _ = p
                .client
                .try_publish(&*p.status_topic, QoS::AtLeastOnce, true, OFFLINE);
            let _ = p.client.try_disconnect();
        }
        let mut task = self.task;
        if tokio::time::timeout(within, &mut task).await.is_err() {
            warn!("MQTT did not finish its goodbye in {within:?}; stopping anyway");
            task.abort();
        }
    }
}

impl Publisher {
    /// Publishes retained state: kept, and republished after every reconnection.
    pub(crate) fn retain(&self, topic: &str, payload: impl Into<Bytes>) {
        let payload = payload.into();
        let mut s = lock(&self.shared);
        s.retained.insert(topic.to_string(), payload.clone());
        if s.link == Link::Up {
            s.push(OutKind::Retained {
                topic: topic.to_string(),
                payload,
            });
        }
    }

    /// Publishes every retained topic again (Home Assistant came back).
    pub(crate) fn republish_retained(&self) {
        let mut s = lock(&self.shared);
        if s.link != Link::Up {
            return;
        }
        let all: Vec<(String, Bytes)> = s
            .retained
            .iter()
            .map(|(t, p)| (t.clone(), p.clone()))
            .collect();
        for (topic, payload) in all {
            s.push(OutKind::Retained { topic, payload });
        }
    }

    /// Publishes an event; dropped (and counted) while the broker is away.
    pub(crate) fn event(&self, topic: &str, payload: impl Into<Bytes>) {
        lock(&self.shared).push(OutKind::Event {
            topic: topic.to_string(),
            payload: payload.into(),
        });
    }

    /// Publishes an error report (`<base>/error`): kept while the broker
    /// is away, sent when it is back.
    pub(crate) fn report(&self, topic: &str, payload: impl Into<Bytes>) {
        lock(&self.shared).push(OutKind::Answer {
            topic: topic.to_string(),
            payload: payload.into(),
            props: None,
        });
    }

    /// Answers a command on its MQTT 5 response topic, naming the board (a
    /// command to a group topic is answered by many).
    pub(crate) fn reply(&self, to: &ReplyTo, payload: impl Into<Bytes>) {
        let base = self
            .status_topic
            .strip_suffix(crate::mqtt::topic::state::STATUS)
            .and_then(|b| b.strip_suffix('/'))
            .unwrap_or(&self.status_topic);
        let props = PublishProperties {
            correlation_data: to.correlation.clone(),
            user_properties: vec![(REPLY_FROM.into(), base.into())],
            ..Default::default()
        };
        lock(&self.shared).push(OutKind::Answer {
            topic: to.topic.clone(),
            payload: payload.into(),
            props: Some(props),
        });
    }

    /// Acknowledges a handled command to the broker, after everything it
    /// caused has been published.
    pub(crate) fn ack(&self, ack: Ack) {
        lock(&self.shared).push(OutKind::Ack(ack));
    }

    /// The outbox as the agent loop sees it: whether [`Publisher::flush`]
    /// has anything it can do now, and whether the agent must take no new
    /// command until it has (the outbox holds more than a short batch of
    /// acknowledgements, and the connection task is not itself waiting for
    /// the agent to take a message).
    pub(crate) fn pressure(&self) -> (bool, bool) {
        let s = lock(&self.shared);
        (s.link == Link::Up && !s.outbox.is_empty(), s.backlogged())
    }

    /// Hands the outbox to the connection, waiting while its queue is full,
    /// until the outbox is empty, the link is down, or the connection task
    /// waits for the agent. Cancel-safe: an entry leaves the outbox once the
    /// connection has it.
    pub(crate) async fn flush(&self) {
        loop {
            let next = {
                let s = lock(&self.shared);
                if s.link != Link::Up {
                    return;
                }
                match s.outbox.front() {
                    Some(o) => o.clone(),
                    None => return,
                }
            };
            // Retained state at QoS 0 (a snapshot, republished whole after a
            // reconnection); answers and events at QoS 1. Handed over without
            // waiting: a send given up half-way (to give way below) may have
            // gone out all the same, and would then go out twice.
            let c = &self.client;
            let q = QoS::AtLeastOnce;
            let sent = match next.what {
                OutKind::Retained { topic, payload } => {
                    c.try_publish(topic, QoS::AtMostOnce, true, payload)
                }
                OutKind::Event { topic, payload } => match self.expiry {
                    Some(_) => {
                        let p = expiring(PublishProperties::default(), self.expiry);
                        c.try_publish_with_properties(topic, q, false, payload, p)
                    }
                    // Plain: a 3.1.1 subscriber of rumqttd takes it.
                    None => c.try_publish(topic, q, false, payload),
                },
                OutKind::Answer {
                    topic,
                    payload,
                    props,
                } => match props {
                    // Not handed to a requester that comes back long after.
                    Some(p) => {
                        let p = expiring(p, self.expiry);
                        c.try_publish_with_properties(topic, q, false, payload, p)
                    }
                    None => c.try_publish(topic, q, false, payload),
                },
                OutKind::Ack(ack) => c.try_ack(&ack.packet()),
            };
            if sent.is_ok() {
                lock(&self.shared).sent(next.seq);
                continue;
            }
            // No room in the connection's queue (or the connection task has
            // ended, and the link is about to say so): nothing went out. Try
            // again shortly; give way when the connection task waits for the
            // agent, since only it makes room.
            tokio::select! {
                biased;
                _ = self.wake.notified() => return,
                _ = tokio::time::sleep(ROOM_WAIT) => {}
            }
        }
    }

    /// Events dropped since the last call (offline, or beyond the backlog).
    pub(crate) fn take_dropped_events(&self) -> u64 {
        std::mem::take(&mut lock(&self.shared).dropped)
    }

    /// Publishes retained state at once, from the connection task (which
    /// cannot wait for room in its own queue).
    fn retain_now(&self, topic: &str, payload: Bytes) {
        if let Err(e) = self
            .client
            .try_publish(topic, QoS::AtMostOnce, true, payload)
        {
            warn!(topic, error = %e, "announcement not sent");
        }
    }

    /// After a connection: subscribe, then the retained state, then `online`.
    fn announce(&self, filters: &[String]) {
        let subs: Vec<Filter> = filters
            .iter()
            // Not "no local": links may listen to this device's own topics.
            .map(|f| Filter::new(f.clone(), QoS::AtLeastOnce))
            .collect();
        if !subs.is_empty() {
            if let Err(e) = self.client.try_subscribe_many(subs) {
                warn!(error = %e, "subscribe failed");
            }
        }
        let retained: Vec<(String, Bytes)> = {
            let mut s = lock(&self.shared);
            s.link = Link::Up;
            s.retained
                .iter()
                .map(|(t, p)| (t.clone(), p.clone()))
                .collect()
        };
        // State and discovery first, `online` last: a client that sees
        // `online` and subscribes then finds every retained topic in place.
        for (topic, payload) in retained {
            self.retain_now(&topic, payload);
        }
        self.retain_now(&self.status_topic, Bytes::from_static(ONLINE.as_bytes()));
    }
}

/// Received messages the agent has not taken yet (it was busy).
#[derive(Default)]
struct Held {
    queue: VecDeque<Inbound>,
    /// Their payloads' bytes.
    bytes: usize,
}

impl Held {
    fn push(&mut self, msg: Inbound) {
        self.bytes += msg.payload.len();
        self.queue.push_back(msg);
    }

    fn pop(&mut self) -> Option<Inbound> {
        let msg = self.queue.pop_front()?;
        self.bytes -= msg.payload.len();
        Some(msg)
    }

    fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The oldest message, when more is held than `HELD_BYTES` or
    /// `HELD_MESSAGES` allow.
    fn overflow(&mut self) -> Option<Inbound> {
        if self.bytes > HELD_BYTES || self.queue.len() > HELD_MESSAGES {
            self.pop()
        } else {
            None
        }
    }
}

async fn run_loop(
    mut eventloop: EventLoop,
    publisher: Publisher,
    options: TransportOptions,
    inbound: mpsc::Sender<Inbound>,
    link: watch::Sender<Link>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new(options.backoff_min, options.backoff_max);
    let endpoint = format!("{}:{}", options.host, options.port);
    let mut failures: u32 = 0;
    let mut held = Held::default();
    'poll: loop {
        let stopping = *stop.borrow();
        let event = if held.is_empty() {
            eventloop.poll().await
        } else {
            // Hand a held message over as soon as the agent has room.
            tokio::select! {
                biased;
                room = inbound.reserve() => {
                    let Ok(room) = room else { break 'poll }; // the agent has gone
                    if let Some(msg) = held.pop() {
                        room.send(msg);
                    }
                    continue 'poll;
                }
                event = eventloop.poll() => event,
            }
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                info!(broker = %endpoint, "connected");
                backoff.reset();
                failures = 0;
                if !stopping {
                    publisher.announce(&options.filters);
                    let _ = link.send(Link::Up);
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let Some(msg) = inbound_of(p) else {
                    continue;
                };
                if stopping {
                    continue;
                }
                held.push(msg);
                // The next turn hands held messages over as the agent has
                // room, polling meanwhile (the agent's replies go out only
                // through this loop). Holding too much, it stops reading
                // until the agent takes one, and lets the agent take it even
                // with a backlog of its own.
                if let Some(msg) = held.overflow() {
                    if !hand_over(msg, &publisher, &inbound, &mut stop).await {
                        break 'poll; // the agent has gone
                    }
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) if stopping => break,
            Ok(_) => {}
            Err(e) => {
                lost(&publisher, &link, &endpoint, &e, failures);
                if stopping || *stop.borrow() {
                    break;
                }
                failures = failures.saturating_add(1);
                let delay = backoff.next_delay();
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.changed() => break,
                }
            }
        }
    }
    lock(&publisher.shared).link = Link::Down;
    let _ = link.send(Link::Down);
}

/// Hands `msg` to the agent, waiting for room: rings the agent so that a
/// flush waiting for the connection gives way (otherwise each would wait for
/// the other). Whether the agent is still there.
async fn hand_over(
    msg: Inbound,
    publisher: &Publisher,
    inbound: &mpsc::Sender<Inbound>,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    lock(&publisher.shared).waiting = true;
    publisher.wake.notify_one();
    let sent = tokio::select! {
        sent = inbound.send(msg) => sent.is_ok(),
        _ = stop.changed() => true,
    };
    lock(&publisher.shared).waiting = false;
    sent
}

/// A received PUBLISH as the agent takes it; `None` (logged) for a topic
/// that is not UTF-8.
fn inbound_of(p: Publish) -> Option<Inbound> {
    let Ok(topic) = String::from_utf8(p.topic.to_vec()) else {
        warn!("ignored a message whose topic is not UTF-8");
        return None;
    };
    let reply_to = p.properties.as_ref().and_then(|props| {
        props.response_topic.as_ref().map(|t| ReplyTo {
            topic: t.clone(),
            correlation: props.correlation_data.clone(),
        })
    });
    Some(Inbound {
        ack: Ack::of(&p),
        topic,
        payload: p.payload,
        retained: p.retain,
        reply_to,
    })
}

/// The connection failed (`failures` before in a row): the link is down,
/// said once when it was up, and at powers of two while it cannot connect.
fn lost(
    publisher: &Publisher,
    link: &watch::Sender<Link>,
    endpoint: &str,
    e: &ConnectionError,
    failures: u32,
) {
    let was_up = {
        let mut s = lock(&publisher.shared);
        s.link_lost();
        std::mem::replace(&mut s.link, Link::Down) == Link::Up
    };
    if was_up {
        let _ = link.send(Link::Down);
        warn!(broker = %endpoint, error = %describe(e), "connection lost");
    } else if failures == 0 || failures.is_power_of_two() {
        warn!(broker = %endpoint, error = %describe(e), attempt = failures + 1, "cannot connect");
    }
}

fn describe(e: &ConnectionError) -> String {
    match e {
        ConnectionError::ConnectionRefused(code) => format!("the broker refused us: {code:?}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retained(topic: &str, payload: &'static str) -> OutKind {
        OutKind::Retained {
            topic: topic.into(),
            payload: Bytes::from_static(payload.as_bytes()),
        }
    }

    fn payloads(s: &Shared) -> Vec<String> {
        s.outbox
            .iter()
            .map(|o| match &o.what {
                OutKind::Retained { payload, .. } | OutKind::Event { payload, .. } => {
                    String::from_utf8_lossy(payload).into_owned()
                }
                other => format!("{other:?}"),
            })
            .collect()
    }

    /// A publisher on a connection queue of one request that the test reads.
    fn publisher_on(tx: flume::Sender<rumqttc::v5::Request>) -> Publisher {
        let mut shared = Shared::new();
        shared.link = Link::Up;
        Publisher {
            client: AsyncClient::from_senders(tx),
            shared: Arc::new(Mutex::new(shared)),
            status_topic: "edge/t/status".into(),
            wake: Arc::new(tokio::sync::Notify::new()),
            expiry: None,
        }
    }

    /// Polls `fut` once.
    async fn poll_once<F: std::future::Future>(fut: &mut std::pin::Pin<&mut F>) {
        std::future::poll_fn(|cx| {
            let _ = fut.as_mut().poll(cx);
            std::task::Poll::Ready(())
        })
        .await;
    }

    #[tokio::test]
    async fn an_answer_is_handed_over_once_when_the_flush_gives_way() {
        let (tx, rx) = flume::bounded(1);
        let p = publisher_on(tx);
        let to = |n: &str| ReplyTo {
            topic: "reply/t".into(),
            correlation: Some(Bytes::from(n.to_string())),
        };
        p.reply(&to("a"), "{}");
        p.reply(&to("b"), "{}");
        {
            let flush = p.flush();
            let mut flush = std::pin::pin!(flush);
            // A fills the queue; B waits for room.
            poll_once(&mut flush).await;
            // The connection takes A, which makes room for B, and then waits
            // for the agent, which rings the flush to give way before it
            // sees B went.
            assert!(rx.try_recv().is_ok());
            p.wake.notify_one();
            poll_once(&mut flush).await;
        }
        // The next flush finishes the outbox; B reaches the connection once.
        let rest = p.flush();
        let mut rest = std::pin::pin!(rest);
        let mut handed = Vec::new();
        for _ in 0..100 {
            poll_once(&mut rest).await;
            handed.extend(rx.try_iter().filter_map(|r| match r {
                rumqttc::v5::Request::Publish(p) => p.properties?.correlation_data,
                _ => None,
            }));
            if lock(&p.shared).outbox.is_empty() {
                break;
            }
            tokio::time::sleep(ROOM_WAIT).await;
        }
        assert!(lock(&p.shared).outbox.is_empty());
        assert_eq!(
            handed,
            [Bytes::from("b")],
            "B handed to the connection once"
        );
    }

    #[test]
    fn a_retained_update_sent_while_it_is_superseded_is_sent_again() {
        let mut s = Shared::new();
        s.link = Link::Up;
        s.push(retained("edge/t/display", "A"));
        s.push(retained("edge/t/led/left", "L"));
        // A flush takes the front (A) and hands it over; meanwhile B
        // supersedes it in place.
        let sending = s.outbox.front().map(|o| o.seq).unwrap();
        s.push(retained("edge/t/display", "B"));
        assert_eq!(payloads(&s), ["B", "L"]);
        s.sent(sending);
        assert_eq!(payloads(&s), ["B", "L"], "B must still go out");
        let b = s.outbox.front().map(|o| o.seq).unwrap();
        s.sent(b);
        assert_eq!(payloads(&s), ["L"]);
    }

    #[test]
    fn acknowledgements_alone_wait_for_a_batch() {
        let mut s = Shared::new();
        s.link = Link::Up;
        let ack = |pkid| {
            OutKind::Ack(Ack {
                pkid,
                qos: QoS::AtLeastOnce,
            })
        };
        for pkid in 1..ACK_BATCH as u16 {
            s.push(ack(pkid));
            assert!(!s.backlogged(), "{pkid} acknowledgements");
        }
        s.push(ack(ACK_BATCH as u16));
        assert!(s.backlogged(), "a whole batch");
        let mut s = Shared::new();
        s.link = Link::Up;
        s.push(ack(1));
        s.push(retained("edge/t/led/left", "L"));
        assert!(s.backlogged(), "state waits: the next command waits too");
        s.waiting = true;
        assert!(!s.backlogged(), "the connection task waits for the agent");
    }

    #[test]
    fn events_are_dropped_offline_and_beyond_the_backlog_and_counted() {
        let mut s = Shared::new();
        let event = || OutKind::Event {
            topic: "edge/t/button/event".into(),
            payload: Bytes::from_static(b"{}"),
        };
        s.push(event());
        assert_eq!((s.outbox.len(), s.dropped), (0, 1));
        s.link = Link::Up;
        for _ in 0..EVENT_BACKLOG + 5 {
            s.push(event());
        }
        assert_eq!(
            (s.outbox.len(), s.events, s.dropped),
            (EVENT_BACKLOG, EVENT_BACKLOG, 6)
        );
        let front = s.outbox.front().map(|o| o.seq).unwrap();
        s.sent(front);
        assert_eq!(s.events, EVENT_BACKLOG - 1);
        s.push(OutKind::Ack(Ack {
            pkid: 7,
            qos: QoS::AtLeastOnce,
        }));
        s.link_lost();
        assert_eq!(s.outbox.len(), 1, "only the acknowledgement is kept");
        assert_eq!((s.events, s.dropped), (0, 6 + EVENT_BACKLOG as u64 - 1));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let d: Vec<u64> = (0..6).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(d, vec![100, 200, 400, 800, 1000, 1000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }
}
