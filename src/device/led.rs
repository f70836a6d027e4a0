//! A dimmable LED on one PWM channel, with Home Assistant's light semantics:
//! OFF keeps the brightness so that the next ON brings it back.

use crate::command::LedSet;
use crate::hardware::{HardwareError, PwmChannel};

/// What an LED shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedState {
    /// Lit or not.
    pub on: bool,
    /// Brightness 0..=255 (kept while off).
    pub brightness: u8,
}

impl LedState {
    /// The PWM duty cycle this state needs.
    pub fn duty(&self) -> f64 {
        if self.on {
            f64::from(self.brightness) / 255.0
        } else {
            0.0
        }
    }
}

/// One PWM LED and what it currently shows.
pub struct Led {
    pwm: Box<dyn PwmChannel>,
    state: LedState,
}

impl Led {
    /// Takes the channel and turns it off.
    pub fn new(mut pwm: Box<dyn PwmChannel>) -> Result<Self, HardwareError> {
        pwm.set_duty(0.0)?;
        Ok(Led {
            pwm,
            state: LedState {
                on: false,
                brightness: 255,
            },
        })
    }

    /// The current state.
    pub fn state(&self) -> LedState {
        self.state
    }

    /// The state `set` leads to, from the current one.
    pub fn next_state(&self, set: LedSet) -> LedState {
        let mut next = self.state;
        if let Some(b) = set.brightness {
            next.brightness = b;
            next.on = b > 0;
        }
        match set.state {
            Some(true) => {
                next.on = true;
                if next.brightness == 0 {
                    next.brightness = 255;
                }
            }
            Some(false) => {
                next.on = false;
                if set.brightness.is_some() {
                    next.brightness = self.state.brightness;
                }
            }
            None => {}
        }
        next
    }

    /// Applies a command; the state changes only if the hardware took it.
    pub fn apply(&mut self, set: LedSet) -> Result<LedState, HardwareError> {
        self.show(self.next_state(set))
    }

    /// Turns the LED off (the brightness is kept).
    pub fn off(&mut self) -> Result<LedState, HardwareError> {
        self.show(LedState {
            on: false,
            ..self.state
        })
    }

    fn show(&mut self, next: LedState) -> Result<LedState, HardwareError> {
        if next.duty() != self.state.duty() {
            self.pwm.set_duty(next.duty())?;
        }
        self.state = next;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::sim::SimPwm;

    fn led() -> (Led, crate::hardware::sim::Recording<f64>) {
        let pwm = SimPwm::default();
        let rec = pwm.writes.clone();
        (Led::new(Box::new(pwm)).unwrap(), rec)
    }

    #[tokio::test]
    async fn on_off_keeps_brightness_and_writes_only_changes() {
        let (mut l, rec) = led();
        l.apply(LedSet {
            state: Some(true),
            brightness: Some(51),
        })
        .unwrap();
        l.apply(LedSet {
            state: Some(true),
            brightness: None,
        })
        .unwrap();
        l.apply(LedSet {
            state: Some(false),
            brightness: None,
        })
        .unwrap();
        let s = l
            .apply(LedSet {
                state: Some(true),
                brightness: None,
            })
            .unwrap();
        assert_eq!(
            s,
            LedState {
                on: true,
                brightness: 51
            }
        );
        assert_eq!(rec.values(), vec![0.0, 0.2, 0.0, 0.2]);
    }

    #[tokio::test]
    async fn brightness_zero_is_off_and_on_after_it_is_full() {
        let (mut l, _) = led();
        let s = l
            .apply(LedSet {
                state: None,
                brightness: Some(0),
            })
            .unwrap();
        assert!(!s.on);
        let s = l
            .apply(LedSet {
                state: Some(true),
                brightness: None,
            })
            .unwrap();
        assert_eq!(
            s,
            LedState {
                on: true,
                brightness: 255
            }
        );
    }

    struct Broken;
    impl PwmChannel for Broken {
        fn set_duty(&mut self, duty: f64) -> Result<(), HardwareError> {
            if duty > 0.0 {
                Err(HardwareError::Invalid("broken".into()))
            } else {
                Ok(())
            }
        }
    }

    #[test]
    fn a_failed_write_leaves_the_state_alone() {
        let mut l = Led::new(Box::new(Broken)).unwrap();
        let before = l.state();
        assert!(l
            .apply(LedSet {
                state: Some(true),
                brightness: Some(9)
            })
            .is_err());
        assert_eq!(l.state(), before);
    }
}
