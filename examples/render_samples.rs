//! Renders the sample screens under docs/ (the clock and a message) with the
//! PNG display backend: `cargo run --example render_samples`.

use edge_agent::hardware::png_file::PngDisplay;
use edge_agent::hardware::Display;
use edge_agent::parts::message_board::render::{render, samples};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for (name, screen) in samples() {
        let mut d = PngDisplay::new(format!("docs/{name}.png"), 264, 176);
        d.show(&render(&screen, 264, 176))?;
        println!("wrote docs/{name}.png");
    }
    Ok(())
}
