//! Circuit breaker benchmarks (filled in below).
fn main() {}
