//! Turns an incoming `<base>/.../set` topic and its payload into a typed
//! `Command` of the part that takes it, or into a [`CommandError`] that
//! says in plain words what was wrong. The topic table routes the topic;
//! the part parses the payload. Nothing here touches MQTT or hardware.

use crate::mqtt::topic::{Route, Topics};
pub use crate::parts::input::{CommandError, MAX_PAYLOAD};
use crate::parts::{Command, Parts};

/// Routes topics below one base topic to the parts' commands.
#[derive(Debug, Clone)]
pub struct Router {
    topics: Topics,
}

impl Router {
    /// A router for the commands of `topics`.
    pub(crate) fn new(topics: Topics) -> Self {
        Router { topics }
    }

    /// The device's topics.
    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// The command a message asks for, or why not; `None` when its topic is
    /// none of this device's command topics (a link's, Home Assistant's).
    /// The topic is routed once.
    pub(crate) fn answerable(
        &self,
        parts: &Parts,
        topic: &str,
        payload: &[u8],
    ) -> Option<Result<Command, CommandError>> {
        match self.topics.route(topic) {
            Route::NotOurs => None,
            route => Some(self.parse_route(parts, route, payload)),
        }
    }

    fn parse_route(
        &self,
        parts: &Parts,
        route: Route<'_>,
        payload: &[u8],
    ) -> Result<Command, CommandError> {
        let Route::Command { verb, name } = route else {
            return Err(CommandError::UnknownTopic {
                known: self.topics.known(),
            });
        };
        if payload.len() > MAX_PAYLOAD {
            return Err(CommandError::TooLarge(payload.len()));
        }
        parts.parse(verb, name, payload)
    }
}

/// A device's router and parts on simulated hardware, driven without a
/// broker or an agent: for the fuzzer and the router's tests.
#[doc(hidden)]
pub struct Parser {
    router: Router,
    pub(crate) parts: Parts,
    /// The runtime the parts' tasks run on.
    _runtime: tokio::runtime::Runtime,
}

impl Parser {
    /// The parts of `[device] id = "t"` with `config`, below `edge/t`, on
    /// simulated hardware.
    pub fn new(config: &str) -> Result<Parser, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| e.to_string())?;
        let settings = crate::config::Config::from_toml(&format!(
            "[device]\nid = \"t\"\n[mqtt]\nbase_topic = \"edge/t\"\n\
             [hardware]\nbackend = \"sim\"\n{config}"
        ))
        .map_err(|e| e.to_string())?;
        let mut hardware =
            crate::hardware::Hardware::from_settings(&settings).map_err(|e| e.to_string())?;
        let (events, _) = tokio::sync::mpsc::channel(1);
        let _in_runtime = runtime.enter();
        let parts = Parts::start(&mut crate::parts::Start {
            settings: &settings,
            hardware: &mut hardware,
            wall: chrono::Utc::now(),
            events,
            tasks: &mut Vec::new(),
        })
        .map_err(|e| e.to_string())?;
        Ok(Parser {
            router: Router::new(Topics::new("edge/t", settings.config.verbs())),
            parts,
            _runtime: runtime,
        })
    }

    /// Parses one message into a command.
    pub(crate) fn parse(&self, topic: &str, payload: &[u8]) -> Result<Command, CommandError> {
        let route = self.router.topics.route(topic);
        self.router.parse_route(&self.parts, route, payload)
    }

    /// Parses one message; the matrix program it runs, if it is one.
    pub fn program(
        &self,
        topic: &str,
        payload: &[u8],
    ) -> Result<Option<std::sync::Arc<crate::parts::matrix::pattern::Node>>, CommandError> {
        Ok(match self.parse(topic, payload)? {
            Command::Matrix(crate::parts::matrix::command::MatrixSet::Run { program, .. }) => {
                Some(program)
            }
            _ => None,
        })
    }

    /// The topic filters the commands arrive on (`Topics::filters`). Not
    /// `<base>/#`: the agent does not need its own state echoed back, and
    /// each echo costs a broker-to-agent packet that can hold up the next
    /// command (docs/known-issues.md).
    #[cfg(test)]
    pub(crate) fn filters(&self) -> Vec<String> {
        self.router.topics.filters()
    }

    /// Whether `topic` is one the router answers (a command topic below base).
    #[cfg(test)]
    pub(crate) fn is_command_topic(&self, topic: &str) -> bool {
        self.router.topics.route(topic) != Route::NotOurs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::buzzer::command::BuzzerSet;
    use crate::parts::leds::command::{LedSet, Tilt};
    use crate::parts::leds::LedsCommand;
    use crate::parts::matrix::command::MatrixSet;
    use crate::parts::matrix::Frame;
    use crate::parts::message_board::command::Message;
    use crate::parts::message_board::BoardCommand;
    use crate::quote::MAX_ECHO;

    fn device(config: &str) -> Parser {
        Parser::new(config).unwrap()
    }

    fn router() -> Parser {
        device(
            "[display]\nenabled = true\nbackend = \"sim\"\nmax_message_chars = 100\n\
             [buzzer]\nenabled = true\nmax_beep_ms = 1000\n",
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
            Command::Leds(LedsCommand::Set { set, .. }) => Ok(set),
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
    fn home_assistants_transition_and_flash_are_motions() {
        use crate::parts::leds::command::Motion;
        use std::time::Duration;
        let motion = |p: &str| match router().parse("edge/t/led/left/set", p.as_bytes()) {
            Ok(Command::Leds(LedsCommand::Set { motion, .. })) => Ok(motion),
            Ok(other) => panic!("not a led command: {other:?}"),
            Err(e) => Err(e.to_string()),
        };
        let secs = Duration::from_secs_f64;
        assert_eq!(
            motion(r#"{"state":"ON","transition":2.5}"#),
            Ok(Some(Motion::Fade(secs(2.5))))
        );
        assert_eq!(motion(r#"{"state":"ON","transition":0}"#), Ok(None));
        assert_eq!(
            motion(r#"{"state":"ON","flash":2}"#),
            Ok(Some(Motion::Flash(secs(2.0))))
        );
        assert_eq!(
            motion(r#"{"flash":"long"}"#),
            Ok(Some(Motion::Flash(secs(10.0))))
        );
        assert_eq!(motion("ON"), Ok(None));
        for bad in [
            r#"{"flash":0}"#,
            r#"{"flash":61}"#,
            r#"{"state":"ON","transition":-1}"#,
            r#"{"state":"ON","transition":"x"}"#,
        ] {
            let e = motion(bad).unwrap_err();
            assert!(
                e.contains("flash") || e.contains("transition"),
                "{bad}: {e}"
            );
        }
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
        // Home Assistant's "no effect" under ON: lit, no pattern.
        assert_eq!(
            m(br#"{"state":"ON","effect":"off"}"#),
            Command::Matrix(MatrixSet::Run {
                program: std::sync::Arc::new(crate::parts::matrix::pattern::Node::Frame(
                    Frame::ALL
                )),
                effect: None
            })
        );
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
            Command::Leds(LedsCommand::Tilt(t)) => Ok(t),
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
            r#"{"state": "ON", "duration": 2}"#,
            r#"{"duration": -1}"#,
            r#"{}"#,
            "loud",
            "",
        ] {
            assert!(b(bad).is_err(), "{bad} accepted");
        }
        // Home Assistant's siren (its duration in seconds; max_beep_ms 1000).
        let siren = |p: &str| b(p).map_err(|e| e.to_string());
        assert_eq!(
            siren(r#"{"state": "ON", "duration": 0.25, "tone": null}"#),
            Ok(Command::Buzzer(BuzzerSet::Beep(250)))
        );
        assert_eq!(
            siren(r#"{"state": "ON"}"#),
            Ok(Command::Buzzer(BuzzerSet::On))
        );
        assert_eq!(
            siren(r#"{"state": "OFF", "duration": 3}"#),
            Ok(Command::Buzzer(BuzzerSet::Off))
        );
        assert!(siren(r#"{"state": "ON", "duration": 2}"#)
            .unwrap_err()
            .contains("\"duration\" is 2 s; a beep lasts from 1 to 1000 ms"));
        // A shipped tune by its name or as Home Assistant's tone, an RTTTL,
        // a pattern of beeps.
        let tone = |p: &str| match b(p) {
            Ok(Command::Buzzer(BuzzerSet::Play(play))) => play.tone,
            other => panic!("{p}: {other:?}"),
        };
        assert_eq!(tone("chime").as_deref(), Some("chime"));
        assert_eq!(
            tone(r#"{"state": "ON", "tone": "alarm"}"#).as_deref(),
            Some("alarm")
        );
        assert_eq!(tone(r#"{"rtttl": "t:d=8,o=5,b=120:c,e,g"}"#), None);
        assert_eq!(
            tone(r#"{"beep_ms": 100, "count": 3, "pause_ms": 100, "tone_hz": 2000}"#),
            None
        );
        assert!(siren(r#"{"rtttl": "t:o=2:c"}"#)
            .unwrap_err()
            .contains("the default octave o=2; an octave is 3 to 8"));
    }

    #[test]
    fn messages() {
        let r = router();
        let msg = |p: &[u8]| r.parse("edge/t/display/message/set", p);
        assert_eq!(
            msg(b"  hello world \n").unwrap(),
            Command::Board(BoardCommand::Message(Message {
                text: "hello world".into(),
                from: None,
                ttl: None
            }))
        );
        assert_eq!(
            msg(br#"{"text": "Dinner at 7", "from": "john"}"#).unwrap(),
            Command::Board(BoardCommand::Message(Message {
                text: "Dinner at 7".into(),
                from: Some("john".into()),
                ttl: None
            }))
        );
        // No text: the clock again (Home Assistant's text entity cleared).
        for clock in [&b""[..], b"   \n "] {
            assert_eq!(msg(clock), Ok(Command::Board(BoardCommand::Clock(true))));
        }
        for bad in [
            &br#"{"text": ""}"#[..],
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
            Command::Board(BoardCommand::Clock(true))
        );
        assert_eq!(
            r.parse("edge/t/display/clock/set", b"OFF").unwrap(),
            Command::Board(BoardCommand::Clock(false))
        );
        assert!(r.parse("edge/t/display/clock/set", b"later").is_err());
    }

    #[test]
    fn disabled_parts_say_so() {
        let r = device(
            "[tilt]\nenabled = false\n[matrix]\nenabled = false\n[button]\nenabled = false\n",
        );
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
