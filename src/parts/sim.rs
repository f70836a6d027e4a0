//! The simulated backend's own topics: a press of the simulated button, and
//! fault injection that proves the agent goes safe and stops on a panic.

use std::time::Duration;

use tokio::sync::mpsc;

use crate::agent::AgentError;
use crate::hardware::sim::ButtonInjector;
use crate::hardware::HardwareError;
use crate::mqtt::topic::Verb;
use crate::parts::input::CommandError;
use crate::parts::{Device, Now, Out, Start};

/// The simulated backend's controls.
pub(crate) struct Sim {
    /// The presses of the simulated button, when there is one, made one
    /// after another (each held as long as it says) by a task of its own.
    presses: Option<mpsc::Sender<Duration>>,
}

/// The most presses of the simulated button waiting their turn.
const QUEUED_PRESSES: usize = 32;

/// Between two queued presses of the simulated button: released this long.
const BETWEEN_PRESSES: Duration = Duration::from_millis(100);

/// A command to the simulated backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SimCommand {
    /// Press the simulated button, holding it this long.
    Press(Duration),
    /// Panic in the agent.
    Panic {
        /// In the agent loop itself (payload `loop`), not in one of its tasks.
        in_loop: bool,
    },
}

/// One press of the simulated button, then the pause before the next.
async fn press(button: &ButtonInjector, held: Duration) {
    button.hold(held).await;
    tokio::time::sleep(BETWEEN_PRESSES).await;
}

/// The longest simulated press, in ms.
const MAX_PRESS_MS: u64 = 60_000;

/// How long `sim/button/press` holds the button: empty, the length of a
/// click; else a number of milliseconds (`1200` holds it 1.2 s).
fn press_length(payload: &[u8]) -> Result<Duration, CommandError> {
    let p = crate::parts::input::text(payload)?.trim();
    if p.is_empty() {
        return Ok(crate::hardware::sim::INJECTED_PRESS);
    }
    match p.parse::<u64>() {
        Ok(ms) if (1..=MAX_PRESS_MS).contains(&ms) => Ok(Duration::from_millis(ms)),
        _ => Err(CommandError::BadPayload(format!(
            "{:?}: how long to hold the button, 1 to {MAX_PRESS_MS} ms (empty: a click)",
            crate::quote::clip(p, 24)
        ))),
    }
}

impl Device for Sim {
    type Command = SimCommand;

    fn start(start: &mut Start<'_>) -> Result<Option<Self>, AgentError> {
        let Some(sim) = start.hardware.sim.as_ref() else {
            return Ok(None);
        };
        let presses = sim.input("button").cloned().map(|button| {
            let (tx, mut rx) = mpsc::channel::<Duration>(QUEUED_PRESSES);
            start.tasks.push(tokio::spawn(async move {
                while let Some(held) = rx.recv().await {
                    press(&button, held).await;
                }
            }));
            tx
        });
        Ok(Some(Sim { presses }))
    }

    fn verbs(&self) -> &'static [Verb] {
        if self.presses.is_some() {
            &[Verb::SimPress, Verb::SimPanic]
        } else {
            &[Verb::SimPanic]
        }
    }

    fn parse(
        &self,
        verb: Verb,
        _: Option<&str>,
        payload: &[u8],
    ) -> Result<SimCommand, CommandError> {
        Ok(match verb {
            Verb::SimPress => SimCommand::Press(press_length(payload)?),
            _ => SimCommand::Panic {
                in_loop: payload.trim_ascii() == b"loop",
            },
        })
    }

    fn execute(&mut self, cmd: SimCommand, _: &Now) -> Result<Vec<Out>, CommandError> {
        match cmd {
            SimCommand::Panic { in_loop: false } => {
                // A task dies, as a bug in one would: the process must notice.
                tokio::spawn(async { panic!("injected through the sim/panic topic") });
            }
            SimCommand::Panic { in_loop: true } => {
                panic!("injected into the agent loop through the sim/panic topic")
            }
            SimCommand::Press(held) => {
                let presses = self
                    .presses
                    .as_ref()
                    .ok_or_else(|| CommandError::Disabled("the simulated button".into()))?;
                presses.try_send(held).map_err(|_| {
                    CommandError::BadPayload(format!(
                        "{QUEUED_PRESSES} presses of the simulated button wait already"
                    ))
                })?;
            }
        }
        Ok(Vec::new())
    }

    fn states(&mut self, _: &Now) -> Vec<Out> {
        Vec::new()
    }

    async fn stop(self, _: Now) -> (Vec<Out>, Result<(), HardwareError>) {
        (Vec::new(), Ok(()))
    }
}
