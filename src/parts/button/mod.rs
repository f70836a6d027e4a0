//! The button: debounced presses, double and long presses.

pub(crate) mod config;
mod device;

pub use device::*;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use serde_json::json;

use crate::agent::AgentError;
use crate::hardware::{HardwareError, InputEdges};
use crate::mqtt::topic::{state, Verb};
use crate::parts::input::CommandError;
use crate::parts::{Device, Entity, Event, Now, Out, Start};

/// The most events kept while the broker is away.
pub(crate) const KEPT_OFFLINE: usize = 100;

/// The button as a part: its input, whose watcher reports its events (a
/// real pin's interrupt ends with the input), and the events of a time
/// the broker was away, with their time.
pub(crate) struct Button {
    _input: Box<dyn InputEdges>,
    offline: bool,
    kept: VecDeque<(Instant, Bytes)>,
    max_age: Duration,
}

/// The verbs of the topic table the part takes: none.
const VERBS: &[Verb] = &[];

impl Device for Button {
    type Command = Infallible;

    fn start(start: &mut Start<'_>) -> Result<Option<Self>, AgentError> {
        let Some(mut input) = start.hardware.input("button") else {
            return Ok(None);
        };
        let edges = input.edges()?;
        let timing = Timing::from_config(&start.settings.config.button);
        let events = start.forward(Event::Button);
        start.tasks.push(tokio::spawn(watch(edges, timing, events)));
        let max_age = Duration::from_secs(start.settings.config.button.offline_max_age_s);
        Ok(Some(Button {
            _input: input,
            // Until the first connection, as after a lost one.
            offline: true,
            kept: VecDeque::new(),
            max_age,
        }))
    }

    fn parse(&self, _: Verb, _: Option<&str>, _: &[u8]) -> Result<Infallible, CommandError> {
        Err(CommandError::Disabled("commands to the button".into()))
    }

    fn execute(&mut self, cmd: Infallible, _: &Now) -> Result<Vec<Out>, CommandError> {
        match cmd {}
    }

    fn states(&mut self, _: &Now) -> Vec<Out> {
        Vec::new()
    }

    fn react(&mut self, event: &Event, now: &Now) -> Vec<Out> {
        match event {
            Event::Button(ev) => {
                let at = now.wall.with_timezone(&now.time_zone);
                let payload = Bytes::from(ev.payload(&at));
                if !self.offline {
                    return vec![Out::Event(state::BUTTON_EVENT, payload)];
                }
                if !self.max_age.is_zero() {
                    if self.kept.len() == KEPT_OFFLINE {
                        self.kept.pop_front();
                    }
                    self.kept.push_back((now.at, payload));
                }
                Vec::new()
            }
            Event::Offline => {
                self.offline = true;
                Vec::new()
            }
            // What happened meanwhile, with its own time, unless too old.
            Event::Online => {
                self.offline = false;
                let max_age = self.max_age;
                self.kept
                    .drain(..)
                    .filter(|(at, _)| now.at.saturating_duration_since(*at) <= max_age)
                    .map(|(_, p)| Out::Event(state::BUTTON_EVENT, p))
                    .collect()
            }
            _ => Vec::new(),
        }
    }

    async fn stop(self, _: Now) -> (Vec<Out>, Result<(), HardwareError>) {
        (Vec::new(), Ok(()))
    }
}

/// Its Home Assistant entities: an event entity with every event type, and
/// a device trigger per event type, so that the automation editor offers
/// "button pressed".
pub(crate) fn entities(enabled: bool) -> Vec<Entity> {
    let event = Entity {
        component: "event",
        object: "button".into(),
        name: "Button".into(),
        enabled,
        state: Some(state::BUTTON_EVENT.into()),
        fields: json!({
            "event_types": ButtonEvent::ALL.iter().map(|e| e.event_type()).collect::<Vec<_>>(),
            "device_class": "button",
            "icon": "mdi:gesture-tap-button",
        }),
        ..Entity::default()
    };
    let triggers = ButtonEvent::ALL.iter().map(|e| Entity {
        component: "device_automation",
        object: format!("button_{}", e.event_type()),
        enabled,
        state: Some(state::BUTTON_EVENT.into()),
        fields: json!({
            "automation_type": "trigger",
            "type": e.trigger_type(),
            "subtype": "button_1",
            "payload": e.event_type(),
            "value_template": "{{ value_json.event_type }}",
        }),
        ..Entity::default()
    });
    std::iter::once(event).chain(triggers).collect()
}
