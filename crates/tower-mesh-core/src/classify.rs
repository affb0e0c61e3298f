//! Outcome classification: turning a finished call into success, failure or ignored.

use std::fmt;
use std::time::Duration;

/// What a finished call means for the layers that watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The call did what was asked; it counts towards health.
    Success,
    /// The call failed in a way that says the callee is unwell; it counts against health.
    Failure,
    /// The call says nothing about the callee's health (a client error, a cancelled
    /// call, a response the caller chose to disregard); it is not counted at all.
    Ignored,
}

impl Outcome {
    /// `true` for [`Outcome::Failure`].
    pub fn is_failure(self) -> bool {
        self == Outcome::Failure
    }
}

/// Maps a finished call to an [`Outcome`].
///
/// `result` borrows the call's response or error; `latency` is how long the call
/// took. Measuring latency costs two clock reads per call, so layers only do it
/// when [`needs_latency`](Classify::needs_latency) is `true`, and pass
/// `Duration::ZERO` otherwise.
///
/// The breaker, the retry policy and the balancer's outlier detection all take
/// this trait, so one classifier describes "failure" for the whole stack.
pub trait Classify<Res, Err> {
    /// Classifies one finished call.
    fn classify(&self, result: Result<&Res, &Err>, latency: Duration) -> Outcome;

    /// Whether [`classify`](Classify::classify) looks at `latency`.
    ///
    /// The default is `true`, which is always correct; classifiers that never look
    /// at latency return `false` and save the caller two clock reads per call.
    fn needs_latency(&self) -> bool {
        true
    }
}

impl<Res, Err, C: Classify<Res, Err> + ?Sized> Classify<Res, Err> for &C {
    fn classify(&self, result: Result<&Res, &Err>, latency: Duration) -> Outcome {
        (**self).classify(result, latency)
    }

    fn needs_latency(&self) -> bool {
        (**self).needs_latency()
    }
}

// ===== ErrorsAsFailures =====

/// The default classifier: every `Ok` is a success and every `Err` a failure.
///
/// ```
/// use std::time::Duration;
/// use tower_mesh_core::{Classify, ErrorsAsFailures, Outcome};
///
/// let ok: Result<&(), &&str> = Ok(&());
/// assert_eq!(ErrorsAsFailures.classify(ok, Duration::ZERO), Outcome::Success);
/// assert_eq!(ErrorsAsFailures.classify(Err::<&(), _>(&"boom"), Duration::ZERO), Outcome::Failure);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorsAsFailures;

impl<Res, Err> Classify<Res, Err> for ErrorsAsFailures {
    fn classify(&self, result: Result<&Res, &Err>, _latency: Duration) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }

    fn needs_latency(&self) -> bool {
        false
    }
}

// ===== closures =====

/// A classifier made from a closure that sees the result and the latency.
///
/// Made by [`classify_fn`].
#[derive(Clone, Copy)]
pub struct FnClassifier<F> {
    f: F,
}

/// Builds a classifier from a closure over the result and the call's latency.
///
/// ```
/// use std::time::Duration;
/// use tower_mesh_core::{classify_fn, Classify, Outcome};
///
/// let slow_is_failure = classify_fn(|result: Result<&u32, &String>, latency| match result {
///     Err(_) => Outcome::Failure,
///     Ok(_) if latency > Duration::from_millis(500) => Outcome::Failure,
///     Ok(_) => Outcome::Success,
/// });
/// assert_eq!(slow_is_failure.classify(Ok(&1), Duration::from_secs(1)), Outcome::Failure);
/// ```
pub fn classify_fn<Res, Err, F>(f: F) -> FnClassifier<F>
where
    F: Fn(Result<&Res, &Err>, Duration) -> Outcome,
{
    FnClassifier { f }
}

impl<Res, Err, F> Classify<Res, Err> for FnClassifier<F>
where
    F: Fn(Result<&Res, &Err>, Duration) -> Outcome,
{
    fn classify(&self, result: Result<&Res, &Err>, latency: Duration) -> Outcome {
        (self.f)(result, latency)
    }
}

impl<F> fmt::Debug for FnClassifier<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnClassifier").finish_non_exhaustive()
    }
}

/// A classifier made from a closure that sees only the result, never the latency.
///
/// Made by [`classify_result_fn`]; layers skip measuring latency for it.
#[derive(Clone, Copy)]
pub struct ResultFnClassifier<F> {
    f: F,
}

/// Builds a classifier from a closure over the result alone.
///
/// ```
/// use std::time::Duration;
/// use tower_mesh_core::{classify_result_fn, Classify, Outcome};
///
/// // A "not found" says nothing about the server's health.
/// let classifier = classify_result_fn(|result: Result<&u16, &()>| match result {
///     Ok(404) => Outcome::Ignored,
///     Ok(status) if *status >= 500 => Outcome::Failure,
///     Ok(_) => Outcome::Success,
///     Err(()) => Outcome::Failure,
/// });
/// assert_eq!(classifier.classify(Ok(&404), Duration::ZERO), Outcome::Ignored);
/// assert!(!classifier.needs_latency());
/// ```
pub fn classify_result_fn<Res, Err, F>(f: F) -> ResultFnClassifier<F>
where
    F: Fn(Result<&Res, &Err>) -> Outcome,
{
    ResultFnClassifier { f }
}

impl<Res, Err, F> Classify<Res, Err> for ResultFnClassifier<F>
where
    F: Fn(Result<&Res, &Err>) -> Outcome,
{
    fn classify(&self, result: Result<&Res, &Err>, _latency: Duration) -> Outcome {
        (self.f)(result)
    }

    fn needs_latency(&self) -> bool {
        false
    }
}

impl<F> fmt::Debug for ResultFnClassifier<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResultFnClassifier").finish_non_exhaustive()
    }
}

// ===== composition =====

/// Combinators for any classifier.
pub trait ClassifyExt: Sized {
    /// A call fails when either classifier says it failed. Otherwise it succeeds
    /// when either says it succeeded, and is ignored only when both ignore it.
    fn or<B>(self, other: B) -> Or<Self, B> {
        Or {
            first: self,
            second: other,
        }
    }

    /// Calls for which `predicate` returns `true` are ignored, whatever `self`
    /// says of them.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_mesh_core::{Classify, ClassifyExt, ErrorsAsFailures, Outcome};
    ///
    /// // A cancelled call is the caller's doing, not the callee's.
    /// let classifier = ErrorsAsFailures.ignoring(|result: Result<&(), &&str>| {
    ///     matches!(result, Err(&"cancelled"))
    /// });
    /// assert_eq!(classifier.classify(Err(&"cancelled"), Duration::ZERO), Outcome::Ignored);
    /// assert_eq!(classifier.classify(Err(&"refused"), Duration::ZERO), Outcome::Failure);
    /// ```
    fn ignoring<F>(self, predicate: F) -> Ignoring<Self, F> {
        Ignoring {
            inner: self,
            predicate,
        }
    }
}

impl<T> ClassifyExt for T {}

/// Fails a call when either of two classifiers does. Made by [`ClassifyExt::or`].
#[derive(Debug, Clone, Copy)]
pub struct Or<A, B> {
    first: A,
    second: B,
}

impl<Res, Err, A, B> Classify<Res, Err> for Or<A, B>
where
    A: Classify<Res, Err>,
    B: Classify<Res, Err>,
{
    fn classify(&self, result: Result<&Res, &Err>, latency: Duration) -> Outcome {
        match (
            self.first.classify(result, latency),
            self.second.classify(result, latency),
        ) {
            (Outcome::Failure, _) | (_, Outcome::Failure) => Outcome::Failure,
            (Outcome::Success, _) | (_, Outcome::Success) => Outcome::Success,
            (Outcome::Ignored, Outcome::Ignored) => Outcome::Ignored,
        }
    }

    fn needs_latency(&self) -> bool {
        self.first.needs_latency() || self.second.needs_latency()
    }
}

/// Ignores the calls a predicate picks out. Made by [`ClassifyExt::ignoring`].
#[derive(Clone, Copy)]
pub struct Ignoring<C, F> {
    inner: C,
    predicate: F,
}

impl<Res, Err, C, F> Classify<Res, Err> for Ignoring<C, F>
where
    C: Classify<Res, Err>,
    F: Fn(Result<&Res, &Err>) -> bool,
{
    fn classify(&self, result: Result<&Res, &Err>, latency: Duration) -> Outcome {
        if (self.predicate)(result) {
            return Outcome::Ignored;
        }
        self.inner.classify(result, latency)
    }

    fn needs_latency(&self) -> bool {
        self.inner.needs_latency()
    }
}

impl<C: fmt::Debug, F> fmt::Debug for Ignoring<C, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ignoring")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type E = &'static str;

    fn server_errors() -> impl Classify<u16, &'static str> + Clone {
        classify_result_fn(|result: Result<&u16, &E>| match result {
            Ok(status) if *status >= 500 => Outcome::Failure,
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Ignored,
        })
    }

    #[test]
    fn or_fails_when_either_side_fails() {
        let both = ErrorsAsFailures.or(server_errors());
        assert_eq!(both.classify(Ok(&503), Duration::ZERO), Outcome::Failure);
        assert_eq!(
            both.classify(Err(&"reset"), Duration::ZERO),
            Outcome::Failure
        );
        assert_eq!(both.classify(Ok(&200), Duration::ZERO), Outcome::Success);
    }

    #[test]
    fn or_ignores_only_when_both_sides_ignore() {
        let ignore_all = classify_result_fn(|_: Result<&u16, &E>| Outcome::Ignored);
        let mixed = ignore_all.or(server_errors());
        assert_eq!(mixed.classify(Ok(&200), Duration::ZERO), Outcome::Success);
        assert_eq!(mixed.classify(Err(&"x"), Duration::ZERO), Outcome::Ignored);
    }

    #[test]
    fn or_needs_latency_when_either_side_does() {
        let timing = classify_fn(|_: Result<&u16, &E>, _| Outcome::Success);
        assert!(!ErrorsAsFailures.or(server_errors()).needs_latency());
        assert!(<_ as Classify<u16, &str>>::needs_latency(
            &ErrorsAsFailures.or(timing)
        ));
    }

    #[test]
    fn closure_classifier_receives_the_latency() {
        let slow = classify_fn(|_: Result<&u16, &E>, latency| {
            if latency >= Duration::from_secs(2) {
                Outcome::Failure
            } else {
                Outcome::Success
            }
        });
        assert_eq!(
            slow.classify(Ok(&200), Duration::from_secs(2)),
            Outcome::Failure
        );
        assert_eq!(
            slow.classify(Ok(&200), Duration::from_secs(1)),
            Outcome::Success
        );
    }

    #[test]
    fn ignoring_overrides_the_inner_verdict() {
        let classifier = server_errors().ignoring(|result: Result<&u16, &E>| result == Ok(&599));
        assert_eq!(
            classifier.classify(Ok(&599), Duration::ZERO),
            Outcome::Ignored
        );
        assert_eq!(
            classifier.classify(Ok(&500), Duration::ZERO),
            Outcome::Failure
        );
    }

    #[test]
    fn references_classify_like_their_target() {
        let classifier = &ErrorsAsFailures;
        assert_eq!(
            Classify::<u16, &str>::classify(&classifier, Err(&"e"), Duration::ZERO),
            Outcome::Failure
        );
    }
}
