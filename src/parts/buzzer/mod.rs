//! The buzzer: on, off, and beeps of a given length; tunes in RTTTL.

pub(crate) mod command;
pub(crate) mod config;
mod device;
pub mod rtttl;
pub mod tune;

pub use device::*;

use serde_json::json;
use tokio::time::Instant;
use tracing::warn;

use self::command::{parse_buzzer, BuzzerSet};
use crate::agent::AgentError;
use crate::hardware::HardwareError;
use crate::mqtt::topic::{state, Verb};
use crate::parts::input::{text, CommandError};
use crate::parts::{Device, Entity, Event, Now, Out, Start};

/// The verbs of the topic table the part takes.
const VERBS: &[Verb] = &[Verb::Buzzer];

impl Device for Buzzer {
    type Command = BuzzerSet;

    fn start(start: &mut Start<'_>) -> Result<Option<Self>, AgentError> {
        let Some(channel) = start.hardware.pwm(state::BUZZER) else {
            return Ok(None);
        };
        let c = &start.settings.config.buzzer;
        let mut buzzer = Buzzer::new(channel, c.tone_hz > 0.0)?;
        buzzer.max_beep_ms = c.max_beep_ms;
        Ok(Some(buzzer))
    }

    fn verbs(&self) -> &'static [Verb] {
        VERBS
    }

    fn parse(&self, _: Verb, _: Option<&str>, payload: &[u8]) -> Result<BuzzerSet, CommandError> {
        parse_buzzer(text(payload)?, self.max_beep_ms)
    }

    fn execute(&mut self, set: BuzzerSet, now: &Now) -> Result<Vec<Out>, CommandError> {
        self.set(set, now.at).map_err(CommandError::refused)?;
        Ok(self.states(now))
    }

    fn states(&mut self, _: &Now) -> Vec<Out> {
        vec![Out::state(state::BUZZER, self.payload())]
    }

    fn react(&mut self, event: &Event, now: &Now) -> Vec<Out> {
        match event {
            // A beep, unless it sounds already.
            Event::Identify if !self.is_on() => match self.set(BuzzerSet::Beep(200), now.at) {
                Ok(()) => self.states(now),
                Err(e) => {
                    warn!(error = %e, "could not sound the buzzer");
                    Vec::new()
                }
            },
            _ => Vec::new(),
        }
    }

    fn deadline(&self, _: Instant) -> Option<Instant> {
        self.beep_ends()
    }

    fn timer(&mut self, now: &Now) -> Vec<Out> {
        self.silence();
        self.states(now)
    }

    fn go_safe(&mut self, now: &Now) -> Vec<Out> {
        self.silence();
        self.states(now)
    }

    async fn stop(mut self, now: Now) -> (Vec<Out>, Result<(), HardwareError>) {
        let off = self.off();
        if let Err(e) = &off {
            warn!(error = %e, "could not silence the buzzer");
        }
        (self.states(&now), off)
    }
}

impl Buzzer {
    /// Silences it, saying so when the hardware refuses.
    fn silence(&mut self) {
        if let Err(e) = self.off() {
            warn!(error = %e, "could not silence the buzzer");
        }
    }
}

/// The buzzer's Home Assistant entities: a siren (on, off, on for a
/// duration), and the removal of the switch earlier versions announced.
pub(crate) fn entities(enabled: bool) -> Vec<Entity> {
    let siren = Entity {
        component: "siren",
        object: "buzzer".into(),
        name: "Buzzer".into(),
        enabled,
        command: Some((Verb::Buzzer, "")),
        state: Some(state::BUZZER.into()),
        fields: json!({
            "payload_on": "ON",
            "payload_off": "OFF",
            "state_on": "ON",
            "state_off": "OFF",
            "support_duration": true,
            "support_volume_set": false,
            "icon": "mdi:bullhorn",
        }),
        ..Entity::default()
    };
    let old_switch = Entity {
        component: "switch",
        object: "buzzer".into(),
        enabled: false,
        ..Entity::default()
    };
    vec![siren, old_switch]
}
