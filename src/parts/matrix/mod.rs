//! The 5×5 LED matrix: its frame type, its pattern language and the engine
//! that plays a pattern on the outputs.

pub(crate) mod command;
pub(crate) mod config;
pub mod engine;
mod frame;
pub mod pattern;
pub(crate) mod saved;

pub use frame::Frame;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::warn;

use self::command::{parse_matrix, parse_save, MatrixSet};
use self::engine::{MatrixCommand, MatrixHandle, MatrixState};
use self::pattern::{Library, Node};
use crate::agent::AgentError;
use crate::hardware::HardwareError;
use crate::mqtt::topic::{state, Verb};
use crate::parts::input::{text, CommandError};
use crate::parts::{Device, Entity, Event, Now, Out, Start};

/// The matrix as a part: its pattern engine and what it last reported.
pub(crate) struct Matrix {
    engine: MatrixHandle,
    task: JoinHandle<()>,
    /// The shipped patterns and the saved ones.
    library: Library,
    /// Where the saved ones are kept.
    store: saved::Store,
    state: MatrixState,
    /// The program ON brings back.
    last: Option<(Arc<Node>, Option<String>)>,
    /// The frame when safe (`safety.matrix`).
    safe: Frame,
}

/// The verbs of the topic table the part takes.
const VERBS: &[Verb] = &[Verb::Matrix, Verb::SavePattern];

impl Matrix {
    /// Every LED blinking for `d`, then what was shown before (the last
    /// program while on, dark while off).
    fn flash(&self, d: Duration) -> MatrixCommand {
        let half = FLASH_HALF_MS;
        let times = d.as_millis().div_ceil(u128::from(2 * half));
        let blink = Node::Blink {
            leds: Frame::ALL,
            interval_ms: half,
            times: Some(u64::try_from(times).unwrap_or(u64::MAX)),
        };
        let (back, effect) = match (&self.last, self.state.on) {
            (Some((program, effect)), true) => ((**program).clone(), effect.clone()),
            _ => (Node::Frame(Frame::OFF), None),
        };
        MatrixCommand::Run {
            program: Arc::new(Node::Sequence(vec![blink, back])),
            effect,
        }
    }
}

/// How long the matrix flashes to identify the device.
const IDENTIFY: Duration = Duration::from_secs(2);

/// Half a flash of the matrix, in ms: lit this long, then dark this long.
const FLASH_HALF_MS: u64 = 250;

impl Device for Matrix {
    type Command = MatrixSet;

    fn start(start: &mut Start<'_>) -> Result<Option<Self>, AgentError> {
        let Some(outputs) = start.hardware.outputs(state::MATRIX) else {
            return Ok(None);
        };
        let mut library = Library::shared()
            .map_err(|e| AgentError::Patterns(e.to_string()))?
            .clone();
        let store = saved::Store::new(&start.settings.config.device.state_dir);
        store.load(&mut library);
        let safe = start.settings.safety.matrix;
        let (states_tx, mut states) = watch::channel(MatrixState::default());
        let errors = start.failures(state::MATRIX);
        let (engine, task) = engine::spawn(outputs, states_tx, errors, safe)?;
        // The engine's states, the latest of them while the core is busy.
        let events = start.events.clone();
        start.tasks.push(tokio::spawn(async move {
            while states.changed().await.is_ok() {
                let s = states.borrow_and_update().clone();
                if events.send(Event::Matrix(s)).await.is_err() {
                    break;
                }
            }
        }));
        Ok(Some(Matrix {
            engine,
            task,
            library,
            store,
            state: MatrixState::default(),
            last: None,
            safe,
        }))
    }

    fn verbs(&self) -> &'static [Verb] {
        VERBS
    }

    fn parse(
        &self,
        verb: Verb,
        name: Option<&str>,
        payload: &[u8],
    ) -> Result<MatrixSet, CommandError> {
        match verb {
            Verb::SavePattern => {
                parse_save(name.unwrap_or_default(), text(payload)?, &self.library)
            }
            _ => parse_matrix(text(payload)?, &self.library),
        }
    }

    fn execute(&mut self, set: MatrixSet, _: &Now) -> Result<Vec<Out>, CommandError> {
        let dir = || self.store.dir().display().to_string();
        match set {
            MatrixSet::Save {
                name,
                program,
                source,
            } => {
                self.store.save(&name, &source).map_err(|e| {
                    CommandError::BadPayload(format!(
                        "cannot save the pattern in {}: {e} (device.state_dir)",
                        dir()
                    ))
                })?;
                self.library.put(&name, program);
                return Ok(vec![Out::Rediscover]);
            }
            MatrixSet::Delete(name) => {
                self.store.delete(&name).map_err(|e| {
                    CommandError::BadPayload(format!("cannot delete the pattern in {}: {e}", dir()))
                })?;
                self.library.remove(&name);
                return Ok(vec![Out::Rediscover]);
            }
            _ => {}
        }
        let flashing = matches!(set, MatrixSet::Flash(_));
        // The engine reports the new state when the program starts.
        let cmd = match set {
            MatrixSet::Run { program, effect } => MatrixCommand::Run { program, effect },
            MatrixSet::Off => MatrixCommand::Off,
            MatrixSet::On => {
                let (program, effect) = self
                    .last
                    .clone()
                    .unwrap_or_else(|| (Arc::new(Node::Frame(Frame::ALL)), None));
                MatrixCommand::Run { program, effect }
            }
            MatrixSet::Flash(d) => self.flash(d),
            // Taken above.
            MatrixSet::Save { .. } | MatrixSet::Delete(_) => return Ok(Vec::new()),
        };
        self.engine
            .send(cmd.clone())
            .map_err(CommandError::refused)?;
        if let (MatrixCommand::Run { program, effect }, false) = (cmd, flashing) {
            self.last = Some((program, effect));
        }
        Ok(Vec::new())
    }

    fn states(&mut self, _: &Now) -> Vec<Out> {
        vec![Out::state(state::MATRIX, self.state.payload())]
    }

    fn effects(&self) -> Option<Vec<String>> {
        Some(self.library.names().into_iter().map(String::from).collect())
    }

    fn react(&mut self, event: &Event, _: &Now) -> Vec<Out> {
        match event {
            Event::Matrix(s) => {
                self.state = s.clone();
                vec![Out::state(state::MATRIX, s.payload())]
            }
            Event::Identify => {
                if let Err(e) = self.engine.send(self.flash(IDENTIFY)) {
                    warn!(error = %e, "could not flash the matrix");
                }
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    fn go_safe(&mut self, now: &Now) -> Vec<Out> {
        let cmd = if self.safe.is_off() {
            MatrixCommand::Off
        } else {
            MatrixCommand::Run {
                program: Arc::new(Node::Frame(self.safe)),
                effect: None,
            }
        };
        if let Err(e) = self.engine.send(cmd) {
            warn!(error = %e, "could not put the matrix in its safe state");
        }
        self.states(now)
    }

    async fn stop(self, _: Now) -> (Vec<Out>, Result<(), HardwareError>) {
        let frame = self.safe;
        let safe = MatrixState {
            on: !frame.is_off(),
            effect: None,
            frame,
        };
        let states = vec![Out::state(state::MATRIX, safe.payload())];
        // Without its handle the engine shows the safe frame and stops.
        drop(self.engine);
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_millis(200), &mut task)
            .await
            .is_err()
        {
            task.abort();
            let late = HardwareError::Invalid("the matrix did not stop in time".into());
            return (states, Err(late));
        }
        (states, Ok(()))
    }
}

/// The matrix's Home Assistant entity: a JSON light whose effects are the
/// named patterns.
pub fn entity(enabled: bool, effects: &[&str]) -> Entity {
    Entity {
        component: "light",
        object: "matrix".into(),
        name: "Matrix".into(),
        enabled,
        command: Some((Verb::Matrix, "")),
        state: Some(state::MATRIX.into()),
        fields: json!({
            "schema": "json",
            "effect": true,
            "effect_list": effects,
            "supported_color_modes": ["onoff"],
            "icon": "mdi:dots-grid",
        }),
        ..Entity::default()
    }
}
