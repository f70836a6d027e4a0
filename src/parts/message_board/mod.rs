//! The e-paper message board: a message or the minute clock, drawn on the
//! panel by a worker of its own.

pub(crate) mod board;
pub(crate) mod command;
pub(crate) mod config;
pub(crate) mod display;
pub mod render;

use std::time::Duration;

use crate::clock::Zone;
use chrono::DateTime;

use serde_json::json;
use tokio::time::Instant;

use self::board::Board;
use self::command::{parse_clock, parse_message, Message};
use self::display::{DisplayHandle, Progress, Refresh};
use self::render::Screen;
use crate::agent::AgentError;
use crate::clock::rfc3339;
use crate::config::{DisplayBackend, DisplayConfig};
use crate::hardware::{Display, HardwareError};
use crate::mqtt::topic::{state, Verb};
use crate::parts::button::ButtonEvent;
use crate::parts::input::{text, CommandError};
use crate::parts::{Device, Entity, Event, Now, Out, Start};

/// The message board as a part: the board and the worker that draws on its
/// panel.
pub(crate) struct MessageBoard {
    board: Board,
    display: DisplayHandle,
    /// The longest message it takes (characters).
    max_chars: usize,
    /// The last whole-minute tick.
    last_tick: Option<DateTime<Zone>>,
    /// The number of the last screen handed to the panel.
    screens: u64,
    /// The messages handed to the panel and not yet shown, by number.
    waiting: std::collections::VecDeque<u64>,
    /// The message shown now, by number, and when it expires (`ttl_s`).
    expires: Option<(u64, Instant)>,
}

/// The most messages kept waiting for the panel (for their second answer).
const WAITING: usize = 64;

/// A command for the message board.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum BoardCommand {
    /// Show a message (stops the clock).
    Message(Message),
    /// Start (`true`) or stop the clock.
    Clock(bool),
}

impl MessageBoard {
    /// Hands `screen` to the panel; its number.
    fn draw(&mut self, screen: Screen) -> u64 {
        self.screens += 1;
        self.display.show(self.screens, screen);
        self.screens
    }

    /// Draws `screen`, if any, and gives the board's state.
    fn show(&mut self, screen: Option<Screen>) -> Vec<Out> {
        match screen {
            Some(screen) => {
                self.draw(screen);
                // The clock replaced the message: it expires no more.
                self.expires = None;
                self.state()
            }
            None => Vec::new(),
        }
    }

    fn state(&self) -> Vec<Out> {
        vec![Out::state(state::DISPLAY, self.board.state().payload())]
    }

    /// The second answers the panel's progress makes.
    fn progress(&mut self, p: &Progress, now: &Now) -> Vec<Out> {
        let answer =
            |n: u64, v: serde_json::Value| Out::Answer(state::DISPLAY, n, v.to_string().into());
        let mut out = Vec::new();
        match p {
            // Those before it that the panel did not take, it never will.
            Progress::Taken(n) => {
                while let Some(&m) = self.waiting.front().filter(|m| **m < *n) {
                    self.waiting.pop_front();
                    out.push(answer(m, json!({
                        "ok": false,
                        "error": "superseded: a newer message or the clock replaced it before the panel drew it",
                    })));
                }
            }
            Progress::Shown(n) | Progress::Failed(n, _) => {
                let Some(at) = self.waiting.iter().position(|m| m == n) else {
                    return out;
                };
                self.waiting.remove(at);
                out.push(match p {
                    Progress::Failed(_, why) => answer(
                        *n,
                        json!({
                            "ok": false,
                            "error": format!("the panel could not show it: {why}"),
                        }),
                    ),
                    _ => answer(
                        *n,
                        json!({
                            "ok": true,
                            "shown_at": rfc3339(&now.wall.with_timezone(&now.time_zone)),
                        }),
                    ),
                });
            }
        }
        out
    }
}

/// The verbs of the topic table the part takes.
const VERBS: &[Verb] = &[Verb::Message, Verb::Clock];

impl Device for MessageBoard {
    type Command = BoardCommand;

    fn start(start: &mut Start<'_>) -> Result<Option<Self>, AgentError> {
        let Some(panel) = start.hardware.display.take() else {
            return Ok(None);
        };
        let config = &start.settings.config.display;
        let refresh = refresh_of(config, panel.as_ref());
        let max_chars = config.max_message_chars;
        let reports = display::Reports {
            errors: start.failures(state::DISPLAY),
            drawn: start.forward(|png| Event::Drawn { png }),
            progress: start.forward(Event::Board),
        };
        let (display, tasks) = display::spawn(panel, refresh, reports);
        start.tasks.extend(tasks);
        let (board, first) = Board::new(start.settings.time_zone.clone(), start.wall);
        let mut part = MessageBoard {
            board,
            display,
            max_chars,
            last_tick: None,
            screens: 0,
            waiting: std::collections::VecDeque::new(),
            expires: None,
        };
        part.draw(first);
        Ok(Some(part))
    }

    fn verbs(&self) -> &'static [Verb] {
        VERBS
    }

    fn parse(
        &self,
        verb: Verb,
        _: Option<&str>,
        payload: &[u8],
    ) -> Result<BoardCommand, CommandError> {
        if verb == Verb::Clock {
            return parse_clock(payload).map(BoardCommand::Clock);
        }
        // No text: no message, the clock again (Home Assistant's text
        // entity shows the clock's board as an empty text, and clearing it
        // brings the clock back).
        if text(payload)?.trim().is_empty() {
            return Ok(BoardCommand::Clock(true));
        }
        parse_message(text(payload)?, self.max_chars).map(BoardCommand::Message)
    }

    fn execute(&mut self, cmd: BoardCommand, now: &Now) -> Result<Vec<Out>, CommandError> {
        Ok(match cmd {
            BoardCommand::Message(m) => {
                let expires = m.ttl.map(|ttl| now.wall + ttl);
                let screen = self.board.message(m.text, m.from, now.wall, expires);
                let n = self.draw(screen);
                self.expires = m.ttl.map(|ttl| (n, now.at + ttl));
                if self.waiting.len() == WAITING {
                    self.waiting.pop_front();
                }
                self.waiting.push_back(n);
                let mut out = self.state();
                out.push(Out::Awaits(state::DISPLAY, n));
                out
            }
            BoardCommand::Clock(on) => {
                if let Some(screen) = self.board.set_clock(on, now.wall) {
                    self.draw(screen);
                    self.expires = None;
                }
                self.state()
            }
        })
    }

    fn states(&mut self, _: &Now) -> Vec<Out> {
        self.state()
    }

    fn react(&mut self, event: &Event, now: &Now) -> Vec<Out> {
        match event {
            // Every whole minute ticks (a link on the tick, the original
            // clock → buzzer chain, goes on while a message is shown); the
            // clock is drawn when it runs.
            Event::Minute(at) => {
                if let Some(screen) = self.board.tick(at.clone()) {
                    self.draw(screen);
                }
                self.last_tick = Some(at.clone());
                tick(at)
            }
            Event::Announce => self.last_tick.as_ref().map(tick).unwrap_or_default(),
            Event::Drawn { png } => vec![Out::state(state::DISPLAY_IMAGE, png.clone())],
            Event::Board(p) => self.progress(p, now),
            // The restart button: the clock comes back.
            Event::Button(ButtonEvent::Press) => {
                let screen = self.board.press(now.wall);
                self.show(screen)
            }
            _ => Vec::new(),
        }
    }

    fn deadline(&self, _: Instant) -> Option<Instant> {
        self.expires.map(|(_, at)| at)
    }

    /// The message's time is up: the clock comes back.
    fn timer(&mut self, now: &Now) -> Vec<Out> {
        self.expires = None;
        let screen = self.board.set_clock(true, now.wall);
        self.show(screen)
    }

    async fn stop(self, _: Now) -> (Vec<Out>, Result<(), HardwareError>) {
        (Vec::new(), Ok(()))
    }
}

/// The tick of the whole minute `at`.
fn tick(at: &DateTime<Zone>) -> Vec<Out> {
    let tick = json!({ "time": rfc3339(at) }).to_string();
    vec![Out::Event(state::CLOCK_TICK, tick.into())]
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
        full_every: display.full_refresh_every,
    }
}

/// The longest text Home Assistant's text entity holds.
pub(crate) const HA_TEXT_MAX: usize = 255;

/// The board's Home Assistant entities: the message as a text, the minute
/// clock as a timestamp sensor.
pub(crate) fn entities(display: &DisplayConfig) -> Vec<Entity> {
    let enabled = display.enabled;
    vec![
        Entity {
            component: "text",
            object: "message".into(),
            name: "Message".into(),
            enabled,
            command: Some((Verb::Message, "")),
            state: Some(state::DISPLAY.into()),
            // Its sender and the time it was shown.
            attributes: Some(
                "{{ {'from': value_json.from, 'shown_at': value_json.shown_at, 'mode': value_json.mode} | tojson }}",
            ),
            fields: json!({
                // Empty while the clock is shown; an empty text brings the
                // clock back.
                "value_template": "{{ value_json.text if value_json.text else '' }}",
                "min": 0,
                "max": display.max_message_chars.min(HA_TEXT_MAX),
                "mode": "text",
                "icon": "mdi:message-text-outline",
            }),
        },
        Entity {
            component: "image",
            object: "board_image".into(),
            name: "Board".into(),
            enabled,
            // Framed as its image_topic.
            state: Some(state::DISPLAY_IMAGE.into()),
            fields: json!({
                "content_type": "image/png",
                "image_encoding": "b64",
                "icon": "mdi:image-frame",
            }),
            ..Entity::default()
        },
        Entity {
            component: "notify",
            object: "board".into(),
            name: "Board".into(),
            enabled,
            command: Some((Verb::Message, "")),
            fields: json!({ "icon": "mdi:message-arrow-right-outline" }),
            ..Entity::default()
        },
        Entity {
            component: "switch",
            object: "clock_running".into(),
            name: "Clock running".into(),
            enabled,
            command: Some((Verb::Clock, "")),
            state: Some(state::DISPLAY.into()),
            fields: json!({
                "value_template": "{{ value_json.clock }}",
                "payload_on": "ON",
                "payload_off": "OFF",
                "state_on": "ON",
                "state_off": "OFF",
                "entity_category": "config",
                "icon": "mdi:clock-outline",
            }),
            ..Entity::default()
        },
        Entity {
            component: "sensor",
            object: "clock".into(),
            name: "Clock".into(),
            enabled,
            state: Some(state::CLOCK_TICK.into()),
            fields: json!({
                "value_template": "{{ value_json.time }}",
                "device_class": "timestamp",
                "entity_category": "diagnostic",
            }),
            ..Entity::default()
        },
    ]
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
