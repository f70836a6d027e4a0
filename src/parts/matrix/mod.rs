//! The 5×5 LED matrix.

mod frame;

pub use frame::Frame;
