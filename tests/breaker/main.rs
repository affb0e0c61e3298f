//! End-to-end tests of the circuit breaker.
