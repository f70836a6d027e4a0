//! The e-paper message board: a message or the minute clock, drawn on the
//! panel by a worker of its own.

pub mod board;
pub mod command;
pub mod display;
pub mod render;
