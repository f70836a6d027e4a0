//! Every command payload parser, through the router: the first byte picks
//! the topic, the rest is the payload. A parsed pattern program is also run
//! (frames and next changes), since its timing arithmetic is where a hostile
//! program would hurt.
#![no_main]

use edge_agent::command::Parser;
use edge_agent::parts::matrix::pattern::{frame_at, next_change};
use libfuzzer_sys::fuzz_target;

const TOPICS: &[&str] = &[
    "edge/t/led/left/set",
    "edge/t/tilt/set",
    "edge/t/matrix/set",
    "edge/t/display/message/set",
    "edge/t/display/clock/set",
    "edge/t/buzzer/set",
    "edge/t/sim/button/press",
    "edge/t/sim/panic",
    "edge/t/nope/set",
];

thread_local! {
    /// Every part on simulated hardware, with generous limits.
    static PARSER: Parser = Parser::new(
        "[display]\nenabled = true\nbackend = \"sim\"\nmax_message_chars = 1000\n\
         [buzzer]\nenabled = true\nmax_beep_ms = 10000\n",
    )
    .expect("a device with every part");
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, payload)) = data.split_first() else {
        return;
    };
    let topic = TOPICS[usize::from(pick) % TOPICS.len()];
    if let Ok(Some(program)) = PARSER.with(|p| p.program(topic, payload)) {
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
