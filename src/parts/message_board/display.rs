//! Keeps the panel's slow refresh away from the command path: commands hand
//! the newest screen to a worker and return at once; the worker draws the
//! newest screen whenever the previous refresh has finished. Screens that
//! were replaced while a refresh ran are never drawn.

use std::time::Duration;

use tokio::sync::{mpsc, watch};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use bytes::Bytes;

use crate::hardware::png_file::encode;
use crate::hardware::{BitFrame, Display, HardwareError};
use crate::parts::message_board::render::{render, Screen};

/// Hands screens to the display worker; cheap to clone.
#[derive(Clone)]
pub(crate) struct DisplayHandle {
    tx: watch::Sender<Option<(u64, Screen)>>,
}

impl DisplayHandle {
    /// Asks for `screen` (numbered `id`, in the order asked) to be drawn
    /// next, replacing any screen still waiting.
    pub(crate) fn show(&self, id: u64, screen: Screen) {
        self.tx.send_replace(Some((id, screen)));
    }
}

/// What the worker did with the screens it was given, by number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Progress {
    /// It took this one to draw: the ones before it that it did not take
    /// never will be.
    Taken(u64),
    /// The panel shows it (its refresh has ended).
    Shown(u64),
    /// The panel refused it.
    Failed(u64, String),
}

/// How the worker treats the backend.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refresh {
    /// Run `show` on a blocking thread (real panels take seconds).
    pub blocking: bool,
    /// Extra time a refresh takes (simulated panels).
    pub simulated: Duration,
    /// On a panel with partial refresh, one full refresh every this many
    /// (`display.full_refresh_every`); the others partial.
    pub full_every: u32,
}

/// Whether update number `n` (from 0) is a full refresh.
fn full_refresh(n: u64, refresh: &Refresh, partial: bool) -> bool {
    !partial || n % u64::from(refresh.full_every.max(1)) == 0
}

/// Where the worker reports: failed refreshes, and the frames drawn, as
/// PNGs (what Home Assistant's image of the board shows).
pub(crate) struct Reports {
    /// Failed refreshes.
    pub errors: mpsc::Sender<HardwareError>,
    /// The latest frame the panel took, as a PNG in base64, at most once
    /// per [`IMAGE_INTERVAL`].
    pub drawn: mpsc::Sender<Bytes>,
    /// What became of each screen.
    pub progress: mpsc::Sender<Progress>,
}

/// The shortest time between two images of the board: a flood of messages
/// draws many frames; Home Assistant needs the latest, not each.
pub(crate) const IMAGE_INTERVAL: Duration = Duration::from_secs(1);

/// Starts the worker, and the task that makes images of what it drew.
pub(crate) fn spawn(
    display: Box<dyn Display>,
    refresh: Refresh,
    reports: Reports,
) -> (DisplayHandle, [tokio::task::JoinHandle<()>; 2]) {
    let (tx, rx) = watch::channel(None);
    let (frames_tx, frames) = watch::channel(None);
    let worker = tokio::spawn(run(
        display,
        refresh,
        rx,
        (reports.errors, reports.progress),
        frames_tx,
    ));
    let images = tokio::spawn(images(frames, reports.drawn));
    (DisplayHandle { tx }, [worker, images])
}

/// Encodes the latest frame drawn as a PNG in base64 (text: it reads in
/// `mosquitto_sub` and logs), off the runtime's thread, at most once per
/// [`IMAGE_INTERVAL`].
async fn images(mut frames: watch::Receiver<Option<BitFrame>>, drawn: mpsc::Sender<Bytes>) {
    while frames.changed().await.is_ok() {
        let Some(frame) = frames.borrow_and_update().clone() else {
            continue;
        };
        let next = tokio::time::Instant::now() + IMAGE_INTERVAL;
        let png =
            tokio::task::spawn_blocking(move || encode(&frame).map(|png| BASE64.encode(png))).await;
        if let Ok(Ok(png)) = png {
            if drawn.send(Bytes::from(png)).await.is_err() {
                return;
            }
        }
        tokio::time::sleep_until(next).await;
    }
}

/// Shows `frame` with a full refresh or a partial one.
fn update(display: &mut dyn Display, frame: &BitFrame, full: bool) -> Result<(), HardwareError> {
    if full {
        display.show(frame)
    } else {
        display.show_partial(frame)
    }
}

async fn run(
    mut display: Box<dyn Display>,
    refresh: Refresh,
    mut rx: watch::Receiver<Option<(u64, Screen)>>,
    (errors, progress): (mpsc::Sender<HardwareError>, mpsc::Sender<Progress>),
    frames: watch::Sender<Option<BitFrame>>,
) {
    let (w, h) = display.size();
    let partial = display.has_partial_refresh();
    let mut updates: u64 = 0;
    while rx.changed().await.is_ok() {
        let Some((id, screen)) = rx.borrow_and_update().clone() else {
            continue;
        };
        // The part may be gone (shutdown): the panel is drawn all the same.
        let _ = progress.send(Progress::Taken(id)).await;
        let full = full_refresh(updates, &refresh, partial);
        updates += 1;
        let result = if refresh.blocking {
            let joined = tokio::task::spawn_blocking(move || {
                let frame = render(&screen, w, h);
                let r = update(display.as_mut(), &frame, full).map(|()| frame);
                (display, r)
            })
            .await;
            match joined {
                Ok((d, r)) => {
                    display = d;
                    r
                }
                Err(e) => {
                    // The panel driver panicked: the display is gone.
                    let _ = progress.send(Progress::Failed(id, e.to_string())).await;
                    let _ = errors
                        .send(HardwareError::Backend {
                            part: "display".into(),
                            message: e.to_string(),
                        })
                        .await;
                    return;
                }
            }
        } else {
            let frame = render(&screen, w, h);
            update(display.as_mut(), &frame, full).map(|()| frame)
        };
        let failed = match result {
            Ok(frame) => {
                frames.send_replace(Some(frame));
                None
            }
            Err(e) => {
                let why = e.to_string();
                let _ = errors.send(e).await;
                Some(why)
            }
        };
        if !refresh.simulated.is_zero() {
            tokio::time::sleep(refresh.simulated).await;
        }
        let done = match failed {
            None => Progress::Shown(id),
            Some(why) => Progress::Failed(id, why),
        };
        let _ = progress.send(done).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::sim::SimDisplay;
    use chrono::TimeZone;
    use tokio::time::Instant;

    fn msg(i: u32) -> Screen {
        Screen::Message {
            text: format!("message {i}"),
            from: None,
            at: crate::clock::Zone::utc()
                .with_ymd_and_hms(2026, 1, 1, 0, 0, i)
                .unwrap(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ten_messages_during_one_slow_refresh_give_two_refreshes() {
        let d = SimDisplay::new(264, 176);
        let frames = d.frames.clone();
        let (etx, _erx) = mpsc::channel(4);
        let refresh = Refresh {
            blocking: false,
            simulated: Duration::from_secs(3),
            full_every: 1,
        };
        let (drawn, _drawn) = mpsc::channel(4);
        let (progress, _progress) = mpsc::channel(64);
        let reports = Reports {
            errors: etx,
            drawn,
            progress,
        };
        let (handle, _task) = spawn(Box::new(d), refresh, reports);
        let start = Instant::now();
        handle.show(1, msg(1));
        tokio::time::sleep(Duration::from_millis(100)).await; // the first refresh is running
        for i in 2..=10 {
            handle.show(u64::from(i), msg(i));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
        let seen = frames.entries();
        assert_eq!(seen.len(), 2, "exactly two refreshes");
        assert_eq!(seen[0].0 - start, Duration::ZERO);
        assert_eq!(
            seen[1].0 - start,
            Duration::from_secs(3),
            "the second right after the first"
        );
        assert_eq!(seen[0].1, render(&msg(1), 264, 176));
        assert_eq!(seen[1].1, render(&msg(10), 264, 176), "the newest is drawn");
    }

    #[tokio::test(start_paused = true)]
    async fn a_panel_with_partial_refresh_gets_a_full_one_every_n_updates() {
        let d = SimDisplay::new(264, 176);
        let full = d.full.clone();
        let refresh = Refresh {
            blocking: false,
            simulated: Duration::from_millis(10),
            full_every: 3,
        };
        let reports = Reports {
            errors: mpsc::channel(4).0,
            drawn: mpsc::channel(4).0,
            progress: mpsc::channel(64).0,
        };
        let (handle, _task) = spawn(Box::new(d), refresh, reports);
        for i in 1..=7 {
            handle.show(u64::from(i), msg(i));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            full.values(),
            [true, false, false, true, false, false, true]
        );
    }

    /// A panel whose `show` holds its thread until the test releases it.
    struct Held {
        started: std::sync::mpsc::Sender<()>,
        release: std::sync::mpsc::Receiver<()>,
    }

    impl Display for Held {
        fn size(&self) -> (u32, u32) {
            (8, 8)
        }
        fn show(&mut self, _: &crate::hardware::BitFrame) -> Result<(), HardwareError> {
            let _ = self.started.send(());
            // Released by the test; the timeout only ends a failing test.
            match self.release.recv_timeout(std::time::Duration::from_secs(5)) {
                Ok(()) => Err(HardwareError::Invalid("panel unplugged".into())),
                Err(_) => Err(HardwareError::Invalid("never released".into())),
            }
        }
    }

    // The agent runs on one thread (`cli::runtime`), as this test does: a
    // panel busy for seconds must not hold up MQTT or the matrix meanwhile.
    #[tokio::test]
    async fn a_busy_panel_does_not_hold_up_the_runtime() {
        let (started_tx, started) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel();
        let (etx, mut erx) = mpsc::channel(4);
        let (drawn, _drawn) = mpsc::channel(4);
        let (handle, _task) = spawn(
            Box::new(Held {
                started: started_tx,
                release: release_rx,
            }),
            Refresh {
                blocking: true,
                simulated: Duration::ZERO,
                full_every: 1,
            },
            Reports {
                errors: etx,
                drawn,
                progress: mpsc::channel(64).0,
            },
        );
        handle.show(1, msg(1));
        tokio::task::spawn_blocking(move || started.recv())
            .await
            .expect("join")
            .expect("the panel is refreshing");
        // While the panel holds its thread, other tasks on this one run.
        let other = tokio::spawn(async { "ran" }).await.expect("join");
        assert_eq!(other, "ran");
        assert!(erx.try_recv().is_err(), "the refresh is still going on");
        release.send(()).expect("the panel waits");
        let e = erx.recv().await.expect("the failure is reported");
        assert!(e.to_string().contains("unplugged"), "{e}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_latest_frame_drawn_is_reported_as_a_png_at_most_once_a_second() {
        let d = SimDisplay::new(264, 176);
        let frames = d.frames.clone();
        let (errors, _errors) = mpsc::channel(4);
        let (drawn, mut pngs) = mpsc::channel(4);
        let refresh = Refresh {
            blocking: false,
            simulated: Duration::ZERO,
            full_every: 1,
        };
        let (handle, _task) = spawn(
            Box::new(d),
            refresh,
            Reports {
                errors,
                drawn,
                progress: mpsc::channel(64).0,
            },
        );
        handle.show(1, msg(1));
        let png = BASE64.decode(pngs.recv().await.expect("a PNG")).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let shown = frames.last().expect("a frame");
        assert_eq!(png, encode(&shown).unwrap(), "the frame the panel took");
        // A flood draws every frame it can; its image comes once, the latest,
        // a second after the one before.
        let first = Instant::now();
        for i in 2..=10 {
            handle.show(u64::from(i), msg(i));
            tokio::task::yield_now().await;
        }
        let png = BASE64.decode(pngs.recv().await.expect("a PNG")).unwrap();
        assert!(Instant::now() - first >= IMAGE_INTERVAL);
        let latest = frames.last().expect("a frame");
        assert_eq!(latest, render(&msg(10), 264, 176));
        assert_eq!(png, encode(&latest).unwrap());
        assert!(pngs.try_recv().is_err(), "one image for the flood");
    }
}
