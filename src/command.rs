//! Turns an incoming `<base>/.../set` topic and its payload into a typed
//! [`Command`], or into a [`CommandError`] that says in plain words what was
//! wrong. Nothing here touches MQTT or hardware.

use crate::mqtt::topic::{Route, Topics, Verb};
use crate::parts::buzzer::command::parse_buzzer;
pub use crate::parts::buzzer::command::BuzzerSet;
use crate::parts::input::text;
pub use crate::parts::input::{CommandError, MAX_PAYLOAD};
use crate::parts::leds::command::{parse_led, parse_tilt};
pub use crate::parts::leds::command::{LedSet, Tilt};
use crate::parts::matrix::command::parse_matrix;
pub use crate::parts::matrix::command::MatrixSet;
use crate::parts::message_board::command::{parse_clock, parse_message};
use crate::quote::clip;

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
    pub(crate) fn verbs(&self) -> Vec<Verb> {
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

    /// The topic filters the commands arrive on (`Topics::filters`). Not
    /// `<base>/#`: the agent does not need its own state echoed back, and
    /// each echo costs a broker-to-agent packet that can hold up the next
    /// command (docs/known-issues.md).
    pub fn filters(&self) -> Vec<String> {
        self.topics.filters()
    }

    /// Whether `topic` is one this router answers (a command topic below base).
    #[cfg(test)]
    pub(crate) fn is_command_topic(&self, topic: &str) -> bool {
        self.topics.route(topic) != Route::NotOurs
    }

    /// The command a message asks for, or why not; `None` when its topic is
    /// none of this device's command topics (a link's, Home Assistant's).
    /// The topic is routed once.
    pub(crate) fn answerable(
        &self,
        topic: &str,
        payload: &[u8],
    ) -> Option<Result<Command, CommandError>> {
        match self.topics.route(topic) {
            Route::NotOurs => None,
            route => Some(self.parse_route(route, payload)),
        }
    }

    /// Parses one message into a command.
    pub fn parse(&self, topic: &str, payload: &[u8]) -> Result<Command, CommandError> {
        self.parse_route(self.topics.route(topic), payload)
    }

    fn parse_route(&self, route: Route<'_>, payload: &[u8]) -> Result<Command, CommandError> {
        let Route::Command { verb, led } = route else {
            return Err(CommandError::UnknownTopic {
                known: self.topics.known(),
            });
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
                parse_clock(payload).map(Command::Clock)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::matrix::Frame;
    use crate::quote::MAX_ECHO;

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
        assert_eq!(f[crate::mqtt::topic::SET_DEPTH - 1], "edge/t/+/+/+/+/+/set");
        assert_eq!(f[crate::mqtt::topic::SET_DEPTH], "edge/t/+/+/+/+/+/+/+/#");
        assert!(f.contains(&"edge/t/sim/button/press".to_string()));
        assert!(f.contains(&"edge/t/sim/panic".to_string()));
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
        // Names are words like ON and OFF: any case, answered as the library spells them.
        assert_eq!(run("SMILEY"), (smiley_mask, Some("smiley".into())));
        assert_eq!(
            run(r#"{"state": "on", "effect": "Smiley"}"#),
            (smiley_mask, Some("smiley".into()))
        );
        assert_eq!(
            run(r#"{"blink": {"leds": "SMILEY", "interval_ms": 100}}"#),
            (smiley_mask, None)
        );
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
