//! The config loader: any text as a config file. It is refused with an
//! error or accepted; it never panics.
#![no_main]

use edge_agent::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Config::from_toml(text);
    }
});
