//! The button: turns raw input edges into presses (one to five in a row),
//! long presses, holds and releases.
//!
//! A level counts once it has held for the debounce time. A release before
//! the long-press time is a click; clicks each within the multi-press window
//! of the last release make one event: `press`, `double_press`, ... up to
//! `quintuple_press` (or `button.max_presses`), reported when the window
//! closes or at once when the most are reached. Held past the long-press
//! time, a press is a `long_press` (at that moment, not at release), then a
//! `hold` every hold-repeat time while held, and a `release` when let go.

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
    /// Three.
    TriplePress,
    /// Four.
    QuadruplePress,
    /// Five.
    QuintuplePress,
    /// A press held down.
    LongPress,
    /// Still held, every hold-repeat time after the long press.
    Hold,
    /// Let go after a long press.
    Release,
}

impl ButtonEvent {
    /// The event type as Home Assistant's event entity names it.
    pub fn event_type(&self) -> &'static str {
        match self {
            ButtonEvent::Press => "press",
            ButtonEvent::DoublePress => "double_press",
            ButtonEvent::TriplePress => "triple_press",
            ButtonEvent::QuadruplePress => "quadruple_press",
            ButtonEvent::QuintuplePress => "quintuple_press",
            ButtonEvent::LongPress => "long_press",
            ButtonEvent::Hold => "hold",
            ButtonEvent::Release => "release",
        }
    }

    /// The event of `n` short presses in a row (1 to [`MAX_PRESSES`]).
    pub fn presses(n: u8) -> ButtonEvent {
        match n {
            0 | 1 => ButtonEvent::Press,
            2 => ButtonEvent::DoublePress,
            3 => ButtonEvent::TriplePress,
            4 => ButtonEvent::QuadruplePress,
            _ => ButtonEvent::QuintuplePress,
        }
    }

    /// Its event report: `{"event_type": "press", "at": RFC 3339}`.
    pub(crate) fn payload(&self, at: &chrono::DateTime<crate::clock::Zone>) -> String {
        serde_json::json!({ "event_type": self.event_type(), "at": crate::clock::rfc3339(at) })
            .to_string()
    }

    /// Home Assistant's device trigger type for it (those its automation
    /// editor names; `hold` has none of its own).
    pub(crate) fn trigger_type(&self) -> &'static str {
        match self {
            ButtonEvent::Press => "button_short_press",
            ButtonEvent::DoublePress => "button_double_press",
            ButtonEvent::TriplePress => "button_triple_press",
            ButtonEvent::QuadruplePress => "button_quadruple_press",
            ButtonEvent::QuintuplePress => "button_quintuple_press",
            ButtonEvent::LongPress => "button_long_press",
            ButtonEvent::Hold => "button_hold",
            ButtonEvent::Release => "button_long_release",
        }
    }

    /// Every event type, for discovery.
    pub const ALL: [ButtonEvent; 8] = [
        ButtonEvent::Press,
        ButtonEvent::DoublePress,
        ButtonEvent::TriplePress,
        ButtonEvent::QuadruplePress,
        ButtonEvent::QuintuplePress,
        ButtonEvent::LongPress,
        ButtonEvent::Hold,
        ButtonEvent::Release,
    ];
}

/// The most short presses one event counts.
pub const MAX_PRESSES: u8 = 5;

/// The button's timing thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long a level must hold to count.
    pub debounce: Duration,
    /// Window after a release for the next click of a multi-press; zero:
    /// every click is a press at once.
    pub multi_press: Duration,
    /// How long a press must be held to be a long press.
    pub long_press: Duration,
    /// Between two `hold` events while held after a long press; zero: none.
    pub hold_repeat: Duration,
    /// The most clicks one event counts (1 to [`MAX_PRESSES`]).
    pub max_presses: u8,
}

impl Timing {
    /// The timing from the `[button]` config.
    pub fn from_config(c: &crate::config::ButtonConfig) -> Self {
        Timing {
            debounce: Duration::from_millis(c.debounce_ms),
            multi_press: Duration::from_millis(c.multi_press_ms),
            long_press: Duration::from_millis(c.long_press_ms),
            hold_repeat: Duration::from_millis(c.hold_repeat_ms),
            max_presses: c.max_presses,
        }
    }
}

/// What the button does, from its edges and the time: a pure state
/// machine, driven by [`watch`].
#[derive(Debug)]
pub struct Recognizer {
    timing: Timing,
    /// The debounced level.
    pressed: bool,
    /// The last raw edge, not yet settled, and when it settles.
    raw: Option<Edge>,
    settle: Option<Instant>,
    /// While pressed and not yet long: when it becomes a long press.
    long_at: Option<Instant>,
    /// While held after a long press: when the next `hold` is due.
    holding: bool,
    next_hold: Option<Instant>,
    /// Clicks so far, and when the window for the next closes.
    clicks: u8,
    click_window: Option<Instant>,
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

impl Recognizer {
    /// A released button.
    pub fn new(timing: Timing) -> Recognizer {
        Recognizer {
            timing,
            pressed: false,
            raw: None,
            settle: None,
            long_at: None,
            holding: false,
            next_hold: None,
            clicks: 0,
            click_window: None,
        }
    }

    /// Takes a raw edge (it counts once it has held for the debounce time).
    pub fn edge(&mut self, e: Edge) {
        self.raw = Some(e);
        self.settle = Some(e.at + self.timing.debounce);
    }

    /// When [`Recognizer::due`] must next be called.
    pub fn deadline(&self) -> Option<Instant> {
        let window = self.click_window.filter(|_| !self.pressed);
        earliest(
            earliest(self.settle, self.long_at),
            earliest(self.next_hold, window),
        )
    }

    /// The clicks so far as one event, if any.
    fn clicked(&mut self, fired: &mut Vec<ButtonEvent>) {
        if self.clicks > 0 {
            fired.push(ButtonEvent::presses(self.clicks));
        }
        self.clicks = 0;
        self.click_window = None;
    }

    /// What has happened by `now`, in order.
    pub fn due(&mut self, now: Instant) -> Vec<ButtonEvent> {
        let mut fired = Vec::new();
        let t = self.timing;
        if self.settle.is_some_and(|d| d <= now) {
            self.settle = None;
            if let Some(e) = self.raw.take().filter(|e| e.active != self.pressed) {
                self.pressed = e.active;
                if self.pressed {
                    self.long_at = Some(e.at + t.long_press);
                } else if self.holding {
                    self.holding = false;
                    self.next_hold = None;
                    fired.push(ButtonEvent::Release);
                } else if self.long_at.take().is_some() {
                    // Released before it became a long press: a click.
                    self.clicks += 1;
                    if self.clicks >= t.max_presses.clamp(1, MAX_PRESSES) || t.multi_press.is_zero()
                    {
                        self.clicked(&mut fired);
                    } else {
                        self.click_window = Some(e.at + t.multi_press);
                    }
                }
            }
        }
        if let Some(at) = self.long_at.filter(|d| *d <= now) {
            // Clicks before it are theirs; the long press is its own.
            self.clicked(&mut fired);
            self.long_at = None;
            self.holding = true;
            self.next_hold = (!t.hold_repeat.is_zero()).then(|| at + t.hold_repeat);
            fired.push(ButtonEvent::LongPress);
        }
        while let Some(at) = self.next_hold.filter(|d| *d <= now) {
            fired.push(ButtonEvent::Hold);
            self.next_hold = Some(at + t.hold_repeat);
        }
        // Still held: that press decides at its release.
        if !self.pressed && self.click_window.is_some_and(|d| d <= now) {
            self.clicked(&mut fired);
        }
        fired
    }
}

/// Watches `edges` and sends events until either side goes away.
pub async fn watch(
    mut edges: mpsc::Receiver<Edge>,
    timing: Timing,
    events: mpsc::Sender<ButtonEvent>,
) {
    let mut button = Recognizer::new(timing);
    loop {
        let deadline = button.deadline();
        tokio::select! {
            e = edges.recv() => match e {
                Some(e) => button.edge(e),
                None => break,
            },
            _ = async { if let Some(d) = deadline { tokio::time::sleep_until(d).await } }, if deadline.is_some() => {
                for ev in button.due(Instant::now()) {
                    if events.send(ev).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Today's defaults, but at most double presses (reported at once).
    const T: Timing = Timing {
        debounce: Duration::from_millis(30),
        multi_press: Duration::from_millis(300),
        long_press: Duration::from_millis(800),
        hold_repeat: Duration::ZERO,
        max_presses: 2,
    };

    /// Up to five, with holds every 500 ms.
    const FIVE: Timing = Timing {
        hold_repeat: Duration::from_millis(500),
        max_presses: 5,
        ..T
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
        assert_eq!(
            ev,
            vec![(ButtonEvent::LongPress, 800), (ButtonEvent::Release, 2030)]
        );
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
            multi_press: Duration::ZERO,
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

    /// Clicks of 100 ms, 100 ms apart, `n` of them, from 0.
    fn clicks(n: u64) -> Vec<(u64, bool)> {
        (0..n)
            .flat_map(|k| [(k * 200, true), (k * 200 + 100, false)])
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn up_to_five_presses_in_a_row_are_one_event_when_the_window_closes() {
        for (n, event) in [
            (1, ButtonEvent::Press),
            (2, ButtonEvent::DoublePress),
            (3, ButtonEvent::TriplePress),
            (4, ButtonEvent::QuadruplePress),
        ] {
            let ev = run(FIVE, &clicks(n), 3000).await;
            // The window is 300 ms from the last release.
            let at = (n - 1) * 200 + 100 + 300;
            assert_eq!(ev, vec![(event, at)], "{n} clicks");
        }
        // The fifth is the most: reported at once.
        let ev = run(FIVE, &clicks(5), 3000).await;
        assert_eq!(ev, vec![(ButtonEvent::QuintuplePress, 930)]);
        // A sixth starts the next.
        let ev = run(FIVE, &clicks(6), 3000).await;
        assert_eq!(
            ev,
            vec![
                (ButtonEvent::QuintuplePress, 930),
                (ButtonEvent::Press, 1400)
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn held_it_is_a_long_press_then_holds_on_their_deadlines_then_a_release() {
        let ev = run(FIVE, &[(0, true), (2100, false)], 3000).await;
        assert_eq!(
            ev,
            vec![
                (ButtonEvent::LongPress, 800),
                (ButtonEvent::Hold, 1300),
                (ButtonEvent::Hold, 1800),
                (ButtonEvent::Release, 2130),
            ]
        );
        // Without holds, a long press still ends with its release.
        let ev = run(T, &[(0, true), (1000, false)], 3000).await;
        assert_eq!(
            ev,
            vec![(ButtonEvent::LongPress, 800), (ButtonEvent::Release, 1030)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn clicks_before_a_long_press_are_reported_before_it() {
        let ev = run(
            FIVE,
            &[(0, true), (100, false), (200, true), (1500, false)],
            3000,
        )
        .await;
        assert_eq!(
            ev,
            vec![
                (ButtonEvent::Press, 1000),
                (ButtonEvent::LongPress, 1000),
                (ButtonEvent::Hold, 1500),
                (ButtonEvent::Release, 1530),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_look_makes_every_hold_that_was_due() {
        let mut r = Recognizer::new(FIVE);
        let t0 = Instant::now();
        r.edge(Edge {
            active: true,
            at: t0,
        });
        // Nothing looked at for 2 s: the long press and the holds since, in order.
        let ev = r.due(t0 + Duration::from_millis(2000));
        assert_eq!(
            ev,
            vec![ButtonEvent::LongPress, ButtonEvent::Hold, ButtonEvent::Hold]
        );
        assert_eq!(
            r.deadline(),
            Some(t0 + Duration::from_millis(2300)),
            "on its grid"
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
