//! The two PWM LEDs and the tilt that drives them.

pub(crate) mod command;
pub(crate) mod config;
mod device;

pub use device::*;

use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;
use tracing::info;

use self::command::{parse_led, parse_tilt, LedSet, Motion, Tilt};
use crate::agent::AgentError;
use crate::hardware::HardwareError;
use crate::mqtt::topic::{state, Verb, LED_NAMES};
use crate::parts::input::{text, CommandError};
use crate::parts::{Device, Entity, Event, Now, Out, Start};
use crate::quote::clip;

/// The LEDs as a part: the group and its safe value.
pub(crate) struct Leds {
    group: LedGroup,
    /// Every LED's duty when safe, 0..=1 (`safety.led_percent`).
    safe_duty: f64,
}

/// A command for the LEDs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum LedsCommand {
    /// Set one of the LEDs.
    Set {
        /// The LED's name (`left`, `right`).
        name: String,
        /// What to do with it.
        set: LedSet,
        /// How it gets there (`transition`, `flash`).
        motion: Option<Motion>,
    },
    /// A gravity vector from the phone; its y drives the LEDs.
    Tilt(Tilt),
}

impl Leds {
    /// Every LED's state.
    fn all(&mut self, now: &Now) -> Vec<Out> {
        self.group.published(now.at);
        self.group
            .states()
            .map(|(name, s)| Out::state(state::led(name), s.payload()))
            .collect()
    }
}

/// The verbs of the topic table the part takes.
const VERBS: &[Verb] = &[Verb::Led, Verb::Tilt];

impl Device for Leds {
    type Command = LedsCommand;

    fn start(start: &mut Start<'_>) -> Result<Option<Self>, AgentError> {
        let channels: Vec<_> = LED_NAMES
            .iter()
            .filter_map(|&n| Some((n.to_string(), start.hardware.pwm(&state::led(n))?)))
            .collect();
        if channels.is_empty() {
            return Ok(None);
        }
        let c = &start.settings.config;
        let timing = LedTiming {
            write_interval: Duration::from_millis(c.tilt.write_interval_ms),
            tilt_timeout: Duration::from_millis(c.tilt.timeout_ms),
            publish_interval: Duration::from_millis(c.tilt.state_interval_ms),
        };
        let safe_duty = start.settings.safety.led_duty;
        let errors = start.failures("led");
        Ok(Some(Leds {
            group: LedGroup::new(channels, timing, errors),
            safe_duty,
        }))
    }

    fn verbs(&self) -> &'static [Verb] {
        VERBS
    }

    fn parse(
        &self,
        verb: Verb,
        name: Option<&str>,
        payload: &[u8],
    ) -> Result<LedsCommand, CommandError> {
        if verb == Verb::Tilt {
            return parse_tilt(payload).map(LedsCommand::Tilt);
        }
        let name = name.unwrap_or_default();
        let names = self.group.names();
        if !names.iter().any(|n| n == name) {
            return Err(CommandError::BadPayload(format!(
                "there is no LED called {:?}; the LEDs are {}",
                clip(name, 32),
                names.join(", ")
            )));
        }
        let (set, motion) = parse_led(text(payload)?)?;
        Ok(LedsCommand::Set {
            name: name.to_string(),
            set,
            motion,
        })
    }

    fn execute(&mut self, cmd: LedsCommand, now: &Now) -> Result<Vec<Out>, CommandError> {
        match cmd {
            LedsCommand::Set { name, set, motion } => {
                if !self.group.command(&name, set, motion, now.at) {
                    return Err(CommandError::Disabled(format!("LED {name}")));
                }
                // A command to one LED changes no other (the topic table
                // says so to the link check): only its state goes out.
                Ok(self
                    .group
                    .states()
                    .filter(|(n, _)| *n == name)
                    .map(|(n, s)| Out::state(state::led(n), s.payload()))
                    .collect())
            }
            LedsCommand::Tilt(t) => {
                // Its state goes out through the rate-limited publish timer.
                self.group.tilt(t, now.at);
                Ok(Vec::new())
            }
        }
    }

    fn states(&mut self, now: &Now) -> Vec<Out> {
        self.all(now)
    }

    fn react(&mut self, event: &Event, now: &Now) -> Vec<Out> {
        match event {
            // Nobody can steer them while the broker is away.
            Event::Offline if self.group.tilting() => {
                self.group.off();
                self.all(now)
            }
            Event::Identify => {
                let flash = Some(Motion::Flash(Duration::from_secs(2)));
                let keep = LedSet {
                    state: None,
                    brightness: None,
                };
                for name in LED_NAMES {
                    self.group.command(name, keep, flash, now.at);
                }
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    fn deadline(&self, now: Instant) -> Option<Instant> {
        self.group.next_timer(now).map(|(at, _)| at)
    }

    fn timer(&mut self, now: &Now) -> Vec<Out> {
        match self.group.next_timer(now.at) {
            Some((at, t)) if at <= now.at => {
                if t == LedTimer::TiltTimeout {
                    info!(
                        "no tilt for {} ms: LEDs off",
                        self.group.tilt_timeout().as_millis()
                    );
                }
                self.group.fire(t, now.at);
                if t == LedTimer::Motion {
                    // The state went out with the command: it is the end state.
                    return Vec::new();
                }
                self.all(now)
            }
            _ => Vec::new(),
        }
    }

    fn go_safe(&mut self, now: &Now) -> Vec<Out> {
        self.group.safe(self.safe_duty);
        self.all(now)
    }

    async fn stop(mut self, now: Now) -> (Vec<Out>, Result<(), HardwareError>) {
        self.group.safe(self.safe_duty);
        let states = self.all(&now);
        // The writer's last act is to write the safe state; it stops after that.
        self.group
            .finish(self.safe_duty, Duration::from_millis(200))
            .await;
        (states, Ok(()))
    }
}

/// The LEDs' Home Assistant entities: a dimmable JSON light each.
pub(crate) fn entities(enabled: bool) -> Vec<Entity> {
    LED_NAMES
        .iter()
        .map(|&name| Entity {
            component: "light",
            object: format!("led_{name}"),
            name: format!("LED {name}"),
            enabled,
            command: Some((Verb::Led, name)),
            state: Some(state::led(name)),
            fields: json!({
                "schema": "json",
                "brightness": true,
                "brightness_scale": 255,
                // No color_mode: deprecated in Home Assistant 2024.3, refused since
                // 2025.3 (earlier versions wanted it beside supported_color_modes).
                "supported_color_modes": ["brightness"],
                "icon": "mdi:led-on",
            }),
            ..Entity::default()
        })
        .collect()
}
