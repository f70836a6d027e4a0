//! The pattern program language: any JSON, parsed within the default limits;
//! an accepted program is run for a while on its own clock.
#![no_main]

use edge_agent::parts::matrix::pattern::{frame_at, next_change, parse, Limits, NoNames};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(program) = parse(&value, Limits::default(), &NoNames) {
        let mut tau = 0;
        for _ in 0..64 {
            let _ = frame_at(&program, tau);
            match next_change(&program, tau) {
                Some(next) => {
                    assert!(next > tau, "time goes forward: {next} after {tau}");
                    tau = next;
                }
                None => break,
            }
        }
    }
});
