//! RTTTL tunes: any text, parsed within the default limits; an accepted
//! tune is turned into the buzzer's steps, whose times must go forward and
//! stay within the tune.
#![no_main]

use edge_agent::parts::buzzer::rtttl::{parse, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = parse(text, Limits::default()) {
        let tune = r.tune();
        let steps = tune.steps();
        assert!(!steps.is_empty() && steps[0].at_us == 0, "a tune starts at 0");
        assert!(
            steps.windows(2).all(|w| w[0].at_us < w[1].at_us),
            "times go forward"
        );
        assert!(
            steps.iter().all(|s| s.at_us == 0 || s.at_us < tune.length_us()),
            "every step within the tune"
        );
        assert!(tune.length_us() <= 300_000_000, "within buzzer.max_tune_s");
        for n in &r.notes {
            assert!(n.0 < n.1, "a note lasts");
            if let Some(hz) = n.2 {
                assert!(hz.is_finite() && (20.0..20_000.0).contains(&hz), "{hz} Hz");
            }
        }
    }
});
