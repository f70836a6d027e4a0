//! The message board's logic, from the original e-paper project: the clock
//! is drawn every minute; a message stops it and is shown with its sender and
//! arrival time; a button press (or `ON`) restarts the clock.

use crate::clock::Zone;
use chrono::{DateTime, Utc};

use crate::parts::message_board::render::Screen;

/// What the board shows and whether the clock runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BoardState {
    /// The screen on the panel (the clock's time, or the message).
    pub screen: Screen,
    /// Whether the clock redraws every minute.
    pub clock_running: bool,
    /// When the current screen's mode began (message arrival, clock start).
    pub shown_at: DateTime<Zone>,
    /// When the message gives way to the clock, if it expires.
    pub expires_at: Option<DateTime<Zone>>,
}

impl BoardState {
    /// Its state report: `{"mode": "clock"|"message", "text", "from",
    /// "shown_at", "expires_at", "clock": "ON"|"OFF"}`.
    pub(crate) fn payload(&self) -> String {
        let (mode, text, from) = match &self.screen {
            Screen::Clock(_) => ("clock", None, None),
            Screen::Message { text, from, .. } => ("message", Some(text), from.as_ref()),
        };
        serde_json::json!({
            "mode": mode,
            "text": text,
            "from": from,
            "shown_at": crate::clock::rfc3339(&self.shown_at),
            "expires_at": self.expires_at.as_ref().map(crate::clock::rfc3339),
            "clock": if self.clock_running { "ON" } else { "OFF" },
        })
        .to_string()
    }
}

/// The board.
#[derive(Debug, Clone)]
pub(crate) struct Board {
    tz: Zone,
    state: BoardState,
}

impl Board {
    /// A board that starts with the running clock; also returns the first screen.
    pub(crate) fn new(tz: Zone, now: DateTime<Utc>) -> (Self, Screen) {
        let now = now.with_timezone(&tz);
        let screen = Screen::Clock(now.clone());
        let board = Board {
            tz,
            state: BoardState {
                screen: screen.clone(),
                clock_running: true,
                shown_at: now,
                expires_at: None,
            },
        };
        (board, screen)
    }

    /// The current state.
    pub(crate) fn state(&self) -> &BoardState {
        &self.state
    }

    /// A message arrived: the clock stops and the message is drawn (until
    /// `expires`, if given).
    pub(crate) fn message(
        &mut self,
        text: String,
        from: Option<String>,
        now: DateTime<Utc>,
        expires: Option<DateTime<Utc>>,
    ) -> Screen {
        let at = now.with_timezone(&self.tz);
        let screen = Screen::Message {
            text,
            from,
            at: at.clone(),
        };
        self.state = BoardState {
            screen: screen.clone(),
            clock_running: false,
            shown_at: at,
            expires_at: expires.map(|e| e.with_timezone(&self.tz)),
        };
        screen
    }

    /// `ON` (true) or `OFF` (false). ON while the clock runs changes nothing;
    /// OFF freezes whatever is shown.
    pub(crate) fn set_clock(&mut self, on: bool, now: DateTime<Utc>) -> Option<Screen> {
        match (on, self.state.clock_running) {
            (true, false) => {
                let now = now.with_timezone(&self.tz);
                let screen = Screen::Clock(now.clone());
                self.state = BoardState {
                    screen: screen.clone(),
                    clock_running: true,
                    shown_at: now,
                    expires_at: None,
                };
                Some(screen)
            }
            (false, true) => {
                self.state.clock_running = false;
                None
            }
            _ => None,
        }
    }

    /// A button press: restarts a stopped clock; nothing while it runs.
    pub(crate) fn press(&mut self, now: DateTime<Utc>) -> Option<Screen> {
        self.set_clock(true, now)
    }

    /// A whole minute passed: the new clock screen, if the clock runs.
    pub(crate) fn tick(&mut self, at: DateTime<Zone>) -> Option<Screen> {
        if !self.state.clock_running {
            return None;
        }
        let screen = Screen::Clock(at);
        self.state.screen = screen.clone();
        Some(screen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 18, min, 0).unwrap()
    }

    #[test]
    fn message_stops_the_clock_and_a_press_restarts_it() {
        let tz = crate::clock::Zone::utc();
        let (mut b, first) = Board::new(tz.clone(), t(0));
        assert_eq!(first, Screen::Clock(t(0).with_timezone(&tz)));
        assert!(b.tick(t(1).with_timezone(&tz)).is_some());
        // A press while the clock runs does nothing.
        assert_eq!(b.press(t(1)), None);
        let before = b.state().clone();
        assert_eq!(b.press(t(1)), None);
        assert_eq!(b.state(), &before);

        let m = b.message("hi".into(), Some("john".into()), t(2), None);
        assert!(matches!(m, Screen::Message { .. }));
        assert!(!b.state().clock_running);
        assert_eq!(
            b.tick(t(3).with_timezone(&tz)),
            None,
            "no clock while a message shows"
        );
        assert_eq!(b.state().screen, m);

        let c = b.press(t(4)).expect("press restarts the clock");
        assert_eq!(c, Screen::Clock(t(4).with_timezone(&tz)));
        assert!(b.state().clock_running);
    }

    #[test]
    fn on_and_off() {
        let tz = crate::clock::Zone::utc();
        let (mut b, _) = Board::new(tz.clone(), t(0));
        assert_eq!(b.set_clock(true, t(0)), None, "ON while running: nothing");
        assert_eq!(b.set_clock(false, t(1)), None);
        assert!(!b.state().clock_running);
        assert_eq!(b.tick(t(2).with_timezone(&tz)), None);
        assert!(b.set_clock(true, t(3)).is_some());
    }
}
