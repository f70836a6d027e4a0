//! The button: turns raw input edges into `press`, `double_press` and
//! `long_press` events.
//!
//! A level counts once it has held for the debounce time. A release before
//! the long-press time is a click; two clicks within the double-press window
//! are a double press, one click alone is a press (reported when the window
//! closes). Held past the long-press time, a press is a long press (reported
//! at that moment, not at release).

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::hardware::Edge;

/// What the button did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ButtonEvent {
    /// A short press.
    Press,
    /// Two short presses in quick succession.
    DoublePress,
    /// A press held down.
    LongPress,
}

impl ButtonEvent {
    /// The event type as Home Assistant's event entity names it.
    pub fn event_type(&self) -> &'static str {
        match self {
            ButtonEvent::Press => "press",
            ButtonEvent::DoublePress => "double_press",
            ButtonEvent::LongPress => "long_press",
        }
    }

    /// Its event report: `{"event_type": "press", "at": RFC 3339}`.
    pub(crate) fn payload(&self, at: &chrono::DateTime<chrono_tz::Tz>) -> String {
        serde_json::json!({ "event_type": self.event_type(), "at": crate::clock::rfc3339(at) })
            .to_string()
    }

    /// Home Assistant's device trigger type for it.
    pub(crate) fn trigger_type(&self) -> &'static str {
        match self {
            ButtonEvent::Press => "button_short_press",
            ButtonEvent::DoublePress => "button_double_press",
            ButtonEvent::LongPress => "button_long_press",
        }
    }

    /// Every event type, for discovery.
    pub const ALL: [ButtonEvent; 3] = [
        ButtonEvent::Press,
        ButtonEvent::DoublePress,
        ButtonEvent::LongPress,
    ];
}

/// The button's timing thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long a level must hold to count.
    pub debounce: Duration,
    /// Window for a second click; zero disables double presses.
    pub double_press: Duration,
    /// How long a press must be held to be a long press.
    pub long_press: Duration,
}

impl Timing {
    /// The timing from the `[button]` config.
    pub fn from_config(c: &crate::config::ButtonConfig) -> Self {
        Timing {
            debounce: Duration::from_millis(c.debounce_ms),
            double_press: Duration::from_millis(c.double_press_ms),
            long_press: Duration::from_millis(c.long_press_ms),
        }
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Watches `edges` and sends events until either side goes away.
pub async fn watch(
    mut edges: mpsc::Receiver<Edge>,
    timing: Timing,
    events: mpsc::Sender<ButtonEvent>,
) {
    let mut pressed = false; // the debounced level
    let mut raw: Option<Edge> = None; // last raw edge, not yet settled
    let mut settle: Option<Instant> = None;
    let mut long_at: Option<Instant> = None;
    let mut click_window: Option<Instant> = None;
    let mut clicks = 0u8;
    loop {
        let deadline = earliest(earliest(settle, long_at), click_window);
        let mut fired = Vec::new();
        tokio::select! {
            e = edges.recv() => match e {
                Some(e) => {
                    raw = Some(e);
                    settle = Some(e.at + timing.debounce);
                }
                None => break,
            },
            _ = async { if let Some(d) = deadline { tokio::time::sleep_until(d).await } }, if deadline.is_some() => {
                let now = Instant::now();
                if settle.is_some_and(|d| d <= now) {
                    settle = None;
                    if let Some(e) = raw.take() {
                        if e.active != pressed {
                            pressed = e.active;
                            if pressed {
                                long_at = Some(e.at + timing.long_press);
                            } else if long_at.take().is_some() {
                                // Released before it became a long press: a click.
                                clicks += 1;
                                if clicks >= 2 {
                                    clicks = 0;
                                    click_window = None;
                                    fired.push(ButtonEvent::DoublePress);
                                } else if timing.double_press.is_zero() {
                                    clicks = 0;
                                    fired.push(ButtonEvent::Press);
                                } else {
                                    click_window = Some(e.at + timing.double_press);
                                }
                            }
                        }
                    }
                }
                if long_at.is_some_and(|d| d <= now) {
                    long_at = None;
                    clicks = 0;
                    click_window = None;
                    fired.push(ButtonEvent::LongPress);
                }
                if click_window.is_some_and(|d| d <= now) {
                    click_window = None;
                    // Still held: that press decides at its release (double or long).
                    if !pressed {
                        if clicks == 1 {
                            fired.push(ButtonEvent::Press);
                        }
                        clicks = 0;
                    }
                }
            }
        }
        for ev in fired {
            if events.send(ev).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing {
        debounce: Duration::from_millis(30),
        double_press: Duration::from_millis(300),
        long_press: Duration::from_millis(800),
    };

    /// Feeds edges at the given offsets (ms) and returns (event, ms after start).
    async fn run(timing: Timing, script: &[(u64, bool)], total_ms: u64) -> Vec<(ButtonEvent, u64)> {
        let (etx, erx) = mpsc::channel(64);
        let (tx, mut rx) = mpsc::channel(64);
        let start = Instant::now();
        tokio::spawn(watch(erx, timing, tx));
        let script = script.to_vec();
        tokio::spawn(async move {
            for (at, active) in script {
                tokio::time::sleep_until(start + Duration::from_millis(at)).await;
                let _ = etx
                    .send(Edge {
                        active,
                        at: Instant::now(),
                    })
                    .await;
            }
            tokio::time::sleep_until(start + Duration::from_millis(total_ms)).await;
        });
        let mut out = Vec::new();
        let end = start + Duration::from_millis(total_ms);
        while let Ok(Some(ev)) = tokio::time::timeout_at(end, rx.recv()).await {
            out.push((ev, (Instant::now() - start).as_millis() as u64));
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_press_is_reported_when_the_double_window_closes() {
        let ev = run(T, &[(0, true), (100, false)], 2000).await;
        assert_eq!(ev, vec![(ButtonEvent::Press, 400)]);
    }

    #[tokio::test(start_paused = true)]
    async fn two_quick_presses_are_one_double_press() {
        let ev = run(
            T,
            &[(0, true), (100, false), (250, true), (350, false)],
            2000,
        )
        .await;
        assert_eq!(ev, vec![(ButtonEvent::DoublePress, 380)]);
    }

    #[tokio::test(start_paused = true)]
    async fn two_slow_presses_are_two_presses() {
        let ev = run(
            T,
            &[(0, true), (100, false), (600, true), (700, false)],
            2000,
        )
        .await;
        assert_eq!(
            ev,
            vec![(ButtonEvent::Press, 400), (ButtonEvent::Press, 1000)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_press_is_a_long_press_at_the_threshold() {
        let ev = run(T, &[(0, true), (2000, false)], 3000).await;
        assert_eq!(ev, vec![(ButtonEvent::LongPress, 800)]);
    }

    #[tokio::test(start_paused = true)]
    async fn contact_bounce_is_ignored() {
        // Press with bounce, release with bounce: one press.
        let script = [
            (0, true),
            (3, false),
            (6, true),
            (100, false),
            (104, true),
            (108, false),
        ];
        let ev = run(T, &script, 2000).await;
        // The release counts from its last bounce (108 ms).
        assert_eq!(ev, vec![(ButtonEvent::Press, 408)]);
        // A glitch shorter than the debounce time is nothing at all.
        let ev = run(T, &[(0, true), (10, false)], 2000).await;
        assert_eq!(ev, vec![]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_press_held_past_the_window_still_makes_a_double() {
        let ev = run(
            T,
            &[(0, true), (100, false), (300, true), (600, false)],
            2000,
        )
        .await;
        assert_eq!(ev, vec![(ButtonEvent::DoublePress, 630)]);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_double_window_a_press_is_immediate() {
        let t = Timing {
            double_press: Duration::ZERO,
            ..T
        };
        let ev = run(
            t,
            &[(0, true), (100, false), (200, true), (300, false)],
            2000,
        )
        .await;
        assert_eq!(
            ev,
            vec![(ButtonEvent::Press, 130), (ButtonEvent::Press, 330)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn stops_when_the_input_goes_away() {
        let (etx, erx) = mpsc::channel(4);
        let (tx, mut rx) = mpsc::channel(4);
        let h = tokio::spawn(watch(erx, T, tx));
        drop(etx);
        h.await.unwrap();
        assert_eq!(rx.recv().await, None);
    }
}
