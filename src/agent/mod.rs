//! The agent: a thin loop around its pure [`core`]. The loop waits for
//! whatever happens (a message, the link, a timer, a part's report), hands it
//! to `Core::step` and gives the outputs to the transport; it shuts down to
//! a safe state.

pub mod core;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::info;

use self::core::{Core, Input, Output, Wiring};
use crate::clock::{self, SystemClock, WallClock};
use crate::config::Settings;
use crate::hardware::{Hardware, HardwareError};
use crate::mqtt::transport::{
    Inbound, Link, Publisher, Transport, TransportError, TransportOptions,
};

/// How long the MQTT goodbye (`offline`, DISCONNECT) may take at shutdown.
pub(crate) const GOODBYE: Duration = Duration::from_millis(500);

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A hardware part could not be set up.
    #[error("hardware: {0}")]
    Hardware(#[from] HardwareError),
    /// The MQTT connection could not be set up.
    #[error("mqtt: {0}")]
    Transport(#[from] TransportError),
    /// The built-in pattern library is broken (a build problem).
    #[error("patterns: {0}")]
    Patterns(String),
    /// The shipped tunes are broken (a build problem).
    #[error("tunes: {0}")]
    Tunes(String),
    /// The agent's own loop panicked; the outputs were made safe after it.
    #[error("the agent loop panicked, outputs made safe: {0}")]
    Panicked(String),
}

/// Messages the transport may hand over before the agent loop has taken
/// them. When it is full the transport stops reading, and the broker holds
/// the rest: a burst of large payloads (up to 2 MiB each) keeps at most
/// this many in the agent's memory.
const INBOUND_QUEUE: usize = 16;

/// Runs the agent until `shutdown` completes, then puts every output at its
/// safe value (`[safety]`; off by default), publishes `offline` and returns.
pub async fn run(
    settings: Settings,
    hardware: Hardware,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    run_with_clock(settings, hardware, Arc::new(SystemClock), shutdown).await
}

/// [`run`] with the wall clock given (tests pass one that follows paused tokio time).
pub async fn run_with_clock(
    settings: Settings,
    hardware: Hardware,
    wall: Arc<dyn WallClock>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    // A panic on this thread (the agent loop, its tasks) is the agent's own.
    crate::service::claim_thread();
    let (mut core, mut wiring) = Core::new(&settings, hardware, Arc::clone(&wall))?;
    let (inbound_tx, mut inbound) = tokio::sync::mpsc::channel::<Inbound>(INBOUND_QUEUE);
    let (mut transport, mut link) = Transport::start(
        TransportOptions::from_settings(&settings, std::mem::take(&mut wiring.filters)),
        inbound_tx,
    )?;
    let publisher = transport.publisher();
    send(&publisher, core.announce());
    // Everything retained is registered: connect, and it all goes out before `online`.
    transport.connect();
    // Minutes for the board, and steps of the wall clock (NTP at boot on a
    // Pi without a clock chip), which correct the start time.
    let mut clock_events = clock::events(Arc::clone(&wall), settings.time_zone);
    let mut systemd = crate::service::Systemd::from_env();
    let mut watchdog = systemd.watchdog_interval().map(tokio::time::interval);
    // The parts run: the board works without a broker (clock, button,
    // safe state), so systemd need not wait for one.
    systemd.ready();
    tokio::pin!(shutdown);
    let looped = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(async {
        loop {
            let (flushable, backlogged) = publisher.pressure();
            // A batch of acknowledgements waits while commands are queued.
            let flushable = flushable && (backlogged || inbound.is_empty());
            let next = core.deadline(Instant::now());
            let input = tokio::select! {
                _ = &mut shutdown => break,
                // Back-pressure: what the last command caused goes out first.
                _ = publisher.flush(), if flushable => continue,
                Some(msg) = inbound.recv(), if !backlogged => Input::Message(msg),
                _ = tick(watchdog.as_mut()) => {
                    systemd.feed();
                    continue;
                }
                _ = sleep_until_some(next.map(|(at, _)| at)) => match next {
                    Some((_, timer)) => Input::Timer(timer),
                    None => continue,
                },
                Some(event) = wiring.events.recv() => Input::Part(event),
                Some(event) = clock_events.recv() => match event {
                    clock::ClockEvent::Minute(at) => Input::Minute(at),
                    clock::ClockEvent::Stepped(step) => Input::Stepped(step),
                },
                Ok(()) = link.changed() => {
                    let now = *link.borrow_and_update();
                    tell_systemd(now, &mut systemd, &publisher);
                    Input::Link(now)
                }
            };
            let a_message = matches!(input, Input::Message(_));
            send(&publisher, core.step(input, Instant::now()));
            if a_message {
                // Let the device tasks (the matrix engine, the display) take
                // this command before the next one replaces it: in a burst,
                // each is applied in turn while they keep up, and only what
                // they cannot keep up with is superseded (never queued).
                tokio::task::yield_now().await;
            }
        }
    }))
    .await;
    if let Err(panic) = &looped {
        tracing::error!(panic = %panic_message(panic.as_ref()), "the agent loop panicked: outputs to their safe values, going offline");
    }
    info!("shutting down: outputs off, going offline");
    systemd.stopping();
    let off = stop(core, wiring, transport).await;
    if let Err(panic) = looped {
        return Err(AgentError::Panicked(panic_message(panic.as_ref())));
    }
    off.map_err(AgentError::Hardware)
}

/// The shutdown's order: the parts' tasks end, the outputs go to their safe
/// values and their states are published, then `offline` and DISCONNECT.
async fn stop(core: Core, mut wiring: Wiring, transport: Transport) -> Result<(), HardwareError> {
    for t in wiring.tasks.drain(..) {
        t.abort();
    }
    let (outputs, off) = core.stop().await;
    send(&transport.publisher(), outputs);
    transport.shutdown(GOODBYE).await;
    off
}

/// Tells systemd what the connection did; back online, logs the events
/// that were dropped while the broker was away.
fn tell_systemd(link: Link, systemd: &mut crate::service::Systemd, publisher: &Publisher) {
    match link {
        Link::Up => {
            systemd.online();
            let dropped = publisher.take_dropped_events();
            if dropped > 0 {
                info!(dropped, "events dropped while the broker was away");
            }
        }
        Link::Down => systemd.offline(),
    }
}

/// Hands the core's outputs to the transport, in order.
fn send(publisher: &Publisher, outputs: Vec<Output>) {
    for o in outputs {
        match o {
            Output::Retain { topic, payload } => publisher.retain(&topic, payload),
            Output::Event { topic, payload } => publisher.event(&topic, payload),
            Output::Report { topic, payload } => publisher.report(&topic, payload),
            Output::Reply { to, payload } => publisher.reply(&to, payload),
            Output::Ack(ack) => publisher.ack(ack),
            Output::RepublishRetained => publisher.republish_retained(),
        }
    }
}

/// Completes at the watchdog's next tick; never without one.
async fn tick(watchdog: Option<&mut tokio::time::Interval>) {
    match watchdog {
        Some(w) => {
            w.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The message a panic carried.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Completes at `deadline`; never without one.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
