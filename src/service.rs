//! Talking to systemd: `READY=1` once the agent is online, `WATCHDOG=1` at
//! half the `WatchdogSec` interval (from the agent's main loop, so a hung
//! loop stops feeding it), `STOPPING=1` at shutdown. Without systemd
//! (`NOTIFY_SOCKET` unset) all of it does nothing.

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
