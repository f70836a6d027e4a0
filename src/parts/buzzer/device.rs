//! The buzzer: on, off, or a beep of a given length (then off by itself).

use tokio::time::{Duration, Instant};

use super::command::BuzzerSet;
use crate::hardware::{HardwareError, PwmChannel};

/// The buzzer and its timer.
pub struct Buzzer {
    channel: Box<dyn PwmChannel>,
    on_duty: f64,
    on: bool,
    until: Option<Instant>,
    /// The longest beep it takes (ms).
    pub(crate) max_beep_ms: u64,
}

impl Buzzer {
    /// Takes the channel (silenced); `tone` selects a 50 % duty (PWM tone)
    /// instead of fully on (a digital output).
    pub fn new(mut channel: Box<dyn PwmChannel>, tone: bool) -> Result<Self, HardwareError> {
        channel.set_duty(0.0)?;
        Ok(Buzzer {
            channel,
            on_duty: if tone { 0.5 } else { 1.0 },
            on: false,
            until: None,
            max_beep_ms: u64::MAX,
        })
    }

    /// Its state report: `ON` or `OFF`.
    pub(crate) fn payload(&self) -> &'static str {
        if self.is_on() {
            "ON"
        } else {
            "OFF"
        }
    }

    /// Whether it sounds.
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// When a beep ends, if one is running.
    pub fn beep_ends(&self) -> Option<Instant> {
        self.until
    }

    fn sound(&mut self, on: bool) -> Result<(), HardwareError> {
        if on != self.on {
            self.channel.set_duty(if on { self.on_duty } else { 0.0 })?;
            self.on = on;
        }
        Ok(())
    }

    /// Carries out a command; nothing changes if the hardware refuses.
    pub fn set(&mut self, set: BuzzerSet, now: Instant) -> Result<(), HardwareError> {
        match set {
            BuzzerSet::On => self.sound(true)?,
            BuzzerSet::Off => self.sound(false)?,
            BuzzerSet::Beep(ms) => {
                self.sound(true)?;
                self.until = Some(now + Duration::from_millis(ms));
                return Ok(());
            }
        }
        self.until = None;
        Ok(())
    }

    /// Silences it (a beep's end, shutdown).
    pub fn off(&mut self) -> Result<(), HardwareError> {
        self.until = None;
        self.sound(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::sim::SimPwm;

    #[tokio::test(start_paused = true)]
    async fn a_beep_ends_by_itself() {
        let pwm = SimPwm::default();
        let rec = pwm.writes.clone();
        let mut b = Buzzer::new(Box::new(pwm), true).unwrap();
        let t0 = Instant::now();
        b.set(BuzzerSet::Beep(200), t0).unwrap();
        assert_eq!(b.beep_ends(), Some(t0 + Duration::from_millis(200)));
        tokio::time::sleep_until(b.beep_ends().unwrap()).await;
        b.off().unwrap();
        let at: Vec<(u128, f64)> = rec
            .entries()
            .iter()
            .map(|(t, d)| ((*t - t0).as_millis(), *d))
            .collect();
        assert_eq!(at, vec![(0, 0.0), (0, 0.5), (200, 0.0)]);
        b.set(BuzzerSet::On, Instant::now()).unwrap();
        assert!(b.is_on() && b.beep_ends().is_none());
    }
}
