//! The simulated backend's own topics: a press of the simulated button, and
//! fault injection that proves the agent goes safe and stops on a panic.

use crate::agent::AgentError;
use crate::hardware::sim::ButtonInjector;
use crate::hardware::HardwareError;
use crate::mqtt::topic::Verb;
use crate::parts::input::CommandError;
use crate::parts::{Device, Now, Out, Start};

/// The simulated backend's controls.
pub(crate) struct Sim {
    /// What presses the simulated button, when there is one.
    button: Option<ButtonInjector>,
}

/// A command to the simulated backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SimCommand {
    /// Press the simulated button.
    Press,
    /// Panic in the agent.
    Panic {
        /// In the agent loop itself (payload `loop`), not in one of its tasks.
        in_loop: bool,
    },
}

impl Device for Sim {
    type Command = SimCommand;

    fn start(start: &mut Start<'_>) -> Result<Option<Self>, AgentError> {
        Ok(start.hardware.sim.as_ref().map(|sim| Sim {
            button: sim.input("button").cloned(),
        }))
    }

    fn verbs(&self) -> &'static [Verb] {
        if self.button.is_some() {
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
            Verb::SimPress => SimCommand::Press,
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
            SimCommand::Press => {
                let button = self
                    .button
                    .clone()
                    .ok_or_else(|| CommandError::Disabled("the simulated button".into()))?;
                tokio::spawn(async move { button.press().await });
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
