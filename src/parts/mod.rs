//! The device's parts, each in its own home.

pub mod matrix;
