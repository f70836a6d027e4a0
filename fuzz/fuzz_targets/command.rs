//! Every command payload parser, through the router: the first byte picks
//! the topic, the rest is the payload. A parsed pattern program is also run
//! (frames and next changes), since its timing arithmetic is where a hostile
//! program would hurt.
#![no_main]

use std::sync::{Arc, OnceLock};

use edge_agent::command::{Catalog, Command, MatrixSet, Router};
use edge_agent::parts::matrix::pattern::{frame_at, next_change, Library};
use libfuzzer_sys::fuzz_target;

const TOPICS: &[&str] = &[
    "edge/f/led/left/set",
    "edge/f/tilt/set",
    "edge/f/matrix/set",
    "edge/f/display/message/set",
    "edge/f/display/clock/set",
    "edge/f/buzzer/set",
    "edge/f/sim/button/press",
    "edge/f/sim/panic",
    "edge/f/nope/set",
];

fn router() -> &'static Router {
    static ROUTER: OnceLock<Router> = OnceLock::new();
    ROUTER.get_or_init(|| {
        let library = Library::builtin().expect("the shipped patterns parse");
        Router::new(
            "edge/f",
            Catalog {
                leds: vec!["left".into(), "right".into()],
                matrix: Some(Arc::new(library)),
                sim_button: true,
                sim_faults: true,
                display: Some(1000),
                tilt: true,
                buzzer: Some(10_000),
            },
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, payload)) = data.split_first() else {
        return;
    };
    let topic = TOPICS[usize::from(pick) % TOPICS.len()];
    if let Ok(Command::Matrix(MatrixSet::Run { program, .. })) = router().parse(topic, payload) {
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
