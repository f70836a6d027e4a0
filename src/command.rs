//! Turns an incoming `<base>/.../set` topic and its payload into a typed
//! [`Command`], or into a [`CommandError`] that says in plain words what was
//! wrong. Nothing here touches MQTT or hardware.

use serde::Deserialize;

use crate::mqtt::topic::{Route, Topics, Verb};
use crate::parts::matrix::Frame;
use crate::quote::{clip, MAX_ECHO};

/// Largest command payload accepted, in bytes.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// A command for one part of the device.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Set one of the PWM LEDs.
    Led {
        /// The LED's name (`left`, `right`).
        name: String,
        /// What to do with it.
        set: LedSet,
    },
    /// Set the LED matrix.
    Matrix(MatrixSet),
    /// Show a message on the board (stops the clock).
    DisplayMessage {
        /// The text, trimmed, not empty.
        text: String,
        /// The sender, if given.
        from: Option<String>,
    },
    /// Start (`true`) or stop the board's clock.
    Clock(bool),
    /// A gravity vector from the phone; its y drives the LEDs.
    Tilt(Tilt),
    /// Sound the buzzer.
    Buzzer(BuzzerSet),
    /// Press the simulated button.
    SimButtonPress,
    /// Panic in the agent (the simulated backend's fault injection, to
    /// prove the agent goes safe and stops).
    SimPanic {
        /// In the agent loop itself (payload `loop`), not in one of its tasks.
        in_loop: bool,
    },
}

/// What the buzzer should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuzzerSet {
    /// Sound until OFF.
    On,
    /// Silence.
    Off,
    /// Sound for this many milliseconds.
    Beep(u64),
}

/// A gravity vector, each component within ±100 (clamped).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tilt {
    /// Left/right.
    pub x: f64,
    /// Forward/back: drives the LEDs.
    pub y: f64,
    /// Up/down.
    pub z: f64,
}

impl Tilt {
    /// Largest magnitude of a component; larger values are clamped to it.
    pub const LIMIT: f64 = 100.0;

    fn new(x: f64, y: f64, z: f64) -> Result<Tilt, CommandError> {
        for (name, v) in [("x", x), ("y", y), ("z", z)] {
            if !v.is_finite() {
                return Err(CommandError::BadPayload(format!(
                    "{name} is {v}; tilt values are finite numbers"
                )));
            }
        }
        let c = |v: f64| v.clamp(-Self::LIMIT, Self::LIMIT);
        Ok(Tilt {
            x: c(x),
            y: c(y),
            z: c(z),
        })
    }
}

/// Longest sender name accepted, in characters.
pub const MAX_FROM_CHARS: usize = 64;

/// A change to one PWM LED, in Home Assistant's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedSet {
    /// `Some(true)` = ON, `Some(false)` = OFF, `None` = leave as is.
    pub state: Option<bool>,
    /// New brightness 0..=255, when given.
    pub brightness: Option<u8>,
}

/// A change to the LED matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatrixSet {
    /// Run a program (a frame, a named pattern, or a JSON program).
    Run {
        /// The program.
        program: std::sync::Arc<crate::parts::matrix::pattern::Node>,
        /// The pattern's name, when it is a named one.
        effect: Option<String>,
    },
    /// Stop and turn every LED off.
    Off,
    /// Turn the matrix back on with its last program.
    On,
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The topic is below `<base>` and ends in `/set`, but names nothing known.
    #[error("unknown command topic; known commands: {known}")]
    UnknownTopic {
        /// The commands that exist on this device.
        known: String,
    },
    /// The part exists in the product but is disabled in this device's config.
    #[error("{0} is disabled in this device's configuration")]
    Disabled(String),
    /// The payload is not UTF-8 text.
    #[error("the payload is not valid UTF-8 text")]
    NotUtf8,
    /// The payload is larger than [`MAX_PAYLOAD`].
    #[error("the payload is {0} bytes; the most a command takes is {MAX_PAYLOAD}")]
    TooLarge(usize),
    /// The payload could not be understood.
    #[error("{0}")]
    BadPayload(String),
}

/// What the router needs to know about the device: which parts exist.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Names of the PWM LEDs.
    pub leds: Vec<String>,
    /// The matrix's named patterns, when the matrix is enabled.
    pub matrix: Option<std::sync::Arc<crate::parts::matrix::pattern::Library>>,
    /// Whether the simulated backend's controls are available.
    pub sim_button: bool,
    /// Whether the simulated backend's fault injection is available.
    pub sim_faults: bool,
    /// The message board, with the longest message it takes (characters).
    pub display: Option<usize>,
    /// Whether the tilt LEDs are fitted.
    pub tilt: bool,
    /// The buzzer, with the longest beep it takes (ms).
    pub buzzer: Option<u64>,
}

impl Catalog {
    /// The commands the device has, in the topic table's terms.
    pub fn verbs(&self) -> Vec<Verb> {
        let has = [
            (Verb::Led, !self.leds.is_empty()),
            (Verb::Tilt, self.tilt),
            (Verb::Matrix, self.matrix.is_some()),
            (Verb::Buzzer, self.buzzer.is_some()),
            (Verb::Message, self.display.is_some()),
            (Verb::Clock, self.display.is_some()),
            (Verb::SimPress, self.sim_button),
            (Verb::SimPanic, self.sim_faults),
        ];
        has.into_iter()
            .filter(|(_, on)| *on)
            .map(|(v, _)| v)
            .collect()
    }
}

/// Routes topics below one base topic to commands.
#[derive(Debug, Clone)]
pub struct Router {
    topics: Topics,
    catalog: Catalog,
}

impl Router {
    /// A router for topics below `base`.
    pub fn new(base: impl Into<String>, catalog: Catalog) -> Self {
        Router {
            topics: Topics::new(base, catalog.verbs()),
            catalog,
        }
    }

    /// The device's topics.
    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// The topic filters the commands arrive on ([`Topics::filters`]). Not
    /// `<base>/#`: the agent does not need its own state echoed back, and
    /// each echo costs a broker-to-agent packet that can hold up the next
    /// command (docs/known-issues.md).
    pub fn filters(&self) -> Vec<String> {
        self.topics.filters()
    }

    /// Whether `topic` is one this router answers (a command topic below base).
    pub fn is_command_topic(&self, topic: &str) -> bool {
        self.topics.route(topic) != Route::NotOurs
    }

    /// Parses one message into a command.
    pub fn parse(&self, topic: &str, payload: &[u8]) -> Result<Command, CommandError> {
        let unknown = || CommandError::UnknownTopic {
            known: self.topics.known(),
        };
        let Route::Command { verb, led } = self.topics.route(topic) else {
            return Err(unknown());
        };
        if payload.len() > MAX_PAYLOAD {
            return Err(CommandError::TooLarge(payload.len()));
        }
        match verb {
            Verb::SimPress => {
                if self.catalog.sim_button {
                    Ok(Command::SimButtonPress)
                } else {
                    Err(CommandError::Disabled(
                        "the simulated button (hardware.backend is not sim, or [button] is off)"
                            .into(),
                    ))
                }
            }
            Verb::SimPanic => {
                if self.catalog.sim_faults {
                    Ok(Command::SimPanic {
                        in_loop: payload.trim_ascii() == b"loop",
                    })
                } else {
                    Err(CommandError::Disabled(
                        "fault injection (hardware.backend is not sim)".into(),
                    ))
                }
            }
            Verb::Led => {
                let name = led.unwrap_or_default();
                if !self.catalog.leds.iter().any(|n| n == name) {
                    if self.catalog.leds.is_empty() {
                        return Err(CommandError::Disabled("the LEDs ([tilt])".into()));
                    }
                    return Err(CommandError::BadPayload(format!(
                        "there is no LED called {:?}; the LEDs are {}",
                        clip(name, 32),
                        self.catalog.leds.join(", ")
                    )));
                }
                Ok(Command::Led {
                    name: name.to_string(),
                    set: parse_led(text(payload)?)?,
                })
            }
            Verb::Matrix => {
                let lib =
                    self.catalog.matrix.as_ref().ok_or_else(|| {
                        CommandError::Disabled("the LED matrix ([matrix])".into())
                    })?;
                Ok(Command::Matrix(parse_matrix(text(payload)?, lib)?))
            }
            Verb::Buzzer => {
                let max = self
                    .catalog
                    .buzzer
                    .ok_or_else(|| CommandError::Disabled("the buzzer ([buzzer])".into()))?;
                parse_buzzer(text(payload)?, max).map(Command::Buzzer)
            }
            Verb::Tilt => {
                if !self.catalog.tilt {
                    return Err(CommandError::Disabled("the tilt LEDs ([tilt])".into()));
                }
                parse_tilt(payload).map(Command::Tilt)
            }
            Verb::Message => {
                let max = self.catalog.display.ok_or_else(|| {
                    CommandError::Disabled("the message board ([display])".into())
                })?;
                let (text, from) = parse_message(text(payload)?, max)?;
                Ok(Command::DisplayMessage { text, from })
            }
            Verb::Clock => {
                if self.catalog.display.is_none() {
                    return Err(CommandError::Disabled(
                        "the message board ([display])".into(),
                    ));
                }
                let p = text(payload)?.trim();
                on_off(p).map(Command::Clock).ok_or_else(|| {
                    CommandError::BadPayload(format!("{:?} is not ON or OFF", clip(p, 32)))
                })
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonBeep {
    beep_ms: serde_json::Value,
}

/// `ON`, `OFF`, or JSON `{"beep_ms": N}`.
fn parse_buzzer(payload: &str, max_ms: u64) -> Result<BuzzerSet, CommandError> {
    let p = payload.trim();
    if let Some(on) = on_off(p) {
        return Ok(if on { BuzzerSet::On } else { BuzzerSet::Off });
    }
    if p.starts_with('{') {
        let j: JsonBeep = serde_json::from_str(p).map_err(json_error)?;
        return match j.beep_ms.as_u64() {
            Some(ms) if (1..=max_ms).contains(&ms) => Ok(BuzzerSet::Beep(ms)),
            _ => Err(CommandError::BadPayload(format!(
                "\"beep_ms\" is {}; it is a whole number of milliseconds from 1 to {max_ms}",
                clip(&j.beep_ms.to_string(), 24)
            ))),
        };
    }
    Err(CommandError::BadPayload(format!(
        "{:?} is not a buzzer command; send ON, OFF or {{\"beep_ms\": 200}}",
        clip(p, 32)
    )))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonTilt {
    x: f64,
    y: f64,
    z: f64,
}

/// A tilt: `"x y z"`, JSON `{"x":..,"y":..,"z":..}`, or 12 bytes of three
/// little-endian f32. A 12-byte payload that is not printable text is binary.
fn parse_tilt(payload: &[u8]) -> Result<Tilt, CommandError> {
    let printable = payload
        .iter()
        .all(|b| b.is_ascii_graphic() || *b == b' ' || b.is_ascii_whitespace());
    if payload.len() == 12 && !printable {
        let f = |i: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&payload[i * 4..i * 4 + 4]);
            f64::from(f32::from_le_bytes(b))
        };
        return Tilt::new(f(0), f(1), f(2));
    }
    let text = text(payload)?.trim();
    if text.starts_with('{') {
        let j: JsonTilt = serde_json::from_str(text).map_err(json_error)?;
        return Tilt::new(j.x, j.y, j.z);
    }
    let parts: Vec<&str> = text.split_whitespace().collect();
    if parts.len() != 3 {
        return Err(CommandError::BadPayload(format!(
            "a tilt is three numbers \"x y z\", JSON {{\"x\":..,\"y\":..,\"z\":..}} or 12 bytes of little-endian f32; this has {} value(s) in {} bytes",
            parts.len(),
            payload.len()
        )));
    }
    let mut v = [0.0; 3];
    for (slot, p) in v.iter_mut().zip(&parts) {
        *slot = p
            .parse::<f64>()
            .map_err(|_| CommandError::BadPayload(format!("{:?} is not a number", clip(p, 24))))?;
    }
    Tilt::new(v[0], v[1], v[2])
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonMessage {
    text: String,
    from: Option<String>,
}

/// A message: plain text, or JSON `{"text": ..., "from": ...}`.
fn parse_message(
    payload: &str,
    max_chars: usize,
) -> Result<(String, Option<String>), CommandError> {
    let (text, from) = if payload.trim_start().starts_with('{') {
        let j: JsonMessage = serde_json::from_str(payload).map_err(json_error)?;
        (j.text, j.from)
    } else {
        (payload.to_string(), None)
    };
    let text = text.trim().to_string();
    if text.is_empty() {
        return Err(CommandError::BadPayload("the message is empty".into()));
    }
    let n = text.chars().count();
    if n > max_chars {
        return Err(CommandError::BadPayload(format!(
            "the message has {n} characters; the most this board takes is {max_chars}"
        )));
    }
    let from = from.map(|f| f.trim().to_string()).filter(|f| !f.is_empty());
    if let Some(f) = &from {
        if f.chars().count() > MAX_FROM_CHARS || f.chars().any(char::is_control) {
            return Err(CommandError::BadPayload(format!(
                "\"from\" is at most {MAX_FROM_CHARS} characters on one line"
            )));
        }
    }
    Ok((text, from))
}

fn text(payload: &[u8]) -> Result<&str, CommandError> {
    std::str::from_utf8(payload).map_err(|_| CommandError::NotUtf8)
}

/// The Home Assistant JSON light schema, as far as a dimmable light uses it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonLight {
    state: Option<String>,
    brightness: Option<serde_json::Value>,
    /// Sent by Home Assistant when asked for; accepted and ignored.
    #[allow(dead_code)]
    transition: Option<f64>,
}

fn on_off(s: &str) -> Option<bool> {
    match s {
        s if s.eq_ignore_ascii_case("on") => Some(true),
        s if s.eq_ignore_ascii_case("off") => Some(false),
        _ => None,
    }
}

/// A JSON light's `"state"`: `ON`, `OFF` or absent.
fn json_state(state: Option<&str>) -> Result<Option<bool>, CommandError> {
    state
        .map(|s| {
            on_off(s).ok_or_else(|| {
                CommandError::BadPayload(format!(
                    "\"state\" is {:?}; it is \"ON\" or \"OFF\"",
                    clip(s, 16)
                ))
            })
        })
        .transpose()
}

fn json_error(e: serde_json::Error) -> CommandError {
    CommandError::BadPayload(format!(
        "the JSON could not be read: {}",
        clip_quoted(&e.to_string())
    ))
}

/// A serde error message with the input it quotes (`` `name` `` for fields,
/// `"text"` for strings) clipped to [`MAX_ECHO`] characters a piece, and the
/// whole to twice that, in case a name holds a quote mark.
fn clip_quoted(msg: &str) -> String {
    let mut out = String::new();
    let mut rest = msg;
    while let Some(open) = rest.find(['`', '"']) {
        let quote = &rest[open..=open];
        out.push_str(&rest[..=open]);
        let body = &rest[open + 1..];
        let close = if quote == "`" {
            body.find('`')
        } else {
            // A Debug-quoted string: `\"` and `\\` are inside it.
            let mut escaped = false;
            body.char_indices().find_map(|(i, c)| match (escaped, c) {
                (false, '"') => Some(i),
                (false, '\\') => {
                    escaped = true;
                    None
                }
                _ => {
                    escaped = false;
                    None
                }
            })
        };
        let (inside, after) = match close {
            Some(c) => (&body[..c], &body[c..]),
            None => (body, ""),
        };
        out.push_str(&clip(inside, MAX_ECHO));
        match after.get(..1) {
            Some(q) => {
                out.push_str(q);
                rest = &after[1..];
            }
            None => rest = after,
        }
    }
    out.push_str(rest);
    clip(&out, 2 * MAX_ECHO).into_owned()
}

fn parse_led(payload: &str) -> Result<LedSet, CommandError> {
    let p = payload.trim();
    if let Some(on) = on_off(p) {
        return Ok(LedSet {
            state: Some(on),
            brightness: None,
        });
    }
    if p.starts_with('{') {
        let j: JsonLight = serde_json::from_str(p).map_err(json_error)?;
        let state = json_state(j.state.as_deref())?;
        let brightness = match j.brightness {
            None => None,
            Some(v) => Some(
                v.as_u64()
                    .filter(|b| *b <= 255)
                    .map(|b| b as u8)
                    .ok_or_else(|| {
                        CommandError::BadPayload(format!(
                            "\"brightness\" is {}; it is a whole number from 0 to 255",
                            clip(&v.to_string(), 24)
                        ))
                    })?,
            ),
        };
        if state.is_none() && brightness.is_none() {
            return Err(CommandError::BadPayload(
                "the JSON has neither \"state\" nor \"brightness\"".into(),
            ));
        }
        return Ok(LedSet { state, brightness });
    }
    match p.parse::<f64>() {
        Ok(pct) if pct.is_finite() && (0.0..=100.0).contains(&pct) => {
            let b = (pct * 255.0 / 100.0).round() as u8;
            Ok(LedSet { state: Some(b > 0), brightness: Some(b) })
        }
        _ => Err(CommandError::BadPayload(format!(
            "{:?} is not a LED command; send ON, OFF, a percentage 0..100, or JSON {{\"state\": \"ON\", \"brightness\": 0..255}}",
            clip(p, 32)
        ))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonLightMatrix {
    state: Option<String>,
    effect: Option<String>,
}

fn named(
    name: &str,
    lib: &crate::parts::matrix::pattern::Library,
) -> Result<MatrixSet, CommandError> {
    lib.get(name)
        .map(|p| MatrixSet::Run {
            program: p.clone(),
            effect: Some(name.to_string()),
        })
        .ok_or_else(|| {
            CommandError::BadPayload(format!(
                "there is no pattern called {:?}; the patterns are {}",
                clip(name, 32),
                lib.names().join(", ")
            ))
        })
}

/// `matrix/set`: `ON`/`OFF`, a frame, a pattern name, a Home Assistant JSON
/// light (`state`, `effect`), or a JSON pattern program.
fn parse_matrix(
    payload: &str,
    lib: &crate::parts::matrix::pattern::Library,
) -> Result<MatrixSet, CommandError> {
    use crate::parts::matrix::pattern::{parse, Limits, Node};
    let p = payload.trim();
    if p.is_empty() {
        return Err(CommandError::BadPayload(
            "the payload is empty; send a frame like 01110/10001/10001/10001/01110, a pattern name, ON, OFF or a program"
                .into(),
        ));
    }
    if let Some(on) = on_off(p) {
        return Ok(if on { MatrixSet::On } else { MatrixSet::Off });
    }
    if p.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(p).map_err(json_error)?;
        let is_light = v
            .as_object()
            .is_some_and(|o| o.contains_key("state") || o.contains_key("effect"));
        if is_light {
            let j: JsonLightMatrix = serde_json::from_value(v).map_err(json_error)?;
            let state = json_state(j.state.as_deref())?;
            return match (state, j.effect) {
                (Some(false), _) => Ok(MatrixSet::Off),
                (_, Some(effect)) => named(&effect, lib),
                _ => Ok(MatrixSet::On),
            };
        }
        let program = parse(&v, Limits::default(), lib)
            .map_err(|e| CommandError::BadPayload(e.to_string()))?;
        return Ok(MatrixSet::Run {
            program: std::sync::Arc::new(program),
            effect: None,
        });
    }
    if p.contains('/') {
        let frame = Frame::parse(p).map_err(CommandError::BadPayload)?;
        return Ok(MatrixSet::Run {
            program: std::sync::Arc::new(Node::Frame(frame)),
            effect: None,
        });
    }
    named(p, lib)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        Router::new(
            "edge/t",
            Catalog {
                leds: vec!["left".into(), "right".into()],
                matrix: Some(std::sync::Arc::new(
                    crate::parts::matrix::pattern::Library::builtin().unwrap(),
                )),
                sim_button: true,
                sim_faults: true,
                display: Some(100),
                tilt: true,
                buzzer: Some(1000),
            },
        )
    }

    #[test]
    fn subscribes_to_every_set_depth_and_the_sim_topics_not_to_state() {
        let f = router().filters();
        assert_eq!(f[0], "edge/t/+/set");
        assert_eq!(
            f[crate::mqtt::topic::SET_DEPTH - 1],
            "edge/t/+/+/+/+/+/+/set"
        );
        assert!(f.contains(&"edge/t/sim/button/press".to_string()));
        assert!(f.contains(&"edge/t/sim/panic".to_string()));
        assert!(!f.iter().any(|x| x.ends_with('#')), "{f:?}");
        // A deep unknown command is answered, not ignored.
        assert!(matches!(
            router().parse("edge/t/a/b/c/d/e/f/set", b"ON"),
            Err(CommandError::UnknownTopic { .. })
        ));
    }

    #[test]
    fn input_quoted_in_json_errors_is_clipped() {
        let long = "k".repeat(60_000);
        for (topic, payload) in [
            // An unknown field.
            ("edge/t/led/left/set", format!(r#"{{"{long}": 1}}"#)),
            ("edge/t/buzzer/set", format!(r#"{{"{long}": 1}}"#)),
            (
                "edge/t/display/message/set",
                format!(r#"{{"text": "hi", "{long}": 1}}"#),
            ),
            (
                "edge/t/matrix/set",
                format!(r#"{{"state": "ON", "{long}": 1}}"#),
            ),
            // A string where a number goes; one with quote marks and backslashes.
            (
                "edge/t/tilt/set",
                format!(r#"{{"x": "{long}", "y": 0, "z": 0}}"#),
            ),
            (
                "edge/t/tilt/set",
                format!(r#"{{"x": "a\"b\\{long}", "y": 0, "z": 0}}"#),
            ),
            // A backtick in a field name.
            ("edge/t/led/left/set", format!(r#"{{"a`{long}": 1}}"#)),
        ] {
            let e = router()
                .parse(topic, payload.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("the JSON could not be read: "),
                "{topic}: {e}"
            );
            assert!(
                e.chars().count() < 3 * MAX_ECHO,
                "{topic}: {} chars",
                e.len()
            );
            assert!(e.contains("kkk…"), "{topic}: {e}");
        }
        // What serde says after the input is still there.
        let e = router()
            .parse(
                "edge/t/led/left/set",
                format!(r#"{{"{long}": 1}}"#).as_bytes(),
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("…`, expected one of `state`, `brightness`"),
            "{e}"
        );
        let e = router()
            .parse(
                "edge/t/tilt/set",
                format!(r#"{{"x": "{long}"}}"#).as_bytes(),
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("…\", expected f64"), "{e}");
    }

    #[test]
    fn input_quoted_in_matrix_program_errors_is_clipped() {
        let long = "n".repeat(60_000);
        for program in [
            format!(r#"{{"{long}": {{}}}}"#),
            format!(r#"{{"on": {{"leds": "all", "{long}": 1}}}}"#),
            format!(r#"{{"on": {{"leds": "{long}"}}}}"#),
            format!(r#"{{"on": {{"leds": "row:{long}"}}}}"#),
        ] {
            let e = router()
                .parse("edge/t/matrix/set", program.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(e.chars().count() < 3 * MAX_ECHO, "{} chars", e.len());
            assert!(e.contains("nnn…"), "{e}");
        }
        // Many keys in one node.
        let keys: Vec<String> = (0..5_000).map(|i| format!(r#""k{i}": 1"#)).collect();
        let e = router()
            .parse(
                "edge/t/matrix/set",
                format!("{{{}}}", keys.join(",")).as_bytes(),
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("program: a node has exactly one key, this has 5000: "),
            "{e}"
        );
        assert!(e.chars().count() < 2 * MAX_ECHO, "{} chars", e.len());
    }

    fn led(payload: &str) -> Result<LedSet, CommandError> {
        match router().parse("edge/t/led/left/set", payload.as_bytes())? {
            Command::Led { set, .. } => Ok(set),
            other => panic!("not a led command: {other:?}"),
        }
    }

    #[test]
    fn led_forms() {
        assert_eq!(
            led("ON").unwrap(),
            LedSet {
                state: Some(true),
                brightness: None
            }
        );
        assert_eq!(
            led("off").unwrap(),
            LedSet {
                state: Some(false),
                brightness: None
            }
        );
        assert_eq!(
            led("50").unwrap(),
            LedSet {
                state: Some(true),
                brightness: Some(128)
            }
        );
        assert_eq!(
            led("0").unwrap(),
            LedSet {
                state: Some(false),
                brightness: Some(0)
            }
        );
        assert_eq!(
            led(r#"{"state":"ON","brightness":200}"#).unwrap(),
            LedSet {
                state: Some(true),
                brightness: Some(200)
            }
        );
        assert_eq!(
            led(r#"{"state":"OFF","transition":2}"#).unwrap(),
            LedSet {
                state: Some(false),
                brightness: None
            }
        );
    }

    #[test]
    fn led_rejections() {
        for bad in [
            "",
            "101",
            "-1",
            "NaN",
            "inf",
            "maybe",
            r#"{"state":"ON","brightness":256}"#,
            r#"{"state":"ON","brightness":1.5}"#,
            r#"{"state":"BLUE"}"#,
            r#"{"colour":"red"}"#,
            r#"{}"#,
            "{not json",
        ] {
            assert!(
                matches!(led(bad), Err(CommandError::BadPayload(_))),
                "{bad:?} accepted"
            );
        }
        let e = router().parse("edge/t/led/middle/set", b"ON").unwrap_err();
        assert!(e.to_string().contains("left, right"), "{e}");
        let e = router()
            .parse("edge/t/led/left/set", &[0xff, 0xfe])
            .unwrap_err();
        assert_eq!(e, CommandError::NotUtf8);
        let big = vec![b'1'; MAX_PAYLOAD + 1];
        assert_eq!(
            router().parse("edge/t/led/left/set", &big).unwrap_err(),
            CommandError::TooLarge(MAX_PAYLOAD + 1)
        );
    }

    #[test]
    fn matrix_forms() {
        use crate::parts::matrix::pattern::frame_at;
        let r = router();
        let run = |p: &str| match r.parse("edge/t/matrix/set", p.as_bytes()) {
            Ok(Command::Matrix(MatrixSet::Run { program, effect })) => {
                (frame_at(&program, 0), effect)
            }
            other => panic!("{p}: {other:?}"),
        };
        let smiley = "01010/01010/00000/10001/01110";
        let smiley_mask = Frame::parse(smiley).unwrap();
        assert_eq!(run(smiley), (smiley_mask, None));
        assert_eq!(run("smiley"), (smiley_mask, Some("smiley".into())));
        assert_eq!(
            run(r#"{"state": "ON", "effect": "smiley"}"#),
            (smiley_mask, Some("smiley".into()))
        );
        assert_eq!(
            run(r#"{"frame": "11111/00000/00000/00000/00000"}"#),
            (Frame::from_bits(0b11111), None)
        );
        assert_eq!(
            run(r#"{"blink": {"leds": "smiley", "interval_ms": 100}}"#),
            (smiley_mask, None)
        );
        let m = |p: &[u8]| r.parse("edge/t/matrix/set", p).unwrap();
        assert_eq!(m(b"OFF"), Command::Matrix(MatrixSet::Off));
        assert_eq!(m(br#"{"state":"ON"}"#), Command::Matrix(MatrixSet::On));
        assert_eq!(
            m(br#"{"state":"OFF","effect":"smiley"}"#),
            Command::Matrix(MatrixSet::Off)
        );
        for bad in [
            "",
            "smiley!",
            "0101/01010/00000/10001/01110",
            "01010/01010",
            "21010/01010/00000/10001/01110",
            r#"{"state":"ON","effect":"disco"}"#,
            r#"{"state":"ON","brightness":3}"#,
            r#"{"state":"MAYBE"}"#,
            r#"{"wiggle": {}}"#,
            r#"{"blink": {"leds": "all", "interval_ms": 1}}"#,
        ] {
            let e = r.parse("edge/t/matrix/set", bad.as_bytes());
            assert!(e.is_err(), "{bad:?} accepted");
        }
        let e = r
            .parse("edge/t/matrix/set", b"disco")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("smiley") && e.contains("spiral"),
            "names the patterns: {e}"
        );
    }

    #[test]
    fn unknown_topics_are_errors_naming_the_known_ones() {
        let r = router();
        let e = r.parse("edge/t/toaster/set", b"ON").unwrap_err();
        assert!(matches!(e, CommandError::UnknownTopic { .. }));
        assert!(e.to_string().contains("matrix/set"), "{e}");
        assert!(r.is_command_topic("edge/t/toaster/set"));
        assert!(r.is_command_topic("edge/t/a/b/c/set"));
        assert!(!r.is_command_topic("edge/t/status"));
        assert!(!r.is_command_topic("edge/other/led/left/set"));
    }

    fn tilt(p: &[u8]) -> Result<Tilt, CommandError> {
        match router().parse("edge/t/tilt/set", p)? {
            Command::Tilt(t) => Ok(t),
            other => panic!("{other:?}"),
        }
    }

    fn le(x: f32, y: f32, z: f32) -> Vec<u8> {
        [x, y, z].iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn tilt_forms() {
        let t = Tilt {
            x: 1.5,
            y: -42.25,
            z: 90.0,
        };
        assert_eq!(tilt(b"1.5 -42.25 90").unwrap(), t);
        assert_eq!(tilt(b"  1.5\t-42.25   90\n").unwrap(), t);
        assert_eq!(tilt(br#"{"x": 1.5, "y": -42.25, "z": 90}"#).unwrap(), t);
        assert_eq!(tilt(&le(1.5, -42.25, 90.0)).unwrap(), t);
        // Twelve zero bytes: binary (0, 0, 0), not text.
        assert_eq!(
            tilt(&[0u8; 12]).unwrap(),
            Tilt {
                x: 0.0,
                y: 0.0,
                z: 0.0
            }
        );
        // Twelve printable bytes are text.
        assert_eq!(
            tilt(b"1.00 2.0 3.0").unwrap(),
            Tilt {
                x: 1.0,
                y: 2.0,
                z: 3.0
            }
        );
    }

    #[test]
    fn tilt_clamps_beyond_100() {
        assert_eq!(
            tilt(b"0 250 -1e9").unwrap(),
            Tilt {
                x: 0.0,
                y: 100.0,
                z: -100.0
            }
        );
        assert_eq!(tilt(&le(0.0, -3.0e38, 0.0)).unwrap().y, -100.0);
    }

    #[test]
    fn tilt_rejections() {
        for bad in [
            &b""[..],
            b"1 2",
            b"1 2 3 4",
            b"a b c",
            b"1 NaN 3",
            b"1 inf 3",
            b"-infinity 0 0",
            br#"{"x": 1, "y": 2}"#,
            br#"{"x": 1, "y": "2", "z": 3}"#,
            br#"{"x": 1, "y": 2, "z": 3, "w": 4}"#,
            br#"{"x": 1e999, "y": 2, "z": 3}"#,
            b"{",
            &[0xff; 11],
            &[0xff; 13],
        ] {
            assert!(
                tilt(bad).is_err(),
                "{:?} accepted",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(tilt(&le(0.0, f32::NAN, 0.0)).is_err());
        assert!(tilt(&le(f32::INFINITY, 0.0, 0.0)).is_err());
        assert!(tilt(&le(0.0, 0.0, f32::NEG_INFINITY)).is_err());
    }

    #[test]
    fn buzzer_forms() {
        let r = router();
        let b = |p: &str| r.parse("edge/t/buzzer/set", p.as_bytes());
        assert_eq!(b("ON").unwrap(), Command::Buzzer(BuzzerSet::On));
        assert_eq!(b("off").unwrap(), Command::Buzzer(BuzzerSet::Off));
        assert_eq!(
            b(r#"{"beep_ms": 200}"#).unwrap(),
            Command::Buzzer(BuzzerSet::Beep(200))
        );
        for bad in [
            r#"{"beep_ms": 0}"#,
            r#"{"beep_ms": 1001}"#,
            r#"{"beep_ms": 1.5}"#,
            r#"{"beep_ms": "x"}"#,
            r#"{"beep": 1}"#,
            "loud",
            "",
        ] {
            assert!(b(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn messages() {
        let r = router();
        let msg = |p: &[u8]| r.parse("edge/t/display/message/set", p);
        assert_eq!(
            msg(b"  hello world \n").unwrap(),
            Command::DisplayMessage {
                text: "hello world".into(),
                from: None
            }
        );
        assert_eq!(
            msg(br#"{"text": "Dinner at 7", "from": "john"}"#).unwrap(),
            Command::DisplayMessage {
                text: "Dinner at 7".into(),
                from: Some("john".into())
            }
        );
        for bad in [
            &b""[..],
            b"   \n ",
            br#"{"text": ""}"#,
            br#"{"text": "hi", "colour": "red"}"#,
            br#"{"text": 5}"#,
            br#"{"text": "hi""#,
            br#"{"from": "x"}"#,
            br#"{"text": "hi", "from": "a\nb"}"#,
        ] {
            assert!(
                matches!(msg(bad), Err(CommandError::BadPayload(_))),
                "{:?} accepted",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(msg(&[b'a', 0xff]), Err(CommandError::NotUtf8));
        assert!(msg("x".repeat(101).as_bytes())
            .unwrap_err()
            .to_string()
            .contains("most"));
        assert_eq!(
            msg(&vec![b'x'; 100_000]),
            Err(CommandError::TooLarge(100_000))
        );
        assert_eq!(
            r.parse("edge/t/display/clock/set", b"on").unwrap(),
            Command::Clock(true)
        );
        assert_eq!(
            r.parse("edge/t/display/clock/set", b"OFF").unwrap(),
            Command::Clock(false)
        );
        assert!(r.parse("edge/t/display/clock/set", b"later").is_err());
    }

    #[test]
    fn disabled_parts_say_so() {
        let r = Router::new("edge/t", Catalog::default());
        assert!(matches!(
            r.parse("edge/t/matrix/set", b"OFF"),
            Err(CommandError::Disabled(_))
        ));
        assert!(matches!(
            r.parse("edge/t/led/left/set", b"ON"),
            Err(CommandError::Disabled(_))
        ));
        assert!(matches!(
            r.parse("edge/t/sim/button/press", b""),
            Err(CommandError::Disabled(_))
        ));
    }
}
