//! The agent: wires the transport, the command router and the devices
//! together, answers every command, and shuts down to a safe state.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::command::{Catalog, Command, CommandError, Router};
use crate::config::Settings;
use crate::device::button::{self, ButtonEvent};
use crate::device::led::{Led, LedState};
use crate::device::matrix::{Matrix, MatrixState};
use crate::hardware::sim::ButtonInjector;
use crate::hardware::{Hardware, HardwareError};
use crate::transport::{Inbound, Link, Publisher, Transport, TransportError, TransportOptions};

/// How long the MQTT goodbye (`offline`, DISCONNECT) may take at shutdown.
pub const GOODBYE: Duration = Duration::from_millis(500);

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A hardware part could not be set up.
    #[error("hardware: {0}")]
    Hardware(#[from] HardwareError),
    /// The MQTT connection could not be set up.
    #[error("mqtt: {0}")]
    Transport(#[from] TransportError),
}

/// The device parts and the topics their state goes to.
struct Parts {
    base: String,
    leds: Vec<(String, Led)>,
    matrix: Option<Matrix>,
    button_injector: Option<ButtonInjector>,
}

impl Parts {
    fn led_topic(&self, name: &str) -> String {
        format!("{}/led/{name}", self.base)
    }

    fn publish_led(&self, publisher: &Publisher, name: &str, state: LedState) {
        let payload = json!({
            "state": if state.on { "ON" } else { "OFF" },
            "brightness": state.brightness,
        });
        publisher.retain(&self.led_topic(name), payload.to_string());
    }

    fn publish_matrix(&self, publisher: &Publisher, state: MatrixState) {
        let payload = json!({
            "state": if state.on { "ON" } else { "OFF" },
            "effect": null,
            "frame": state.shown.to_text(),
        });
        publisher.retain(&format!("{}/matrix", self.base), payload.to_string());
    }

    fn publish_all(&self, publisher: &Publisher) {
        for (name, led) in &self.leds {
            self.publish_led(publisher, name, led.state());
        }
        if let Some(m) = &self.matrix {
            self.publish_matrix(publisher, m.state());
        }
    }

    /// Carries out one command; on error nothing has changed.
    fn execute(&mut self, cmd: Command, publisher: &Publisher) -> Result<(), CommandError> {
        let hw =
            |e: HardwareError| CommandError::BadPayload(format!("the hardware refused it: {e}"));
        match cmd {
            Command::Led { name, set } => {
                let led = self
                    .leds
                    .iter_mut()
                    .find(|(n, _)| *n == name)
                    .map(|(_, l)| l)
                    .ok_or_else(|| CommandError::Disabled(format!("LED {name}")))?;
                let state = led.apply(set).map_err(hw)?;
                self.publish_led(publisher, &name, state);
            }
            Command::Matrix(set) => {
                let m = self
                    .matrix
                    .as_mut()
                    .ok_or_else(|| CommandError::Disabled("the LED matrix".into()))?;
                let state = m.apply(&set).map_err(hw)?;
                self.publish_matrix(publisher, state);
            }
            Command::SimButtonPress => {
                let inj = self
                    .button_injector
                    .clone()
                    .ok_or_else(|| CommandError::Disabled("the simulated button".into()))?;
                tokio::spawn(async move { inj.press().await });
            }
        }
        Ok(())
    }

    /// Every output to its safe (off) value; returns the first failure.
    fn all_off(&mut self) -> Result<(), HardwareError> {
        let mut first = None;
        for (name, led) in &mut self.leds {
            if let Err(e) = led.off() {
                warn!(led = %name, error = %e, "could not turn the LED off");
                first.get_or_insert(e);
            }
        }
        if let Some(m) = &mut self.matrix {
            if let Err(e) = m.off() {
                warn!(error = %e, "could not turn the matrix off");
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// Runs the agent until `shutdown` completes, then turns every output off,
/// publishes `offline` and returns.
pub async fn run(
    settings: Settings,
    hardware: Hardware,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let base = settings.base_topic.clone();
    let Hardware {
        leds,
        matrix,
        button,
        sim,
    } = hardware;
    let mut parts = Parts {
        base: base.clone(),
        leds: leds
            .into_iter()
            .map(|(n, pwm)| Ok((n, Led::new(pwm)?)))
            .collect::<Result<_, HardwareError>>()?,
        matrix: matrix.map(Matrix::new).transpose()?,
        button_injector: sim.as_ref().and_then(|s| s.button.clone()),
    };
    let router = Router::new(
        base.clone(),
        Catalog {
            leds: parts.leds.iter().map(|(n, _)| n.clone()).collect(),
            matrix: parts.matrix.is_some(),
            sim_button: parts.button_injector.is_some(),
        },
    );

    let (inbound_tx, mut inbound) = mpsc::channel::<Inbound>(256);
    let (transport, mut link) = Transport::start(
        TransportOptions::from_settings(&settings, vec![format!("{base}/#")]),
        inbound_tx,
    )?;
    let publisher = transport.publisher();
    parts.publish_all(&publisher);

    let (button_tx, mut button_rx) = mpsc::channel::<ButtonEvent>(16);
    let mut button_task = None;
    if let Some(mut input) = button {
        let edges = input.edges()?;
        button_task = Some(tokio::spawn(button::watch(edges, button_tx)));
    }

    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(msg) = inbound.recv() => handle(&router, &mut parts, &publisher, msg),
            Some(ev) = button_rx.recv() => {
                let payload = json!({
                    "event_type": ev.event_type(),
                    "at": chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, false),
                });
                publisher.event(&format!("{base}/button/event"), payload.to_string());
            }
            Ok(()) = link.changed() => {
                match *link.borrow_and_update() {
                    Link::Up => info!(base = %base, "online"),
                    Link::Down => warn!("broker connection lost; reconnecting"),
                }
            }
        }
    }

    info!("shutting down: outputs off, going offline");
    if let Some(t) = button_task {
        t.abort();
    }
    let off = parts.all_off();
    parts.publish_all(&publisher);
    transport.shutdown(GOODBYE).await;
    off.map_err(AgentError::Hardware)
}

fn handle(router: &Router, parts: &mut Parts, publisher: &Publisher, msg: Inbound) {
    if !router.is_command_topic(&msg.topic) {
        return; // our own state, status and error topics
    }
    let result = router
        .parse(&msg.topic, &msg.payload)
        .and_then(|cmd| parts.execute(cmd, publisher));
    match result {
        Ok(()) => {
            if let Some(to) = &msg.reply_to {
                publisher.reply(to, Bytes::from_static(br#"{"ok":true}"#));
            }
        }
        Err(e) => {
            let error = e.to_string();
            warn!(topic = %msg.topic, %error, "command rejected");
            publisher.event(
                &format!("{}/error", parts.base),
                json!({ "topic": msg.topic, "error": error }).to_string(),
            );
            if let Some(to) = &msg.reply_to {
                publisher.reply(to, json!({ "ok": false, "error": error }).to_string());
            }
        }
    }
}
