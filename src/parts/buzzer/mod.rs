//! The buzzer: on, off, beeps and patterns of beeps, RTTTL tunes and the
//! tunes shipped with the agent (`tunes/tunes.rtttl`), each on absolute
//! deadlines from its start.

pub(crate) mod command;
pub(crate) mod config;
mod device;
pub mod rtttl;
pub mod tune;

pub use device::*;

use serde_json::json;
use tokio::time::Instant;
use tracing::warn;

use self::command::{parse_buzzer, BuzzerSet, Limits};
use self::rtttl::Tunes;
use crate::agent::AgentError;
use crate::hardware::HardwareError;
use crate::mqtt::topic::{state, Verb};
use crate::parts::input::{text, CommandError};
use crate::parts::{Device, Entity, Event, Now, Out, Start};

/// The verbs of the topic table the part takes.
const VERBS: &[Verb] = &[Verb::Buzzer];

impl Device for Buzzer {
    type Command = BuzzerSet;

    fn start(start: &mut Start<'_>) -> Result<Option<Self>, AgentError> {
        let Some(channel) = start.hardware.pwm(state::BUZZER) else {
            return Ok(None);
        };
        let c = &start.settings.config.buzzer;
        let mut buzzer = Buzzer::new(channel, c.tone_hz)?;
        buzzer.limits = Limits::from(c);
        buzzer.tunes = Tunes::shared().map_err(|e| AgentError::Tunes(e.to_string()))?;
        Ok(Some(buzzer))
    }

    fn verbs(&self) -> &'static [Verb] {
        VERBS
    }

    fn parse(&self, _: Verb, _: Option<&str>, payload: &[u8]) -> Result<BuzzerSet, CommandError> {
        parse_buzzer(text(payload)?, &self.limits, self.tunes)
    }

    fn execute(&mut self, set: BuzzerSet, now: &Now) -> Result<Vec<Out>, CommandError> {
        self.set(set, now.at).map_err(CommandError::refused)?;
        Ok(self.states(now))
    }

    fn states(&mut self, _: &Now) -> Vec<Out> {
        vec![Out::state(state::BUZZER, self.payload())]
    }

    fn react(&mut self, event: &Event, now: &Now) -> Vec<Out> {
        match event {
            // A beep, unless it sounds already.
            Event::Identify if !self.is_on() => match self.set(BuzzerSet::Beep(200), now.at) {
                Ok(()) => self.states(now),
                Err(e) => {
                    warn!(error = %e, "could not sound the buzzer");
                    Vec::new()
                }
            },
            _ => Vec::new(),
        }
    }

    fn deadline(&self, _: Instant) -> Option<Instant> {
        self.next_change()
    }

    /// The next note, beep or pause of what plays; its state when it ends.
    fn timer(&mut self, now: &Now) -> Vec<Out> {
        match self.advance(now.at) {
            Ok(false) => Vec::new(),
            Ok(true) => self.states(now),
            Err(e) => {
                warn!(error = %e, "the buzzer failed mid-tune: the tune ends");
                self.silence();
                self.states(now)
            }
        }
    }

    fn go_safe(&mut self, now: &Now) -> Vec<Out> {
        self.silence();
        self.states(now)
    }

    async fn stop(mut self, now: Now) -> (Vec<Out>, Result<(), HardwareError>) {
        let off = self.off();
        if let Err(e) = &off {
            warn!(error = %e, "could not silence the buzzer");
        }
        (self.states(&now), off)
    }
}

impl Buzzer {
    /// Silences it, saying so when the hardware refuses.
    fn silence(&mut self) {
        if let Err(e) = self.off() {
            warn!(error = %e, "could not silence the buzzer");
        }
    }
}

/// The buzzer's Home Assistant entities: a siren (on, off, on for a
/// duration, the shipped tunes as its tones), and the removal of the switch
/// earlier versions announced.
pub(crate) fn entities(enabled: bool) -> Vec<Entity> {
    let tones = Tunes::shared().map(Tunes::names).unwrap_or_default();
    let siren = Entity {
        component: "siren",
        object: "buzzer".into(),
        name: "Buzzer".into(),
        enabled,
        command: Some((Verb::Buzzer, "")),
        state: Some(state::BUZZER.into()),
        fields: json!({
            "payload_on": "ON",
            "payload_off": "OFF",
            "state_on": "ON",
            "state_off": "OFF",
            "available_tones": tones,
            "support_duration": true,
            "support_volume_set": false,
            "icon": "mdi:bullhorn",
        }),
        ..Entity::default()
    };
    let old_switch = Entity {
        component: "switch",
        object: "buzzer".into(),
        enabled: false,
        ..Entity::default()
    };
    vec![siren, old_switch]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Zone;
    use crate::hardware::sim::{Recording, SimPwm};
    use crate::parts::Stats;
    use chrono::Utc;
    use tokio::time::Duration;

    /// A passive buzzer at 2 kHz with the shipped tunes, and its recordings.
    fn buzzer() -> (Buzzer, Recording<f64>, Recording<f64>) {
        let pwm = SimPwm::default();
        let (duty, pitches) = (pwm.writes.clone(), pwm.pitches.clone().unwrap());
        (Buzzer::new(Box::new(pwm), 2000.0).unwrap(), duty, pitches)
    }

    fn at(at: Instant) -> Now {
        Now {
            at,
            wall: Utc::now(),
            time_zone: Zone::utc(),
            stats: Stats::default(),
        }
    }

    fn send(b: &mut Buzzer, payload: &str, now: Instant) -> Vec<Out> {
        let cmd = b.parse(Verb::Buzzer, None, payload.as_bytes()).unwrap();
        b.execute(cmd, &at(now)).unwrap()
    }

    fn state(out: &[Out]) -> Vec<String> {
        out.iter()
            .map(|o| match o {
                Out::State(p, v) if p == state::BUZZER => String::from_utf8_lossy(v).into_owned(),
                o => panic!("{o:?}"),
            })
            .collect()
    }

    /// Runs the part's timers as the core does, until `until`; the states
    /// they published, with their time since `t0`.
    async fn run(b: &mut Buzzer, t0: Instant, until: Duration) -> Vec<(Duration, String)> {
        let mut states = Vec::new();
        while let Some(due) = b.deadline(Instant::now()).filter(|d| *d <= t0 + until) {
            tokio::time::sleep_until(due).await;
            for s in state(&b.timer(&at(Instant::now()))) {
                states.push((Instant::now() - t0, s));
            }
        }
        states
    }

    #[tokio::test(start_paused = true)]
    async fn a_shipped_tune_by_name_says_its_tone_and_length_then_off() {
        let (mut b, duty, pitches) = buzzer();
        let t0 = Instant::now();
        let out = send(&mut b, "doorbell", t0);
        assert_eq!(
            state(&out),
            [r#"{"state":"ON","tone":"doorbell","duration":1.8}"#]
        );
        let states = run(&mut b, t0, Duration::from_secs(5)).await;
        assert_eq!(
            states,
            [(
                Duration::from_millis(1800),
                r#"{"state":"OFF"}"#.to_string()
            )],
            "one state at its end, none for each note"
        );
        // Ding (E6, 600 ms) dong (C6, 1200 ms), each sounding 9/10.
        let p: Vec<(u128, u32)> = pitches
            .entries()
            .iter()
            .map(|(t, hz)| ((*t - t0).as_millis(), hz.round() as u32))
            .collect();
        assert_eq!(p, [(0, 1319), (600, 1047)]);
        let d: Vec<(u128, f64)> = duty
            .entries()
            .iter()
            .skip(1)
            .map(|(t, v)| ((*t - t0).as_millis(), *v))
            .collect();
        assert_eq!(d, [(0, 0.5), (540, 0.0), (600, 0.5), (1680, 0.0)]);
    }

    #[tokio::test(start_paused = true)]
    async fn home_assistants_tone_repeats_for_its_duration() {
        let (mut b, duty, _) = buzzer();
        let t0 = Instant::now();
        let out = send(
            &mut b,
            r#"{"state": "ON", "tone": "alarm", "duration": 3}"#,
            t0,
        );
        assert_eq!(
            state(&out),
            [r#"{"state":"ON","tone":"alarm","duration":3.0}"#]
        );
        let states = run(&mut b, t0, Duration::from_secs(5)).await;
        assert_eq!(
            states,
            [(Duration::from_secs(3), r#"{"state":"OFF"}"#.to_string())]
        );
        assert_eq!(duty.last(), Some(0.0));
        // alarm is 1 s: 8 notes, three rounds, on and off for each.
        assert_eq!(duty.total(), 1 + 3 * 8 * 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_newer_command_cancels_and_states_follow() {
        let (mut b, duty, _) = buzzer();
        let t0 = Instant::now();
        send(&mut b, r#"{"rtttl": "t:d=4,o=5,b=60:c,d,e,f"}"#, t0);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(
            b.timer(&at(Instant::now())).is_empty(),
            "mid-tune: no state"
        );
        let out = send(
            &mut b,
            r#"{"beep_ms": 100, "count": 2, "pause_ms": 100}"#,
            Instant::now(),
        );
        assert_eq!(state(&out), [r#"{"state":"ON","duration":0.3}"#]);
        let states = run(&mut b, t0, Duration::from_secs(10)).await;
        assert_eq!(
            states,
            [(
                Duration::from_millis(1800),
                r#"{"state":"OFF"}"#.to_string()
            )]
        );
        assert_eq!(b.deadline(Instant::now()), None, "the RTTTL is gone");
        assert_eq!(duty.last(), Some(0.0));
    }

    #[tokio::test(start_paused = true)]
    async fn go_safe_and_stop_silence_a_tune() {
        let (mut b, duty, _) = buzzer();
        let t0 = Instant::now();
        send(&mut b, "alarm", t0);
        assert_eq!(duty.last(), Some(0.5));
        assert_eq!(state(&b.go_safe(&at(t0))), [r#"{"state":"OFF"}"#]);
        assert_eq!(duty.last(), Some(0.0));
        assert_eq!(b.deadline(t0), None, "nothing more plays");
        send(&mut b, "ON", t0);
        let (out, r) = b.stop(at(t0)).await;
        assert!(r.is_ok());
        assert_eq!(state(&out), [r#"{"state":"OFF"}"#]);
        assert_eq!(duty.last(), Some(0.0));
    }

    #[tokio::test(start_paused = true)]
    async fn identify_beeps_unless_it_sounds() {
        let (mut b, _, _) = buzzer();
        let t0 = Instant::now();
        let out = b.react(&Event::Identify, &at(t0));
        assert_eq!(state(&out), [r#"{"state":"ON","duration":0.2}"#]);
        send(&mut b, "chime", t0);
        assert!(
            b.react(&Event::Identify, &at(t0)).is_empty(),
            "the chime plays on"
        );
    }

    #[test]
    fn the_siren_offers_the_shipped_tunes_as_tones() {
        let e = entities(true);
        let tones = &e[0].fields["available_tones"];
        let names = Tunes::shared().unwrap().names();
        assert_eq!(tones, &serde_json::json!(names));
        assert!(names.contains(&"doorbell"));
        assert_eq!(e[0].fields["support_duration"], true);
    }
}
