//! End-to-end tests across tower-mesh crates live in this package's test targets.
//!
//! The README's examples are compiled and run here, as the doctests of this crate.
#![doc = include_str!("../README.md")]
