//! Talking to systemd: `READY=1` once the agent is online, `WATCHDOG=1` at
//! half the `WatchdogSec` interval (from the agent's main loop, so a hung
//! loop stops feeding it), `STOPPING=1` at shutdown. Without systemd
//! (`NOTIFY_SOCKET` unset) all of it does nothing. And the process's answer
//! to a panic in any of its tasks: stop cleanly, outputs safe, non-zero exit,
//! rather than run on half-dead.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use sd_notify::NotifyState;
use tracing::{debug, warn};

/// The agent's link to systemd's service manager.
#[derive(Debug)]
pub struct Systemd {
    ready_sent: bool,
    watchdog: Option<Duration>,
}

impl Systemd {
    /// Reads `NOTIFY_SOCKET` and `WATCHDOG_USEC` from the environment.
    pub fn from_env() -> Self {
        Systemd {
            ready_sent: false,
            watchdog: sd_notify::watchdog_enabled(),
        }
    }

    fn send(&self, states: &[NotifyState]) {
        if let Err(e) = sd_notify::notify(states) {
            warn!(error = %e, "cannot notify systemd");
        }
    }

    /// Tells systemd the service is up (the first time the agent is online).
    pub fn ready(&mut self) {
        if !self.ready_sent {
            self.ready_sent = true;
            debug!("READY=1");
            self.send(&[NotifyState::Ready, NotifyState::Status("online")]);
        }
    }

    /// How often to feed the watchdog, if systemd asked for it.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|d| d / 2)
    }

    /// Feeds the watchdog.
    pub fn feed(&self) {
        self.send(&[NotifyState::Watchdog]);
    }

    /// Tells systemd the service is stopping.
    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping]);
    }
}

/// Completes with the message of the next panic, in any thread or task of
/// the process, after this call, so the agent can put its outputs in their
/// safe state and stop. The panic is still reported on stderr as usual. The
/// first call installs the panic hook; later calls share it.
pub fn next_panic() -> impl Future<Output = String> {
    type Panics = tokio::sync::watch::Sender<(u64, String)>;
    static PANICS: OnceLock<Panics> = OnceLock::new();
    let tx = PANICS.get_or_init(|| {
        let tx = Panics::new((0, String::new()));
        let hook_tx = tx.clone();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            let message = info.to_string();
            hook_tx.send_modify(|(count, last)| {
                *count += 1;
                *last = message;
            });
        }));
        tx
    });
    let mut rx = tx.subscribe();
    let seen = rx.borrow_and_update().0;
    async move {
        loop {
            {
                let now = rx.borrow_and_update();
                if now.0 > seen {
                    return now.1.clone();
                }
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}
