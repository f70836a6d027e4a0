//! Talking to systemd: `READY=1` once the agent's parts run (with or
//! without a broker), `STATUS=` for the link, `WATCHDOG=1` at
//! half the `WatchdogSec` interval (from the agent's main loop, so a hung
//! loop stops feeding it), `STOPPING=1` at shutdown. Without systemd
//! (`NOTIFY_SOCKET` unset) all of it does nothing. And the process's answer
//! to a panic in any of the agent's tasks: stop cleanly, outputs safe,
//! non-zero exit, rather than run on half-dead.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use sd_notify::NotifyState;
use tracing::{debug, warn};

/// The agent's link to systemd's service manager.
#[derive(Debug)]
pub(crate) struct Systemd {
    ready_sent: bool,
    watchdog: Option<Duration>,
}

impl Systemd {
    /// Reads `NOTIFY_SOCKET` and `WATCHDOG_USEC` from the environment.
    pub(crate) fn from_env() -> Self {
        Systemd {
            ready_sent: false,
            // `WATCHDOG_USEC=0` is no watchdog, not one fed without pause.
            watchdog: sd_notify::watchdog_enabled().filter(|d| !d.is_zero()),
        }
    }

    fn send(&self, states: &[NotifyState]) {
        if let Err(e) = sd_notify::notify(states) {
            warn!(error = %e, "cannot notify systemd");
        }
    }

    /// Tells systemd the service is up: its parts run, with or without a broker.
    pub(crate) fn ready(&mut self) {
        if !self.ready_sent {
            self.ready_sent = true;
            debug!("READY=1");
            self.send(&[
                NotifyState::Ready,
                NotifyState::Status("connecting to the broker"),
            ]);
        }
    }

    /// Shows in `systemctl status` that the agent is online.
    pub(crate) fn online(&self) {
        self.send(&[NotifyState::Status("online")]);
    }

    /// Shows in `systemctl status` that the broker is away.
    pub(crate) fn offline(&self) {
        self.send(&[NotifyState::Status("broker away, reconnecting")]);
    }

    /// How often to feed the watchdog, if systemd asked for it.
    pub(crate) fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|d| d / 2)
    }

    /// Feeds the watchdog.
    pub(crate) fn feed(&self) {
        self.send(&[NotifyState::Watchdog]);
    }

    /// Tells systemd the service is stopping.
    pub(crate) fn stopping(&self) {
        self.send(&[NotifyState::Stopping]);
    }
}

thread_local! {
    /// Whether this thread runs the agent's own code (see [`claim_thread`]).
    static AGENT_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks the calling thread as one of the agent's: a panic on it stops the
/// agent ([`next_panic`]). Threads of libraries running in the same process
/// (an in-process broker) are not the agent's and are never claimed.
pub(crate) fn claim_thread() {
    AGENT_THREAD.with(|c| c.set(true));
}

/// Completes with the message of the next panic on one of the agent's
/// threads (`claim_thread`) after this call, so the agent can put its
/// outputs in their safe state and stop. Every panic is still reported on
/// stderr as usual. The first call installs the panic hook; later calls
/// share it.
pub fn next_panic() -> impl Future<Output = String> {
    type Panics = tokio::sync::watch::Sender<(u64, String)>;
    static PANICS: OnceLock<Panics> = OnceLock::new();
    let tx = PANICS.get_or_init(|| {
        let tx = Panics::new((0, String::new()));
        let hook_tx = tx.clone();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            if !AGENT_THREAD.with(|c| c.get()) {
                return;
            }
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
