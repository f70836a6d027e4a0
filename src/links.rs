//! Links (contract §6): MQTT messages, from this device or another, turned
//! into local commands. Each link is rate-limited so that a storm (or a loop
//! through other devices, which no config check can see) is cut off.

use tokio::time::Instant;

use crate::config::LinkConfig;
use crate::mqtt::topic::matches;
use crate::rate::PerSecond;

/// A command a link asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Trigger {
    /// Which link (its index in the config).
    pub link: usize,
    /// The full command topic, `<base>/<do>`.
    pub topic: String,
    /// The payload to hand to the command.
    pub payload: Vec<u8>,
}

/// What matching a message gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fired {
    /// A command to carry out.
    Run(Trigger),
    /// A link over its rate; the message was dropped for it.
    Dropped {
        /// Which link.
        link: usize,
        /// Its limit per second.
        limit: u32,
    },
}

struct Link {
    config: LinkConfig,
    budget: PerSecond,
}

/// The configured links.
pub(crate) struct Links {
    base: String,
    links: Vec<Link>,
}

impl Links {
    /// Links for the device whose topics are below `base`.
    pub(crate) fn new(base: &str, configs: &[LinkConfig]) -> Self {
        let now = Instant::now();
        Links {
            base: base.to_string(),
            links: configs
                .iter()
                .map(|c| Link {
                    config: c.clone(),
                    budget: PerSecond::new(c.max_per_second, now),
                })
                .collect(),
        }
    }

    /// The filters the links listen on (this device's own topics too).
    pub(crate) fn filters(&self) -> Vec<String> {
        let mut f: Vec<String> = self.links.iter().map(|l| l.config.on.clone()).collect();
        f.sort();
        f.dedup();
        f
    }

    /// The commands `topic` triggers now, with rate limits applied. A
    /// `retained` message (one the broker hands over on subscribing, as after
    /// every reconnection) fires only the links that ask for it.
    pub(crate) fn fire(
        &mut self,
        topic: &str,
        payload: &[u8],
        retained: bool,
        now: Instant,
    ) -> Vec<Fired> {
        let mut out = Vec::new();
        for (i, l) in self.links.iter_mut().enumerate() {
            if !matches(&l.config.on, topic) || (retained && !l.config.retained) {
                continue;
            }
            if !l.budget.admit(now) {
                out.push(Fired::Dropped {
                    link: i,
                    limit: l.budget.limit(),
                });
                continue;
            }
            out.push(Fired::Run(Trigger {
                link: i,
                topic: format!("{}/{}", self.base, l.config.command),
                payload: l
                    .config
                    .payload
                    .as_ref()
                    .map_or_else(|| payload.to_vec(), |p| p.as_bytes().to_vec()),
            }));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Duration;

    fn link(on: &str, command: &str, payload: Option<&str>, rate: u32) -> LinkConfig {
        LinkConfig {
            on: on.into(),
            command: command.into(),
            payload: payload.map(Into::into),
            max_per_second: rate,
            retained: false,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn links_fire_with_fixed_or_incoming_payloads_and_a_rate_limit() {
        let mut l = Links::new(
            "edge/b",
            &[
                link("edge/+/button/event", "matrix/set", Some("smiley"), 2),
                link("edge/b/clock/tick", "buzzer/set", None, 10),
            ],
        );
        assert_eq!(
            l.filters(),
            vec![
                "edge/+/button/event".to_string(),
                "edge/b/clock/tick".to_string()
            ]
        );
        let t = Instant::now();
        let fired = l.fire("edge/a/button/event", b"{}", false, t);
        assert_eq!(
            fired,
            vec![Fired::Run(Trigger {
                link: 0,
                topic: "edge/b/matrix/set".into(),
                payload: b"smiley".to_vec()
            })]
        );
        assert_eq!(
            l.fire("edge/b/clock/tick", b"ON", false, t)[0],
            Fired::Run(Trigger {
                link: 1,
                topic: "edge/b/buzzer/set".into(),
                payload: b"ON".to_vec()
            })
        );
        l.fire("edge/a/button/event", b"{}", false, t);
        assert_eq!(
            l.fire("edge/a/button/event", b"{}", false, t),
            vec![Fired::Dropped { link: 0, limit: 2 }]
        );
        // A second later it may fire again.
        assert!(matches!(
            l.fire(
                "edge/a/button/event",
                b"{}",
                false,
                t + Duration::from_secs(1)
            )[0],
            Fired::Run(_)
        ));
        assert!(l.fire("edge/a/other", b"", false, t).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_retained_message_fires_only_the_links_that_ask_for_it() {
        let mut asks = link("edge/a/display", "matrix/set", Some("smiley"), 10);
        asks.retained = true;
        let mut l = Links::new(
            "edge/b",
            &[link("edge/a/display", "buzzer/set", Some("ON"), 10), asks],
        );
        let t = Instant::now();
        let links_fired = |f: Vec<Fired>| {
            f.iter()
                .map(|f| match f {
                    Fired::Run(t) => t.link,
                    Fired::Dropped { link, .. } => *link,
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(links_fired(l.fire("edge/a/display", b"{}", true, t)), [1]);
        assert_eq!(
            links_fired(l.fire("edge/a/display", b"{}", false, t)),
            [0, 1]
        );
    }
}
