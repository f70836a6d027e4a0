//! The 5×5 LED matrix: its frame type, its pattern language and the engine
//! that plays a pattern on the outputs.

pub mod command;
pub mod engine;
mod frame;
pub mod pattern;

pub use frame::Frame;
