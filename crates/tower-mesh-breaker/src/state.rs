//! [`CircuitState`] and the packed word that holds it.

use std::fmt;

/// The state of a circuit breaker.
///
/// The first three are the automatic states of the classic pattern; the others are
/// set by hand through [`CircuitBreaker`](crate::CircuitBreaker) and stay until
/// [`reset`](crate::CircuitBreaker::reset) or another manual call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CircuitState {
    /// Calls flow; outcomes are counted and may trip the breaker.
    Closed,
    /// Calls are rejected until the open duration has passed.
    Open,
    /// A limited number of probe calls decide whether to close or open again.
    HalfOpen,
    /// Every call is rejected until the breaker is reset by hand.
    ForcedOpen,
    /// Every call is admitted and nothing is recorded: the breaker is switched off.
    Disabled,
    /// Every call is admitted; outcomes are recorded and rates reported, but the
    /// breaker never trips. Useful to observe a new configuration before enforcing it.
    MetricsOnly,
}

impl CircuitState {
    const ALL: [CircuitState; 6] = [
        CircuitState::Closed,
        CircuitState::Open,
        CircuitState::HalfOpen,
        CircuitState::ForcedOpen,
        CircuitState::Disabled,
        CircuitState::MetricsOnly,
    ];

    /// `true` when a call made now could be rejected in this state.
    pub fn rejects_calls(self) -> bool {
        matches!(
            self,
            CircuitState::Open | CircuitState::HalfOpen | CircuitState::ForcedOpen
        )
    }

    /// Whether a call is admitted in this state without any bookkeeping.
    #[inline]
    pub(crate) fn admits_freely(self) -> bool {
        matches!(
            self,
            CircuitState::Closed | CircuitState::Disabled | CircuitState::MetricsOnly
        )
    }

    /// A short lowercase name, as used in logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
            CircuitState::ForcedOpen => "forced_open",
            CircuitState::Disabled => "disabled",
            CircuitState::MetricsOnly => "metrics_only",
        }
    }

    pub(crate) fn code(self) -> u64 {
        self as u64
    }

    #[inline]
    fn from_code(code: u64) -> CircuitState {
        // Only `Word::new` writes codes, always from a `CircuitState`.
        Self::ALL[code as usize]
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The breaker's state, generation and half-open counters, packed in one `u64` so
/// that admission and release are single compare-and-swaps.
///
/// | bits   | field                                     |
/// |--------|-------------------------------------------|
/// | 0..3   | state code                                |
/// | 3..19  | half-open probes in flight                |
/// | 19..35 | half-open successes so far                |
/// | 35..64 | generation: bumped by every state change  |
///
/// The generation lets a permit tell whether the state it was admitted under is
/// still the current one, so a late outcome never counts against a newer state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Word(pub(crate) u64);

const STATE_BITS: u64 = 0b111;
const PROBES_SHIFT: u32 = 3;
const SUCCESSES_SHIFT: u32 = 19;
const GENERATION_SHIFT: u32 = 35;
const COUNTER_MASK: u64 = 0xFFFF;

/// The most half-open probes or successes the word can count.
pub(crate) const MAX_HALF_OPEN_COUNT: u32 = COUNTER_MASK as u32;

impl Word {
    pub(crate) fn new(state: CircuitState, generation: u64) -> Word {
        Word(state.code() | (generation << GENERATION_SHIFT))
    }

    #[inline]
    pub(crate) fn state(self) -> CircuitState {
        CircuitState::from_code(self.0 & STATE_BITS)
    }

    pub(crate) fn generation(self) -> u64 {
        self.0 >> GENERATION_SHIFT
    }

    pub(crate) fn probes(self) -> u32 {
        ((self.0 >> PROBES_SHIFT) & COUNTER_MASK) as u32
    }

    pub(crate) fn successes(self) -> u32 {
        ((self.0 >> SUCCESSES_SHIFT) & COUNTER_MASK) as u32
    }

    /// The next state: a new generation with both half-open counters at zero.
    pub(crate) fn next(self, state: CircuitState) -> Word {
        Word::new(
            state,
            self.generation().wrapping_add(1) & (u64::MAX >> GENERATION_SHIFT),
        )
    }

    pub(crate) fn with_probe_added(self) -> Word {
        Word(self.0 + (1 << PROBES_SHIFT))
    }

    /// One probe fewer; `success` also counts it as a half-open success.
    pub(crate) fn with_probe_released(self, success: bool) -> Word {
        let mut word = self.0;
        if self.probes() > 0 {
            word -= 1 << PROBES_SHIFT;
        }
        if success && self.successes() < MAX_HALF_OPEN_COUNT {
            word += 1 << SUCCESSES_SHIFT;
        }
        Word(word)
    }

    /// Same state and generation: the word still describes the same epoch.
    pub(crate) fn same_epoch(self, other: Word) -> bool {
        self.0 & STATE_BITS == other.0 & STATE_BITS && self.generation() == other.generation()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_round_trips_every_state() {
        for state in CircuitState::ALL {
            let word = Word::new(state, 7);
            assert_eq!(word.state(), state);
            assert_eq!(word.generation(), 7);
            assert_eq!(word.probes(), 0);
        }
    }

    #[test]
    fn probes_and_successes_do_not_disturb_each_other() {
        let word = Word::new(CircuitState::HalfOpen, 3)
            .with_probe_added()
            .with_probe_added();
        let word = word.with_probe_released(true);
        assert_eq!((word.probes(), word.successes()), (1, 1));
        assert_eq!(word.state(), CircuitState::HalfOpen);
        assert_eq!(word.generation(), 3);
    }

    #[test]
    fn releasing_with_no_probe_in_flight_saturates() {
        let word = Word::new(CircuitState::HalfOpen, 0).with_probe_released(false);
        assert_eq!(word.probes(), 0);
        assert_eq!(word.state(), CircuitState::HalfOpen);
    }

    #[test]
    fn generation_wraps_without_touching_the_state() {
        let last = Word::new(CircuitState::Closed, u64::MAX >> GENERATION_SHIFT);
        let next = last.next(CircuitState::Open);
        assert_eq!(next.generation(), 0);
        assert_eq!(next.state(), CircuitState::Open);
    }
}
