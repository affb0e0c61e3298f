//! End-to-end tests across tower-mesh crates live in this package's test targets.
