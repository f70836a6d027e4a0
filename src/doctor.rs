//! `edge-agent doctor`: checks the configured broker the way this device
//! uses it and says what is wrong, one finding a line.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::{Filter, Packet, PubAckReason, Publish, SubscribeReasonCode};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop};
use tokio::time::Instant;

use crate::config::Settings;
use crate::mqtt::topic::{state, Topics, PROBE};
use crate::mqtt::transport::{one_off, TransportOptions};

/// How long a message the doctor sent may take to come back.
const ROUND_TRIP: Duration = Duration::from_secs(3);

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    /// As it should be.
    Ok,
    /// Worth knowing; nothing wrong.
    Note,
    /// Works, but is wrong (an open door).
    Warning,
    /// Does not work.
    Error,
}

/// One line of the doctor's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finding {
    /// How much it matters.
    pub level: Level,
    /// What was found, in words.
    pub text: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            Level::Ok => "ok",
            Level::Note => "note",
            Level::Warning => "warning",
            Level::Error => "error",
        };
        write!(f, "{level:<7} {}", self.text)
    }
}

/// Every finding, and the summary line that ends the report.
#[derive(Debug, Default)]
pub(crate) struct Report {
    /// In the order found.
    pub findings: Vec<Finding>,
}

impl Report {
    fn add(&mut self, level: Level, text: impl Into<String>) {
        self.findings.push(Finding {
            level,
            text: text.into(),
        });
    }

    fn count(&self, level: Level) -> usize {
        self.findings.iter().filter(|f| f.level == level).count()
    }

    /// Whether nothing is wrong: no warning, no error.
    pub(crate) fn healthy(&self) -> bool {
        self.count(Level::Warning) + self.count(Level::Error) == 0
    }

    /// The report as printed.
    pub(crate) fn text(&self) -> String {
        let mut out: String = self.findings.iter().map(|f| format!("{f}\n")).collect();
        let (w, e) = (self.count(Level::Warning), self.count(Level::Error));
        if self.healthy() {
            out.push_str("doctor: nothing wrong\n");
        } else {
            let plural =
                |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
            out.push_str(&format!(
                "doctor: {}, {}\n",
                plural(e, "error"),
                plural(w, "warning")
            ));
        }
        out
    }
}

/// A connection of the doctor's, with the messages it has not looked at.
struct Probe {
    client: AsyncClient,
    eventloop: EventLoop,
    /// Messages that came while it waited for something else (a broker may
    /// send a message back before its acknowledgement of it).
    unread: VecDeque<Packet>,
}

/// The most messages kept unread.
const UNREAD: usize = 1000;

impl Probe {
    fn new((client, eventloop): (AsyncClient, EventLoop)) -> Probe {
        Probe {
            client,
            eventloop,
            unread: VecDeque::new(),
        }
    }

    /// The first message or acknowledgement `pick` takes, of those unread
    /// and then those that come within `within`; `Err` when the connection
    /// fails.
    async fn until<T>(
        &mut self,
        within: Duration,
        mut pick: impl FnMut(&Packet) -> Option<T>,
    ) -> Result<Option<T>, String> {
        if let Some(i) = self.unread.iter().position(|p| pick(p).is_some()) {
            return Ok(self.unread.remove(i).and_then(|p| pick(&p)));
        }
        let deadline = Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.eventloop.poll()).await {
                Err(_) => return Ok(None),
                Ok(Err(e)) => return Err(e.to_string()),
                Ok(Ok(Event::Incoming(p))) => {
                    if let Some(t) = pick(&p) {
                        return Ok(Some(t));
                    }
                    if matches!(p, Packet::Publish(_)) && self.unread.len() < UNREAD {
                        self.unread.push_back(p);
                    }
                }
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Publishes at QoS 1 and waits for the broker's answer: `Err` with its
    /// reason when it refused.
    async fn publish(&mut self, topic: &str, payload: Bytes, retain: bool) -> Result<(), String> {
        self.client
            .try_publish(topic, QoS::AtLeastOnce, retain, payload)
            .map_err(|e| e.to_string())?;
        let reason = self
            .until(ROUND_TRIP, |p| match p {
                Packet::PubAck(a) => Some(a.reason),
                _ => None,
            })
            .await?;
        match reason {
            Some(PubAckReason::Success | PubAckReason::NoMatchingSubscribers) => Ok(()),
            Some(other) => Err(format!("the broker refused it: {other:?}")),
            None => Err(format!("no acknowledgement within {ROUND_TRIP:?}")),
        }
    }

    async fn stop(mut self) {
        let _ = self.client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_millis(200), self.eventloop.poll()).await;
    }
}

/// A message on `topic` with `payload` (and, if asked, marked retained).
fn is(p: &Packet, topic: &str, payload: &[u8], retained: Option<bool>) -> bool {
    matches!(p, Packet::Publish(Publish { topic: t, payload: b, retain, .. })
        if t == topic.as_bytes() && b == payload && retained.is_none_or(|r| r == *retain))
}

/// Something only this run of the doctor writes.
fn nonce(what: &str) -> Bytes {
    Bytes::from(format!(
        "edge-agent doctor {what} {}",
        crate::mqtt::transport::nonce()
    ))
}

/// Runs every check against the broker of `settings`.
pub(crate) async fn examine(settings: &Settings, within: Duration) -> Report {
    let mut report = Report::default();
    let options = TransportOptions::from_settings(settings, Vec::new());
    let broker = match &settings.broker {
        Some(b) => format!("the embedded broker's MQTT 5 listener ({})", b.listen_v5),
        None => format!("{} with MQTT 5", settings.endpoint),
    };
    let t0 = Instant::now();
    let mut probe = match one_off(&options, "doctor", false, within).await {
        Ok(c) => Probe::new(c),
        Err(e) => {
            let hint = if settings.broker.is_some() {
                " (the embedded broker runs inside the agent: is it running?)"
            } else {
                ""
            };
            report.add(Level::Error, format!("cannot connect: {e}{hint}"));
            return report;
        }
    };
    let who = match &settings.credentials {
        Some((user, _)) => format!("as {user}"),
        None => "without credentials".into(),
    };
    report.add(
        Level::Ok,
        format!(
            "connected to {broker} {who} in {} ms",
            t0.elapsed().as_millis()
        ),
    );
    if let Err(e) = check(settings, &options, &mut probe, &mut report).await {
        report.add(Level::Error, format!("lost the broker: {e}"));
    }
    probe.stop().await;
    report
}

async fn check(
    settings: &Settings,
    options: &TransportOptions,
    probe: &mut Probe,
    report: &mut Report,
) -> Result<(), String> {
    let c = &settings.config;
    let topics = Topics::new(settings.base_topic.clone(), c.verbs())
        .with_groups(settings.group_topics.clone());
    let record = topics.at(state::DOCTOR);
    let command = topics.at(PROBE);
    let status = topics.at(state::STATUS);

    // The agent's own subscriptions, and what the doctor reads back.
    let mut filters = topics.filters();
    filters.extend([record.clone(), status.clone()]);
    let subs: Vec<Filter> = filters
        .iter()
        .map(|f| Filter::new(f.clone(), QoS::AtLeastOnce))
        .collect();
    probe
        .client
        .try_subscribe_many(subs)
        .map_err(|e| e.to_string())?;
    let codes = probe
        .until(ROUND_TRIP, |p| match p {
            Packet::SubAck(s) => Some(s.return_codes.clone()),
            _ => None,
        })
        .await?
        .unwrap_or_default();
    let refused: Vec<String> = filters
        .iter()
        .zip(
            codes
                .iter()
                .chain(std::iter::repeat(&SubscribeReasonCode::Unspecified)),
        )
        .filter(|(_, c)| !matches!(c, SubscribeReasonCode::Success(_)))
        .map(|(f, c)| format!("{f} ({c:?})"))
        .collect();
    if refused.is_empty() {
        report.add(
            Level::Ok,
            format!(
                "subscribed to this device's {} command filters",
                filters.len() - 2
            ),
        );
    } else {
        report.add(
            Level::Error,
            format!("the broker refused subscriptions: {}", refused.join(", ")),
        );
    }

    // The agent's state, retained: its last word on this broker.
    let seen = probe
        .until(Duration::from_millis(500), |p| match p {
            Packet::Publish(m) if m.topic == status.as_bytes() => {
                Some(String::from_utf8_lossy(&m.payload).into_owned())
            }
            _ => None,
        })
        .await?;
    match seen.as_deref() {
        Some("online") => report.add(Level::Note, format!("the agent is online ({status})")),
        Some(other) => report.add(Level::Note, format!("the agent is {other} ({status})")),
        None => report.add(
            Level::Note,
            format!("the agent has not been on this broker yet (nothing retained on {status})"),
        ),
    }

    // A retained round trip: published, heard live, then kept for a new
    // subscription, then cleared.
    let t0 = Instant::now();
    let mark = nonce("retained");
    match probe.publish(&record, mark.clone(), true).await {
        Err(e) => report.add(
            Level::Error,
            format!("cannot publish retained on {record}: {e}"),
        ),
        Ok(()) => {
            let live = probe
                .until(ROUND_TRIP, |p| is(p, &record, &mark, None).then_some(()))
                .await?;
            // A new subscription gets what the broker kept.
            let _ = probe.client.try_unsubscribe(&record);
            probe
                .until(ROUND_TRIP, |p| {
                    matches!(p, Packet::UnsubAck(_)).then_some(())
                })
                .await?;
            let _ = probe.client.try_subscribe(&record, QoS::AtLeastOnce);
            let kept = probe
                .until(ROUND_TRIP, |p| {
                    is(p, &record, &mark, Some(true)).then_some(())
                })
                .await?;
            match (live, kept) {
                (Some(()), Some(())) => report.add(
                    Level::Ok,
                    format!(
                        "retained round trip on {record} in {} ms",
                        t0.elapsed().as_millis()
                    ),
                ),
                (None, _) => report.add(
                    Level::Error,
                    format!("a message on {record} did not come back within {ROUND_TRIP:?}"),
                ),
                (Some(()), None) => report.add(
                    Level::Error,
                    format!("the broker does not keep retained messages ({record}): the board's state and Home Assistant's discovery need them"),
                ),
            }
            probe.publish(&record, Bytes::new(), true).await.ok();
        }
    }

    // A command reaches the device: published on a command topic, it comes
    // back through the agent's own filters (the agent ignores the probe).
    let t0 = Instant::now();
    let mark = nonce("command");
    match probe.publish(&command, mark.clone(), false).await {
        Err(e) => report.add(
            Level::Error,
            format!("cannot publish on this device's command topic {command}: {e}"),
        ),
        Ok(()) => {
            let back = probe
                .until(ROUND_TRIP, |p| is(p, &command, &mark, None).then_some(()))
                .await?;
            match back {
                Some(()) => report.add(
                    Level::Ok,
                    format!(
                        "a command on {command} reached this device's subscriptions in {} ms",
                        t0.elapsed().as_millis()
                    ),
                ),
                None => report.add(
                    Level::Error,
                    format!("a command on {command} did not reach this device's subscriptions within {ROUND_TRIP:?}"),
                ),
            }
        }
    }

    anonymous(settings, options, probe, &command, report).await?;
    home_assistant(settings, probe, report).await
}

/// Whether a client without credentials could command the device.
async fn anonymous(
    settings: &Settings,
    options: &TransportOptions,
    probe: &mut Probe,
    command: &str,
    report: &mut Report,
) -> Result<(), String> {
    let pattern = topics_pattern(&settings.base_topic);
    if settings.credentials.is_none() {
        let local = settings.broker.is_some()
            || matches!(
                settings.endpoint.host.as_str(),
                "127.0.0.1" | "localhost" | "::1"
            );
        if local {
            report.add(
                Level::Ok,
                format!("no credentials, on a broker of this host only ({}): only its own clients can write {pattern}", settings.endpoint),
            );
        } else {
            report.add(
                Level::Warning,
                format!("this device uses no credentials, so any client that reaches {} can write {pattern} (give the broker users and an ACL; mqtt.username, mqtt.password_file)", settings.endpoint),
            );
        }
        return Ok(());
    }
    let stranger = match one_off(options, "doctor-anon", true, ROUND_TRIP).await {
        Ok(c) => Probe::new(c),
        Err(_) => {
            report.add(Level::Ok, "the broker refuses clients without credentials");
            return Ok(());
        }
    };
    let mut stranger = stranger;
    let mark = nonce("anonymous");
    let sent = stranger.publish(command, mark.clone(), false).await;
    stranger.stop().await;
    let heard = probe
        .until(ROUND_TRIP, |p| is(p, command, &mark, None).then_some(()))
        .await?;
    match (sent, heard) {
        (_, Some(())) => report.add(
            Level::Warning,
            format!("a client without credentials could write {pattern}: anyone who reaches the broker can command this board (allow_anonymous false, or an acl_file that gives anonymous clients no write access)"),
        ),
        (Err(e), None) => report.add(
            Level::Ok,
            format!("a client without credentials connects but cannot write {pattern} ({e})"),
        ),
        (Ok(()), None) => report.add(
            Level::Ok,
            format!("a client without credentials connects but what it writes on {pattern} is not delivered"),
        ),
    }
    Ok(())
}

/// `<base>/+/set`, the form of this device's command topics.
fn topics_pattern(base: &str) -> String {
    format!("{base}/+/set")
}

/// What is retained below Home Assistant's discovery prefix.
async fn home_assistant(
    settings: &Settings,
    probe: &mut Probe,
    report: &mut Report,
) -> Result<(), String> {
    let ha = &settings.config.homeassistant;
    if !ha.enabled {
        report.add(
            Level::Note,
            "Home Assistant discovery is off (homeassistant.enabled)",
        );
        return Ok(());
    }
    let prefix = &ha.discovery_prefix;
    let below = format!("{prefix}/#");
    let _ = probe.client.try_subscribe(&below, QoS::AtMostOnce);
    let mine = format!("/{}/", settings.device_id);
    let (mut own, mut others, mut birth) = (0, 0, None);
    let status = format!("{prefix}/status");
    let _ = probe
        .until(Duration::from_millis(800), |p| {
            if let Packet::Publish(m) = p {
                let topic = String::from_utf8_lossy(&m.topic);
                if topic == status {
                    birth = Some(String::from_utf8_lossy(&m.payload).into_owned());
                } else if topic.ends_with("/config") && topic.contains(&mine) {
                    own += 1;
                } else if topic.ends_with("/config") {
                    others += 1;
                }
            }
            None::<()>
        })
        .await?;
    let birth = match birth {
        Some(b) => format!("{status} is {b}"),
        None => format!(
            "nothing retained on {status} (Home Assistant says online there when it starts)"
        ),
    };
    if own + others == 0 {
        report.add(
            Level::Note,
            format!("nothing retained below {prefix}/: Home Assistant finds this device once the agent has announced it; {birth}"),
        );
    } else {
        report.add(
            Level::Note,
            format!("Home Assistant's prefix {prefix}/ holds {own} discovery configs of this device and {others} of others; {birth}"),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_is_healthy_without_warnings_and_errors() {
        let mut r = Report::default();
        r.add(Level::Ok, "connected");
        r.add(Level::Note, "the agent is online");
        assert!(r.healthy());
        assert!(
            r.text().ends_with("doctor: nothing wrong\n"),
            "{}",
            r.text()
        );
        assert!(r.text().starts_with("ok      connected\n"), "{}", r.text());
        r.add(Level::Warning, "open");
        assert!(!r.healthy());
        assert!(
            r.text().ends_with("doctor: 0 errors, 1 warning\n"),
            "{}",
            r.text()
        );
        r.add(Level::Error, "closed");
        r.add(Level::Error, "closed again");
        assert!(
            r.text().ends_with("doctor: 2 errors, 1 warning\n"),
            "{}",
            r.text()
        );
    }
}
