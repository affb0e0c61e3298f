//! With the `metrics` feature, attempts, retries, budget refusals and give-ups
//! reach the `metrics` registry under the documented names and labels.
#![cfg(feature = "metrics")]

use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::MetricKind;
use tower_mesh_retry::{Backoff, RetryBudget, RetryPolicy};

/// The counter `name` whose labels include every pair in `labels`, or 0.
fn counter(snapshotter: &Snapshotter, name: &str, labels: &[(&str, &str)]) -> u64 {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .find(|(key, _, _, _)| {
            let (kind, key) = key.clone().into_parts();
            kind == MetricKind::Counter
                && key.name() == name
                && labels
                    .iter()
                    .all(|(k, v)| key.labels().any(|l| l.key() == *k && l.value() == *v))
        })
        .map_or(0, |(_, _, _, value)| match value {
            DebugValue::Counter(count) => count,
            other => panic!("{name} is not a counter: {other:?}"),
        })
}

/// Runs one request that always fails through `policy`, on a paused clock.
fn fail_once_through(policy: &RetryPolicy) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let result = runtime.block_on(policy.execute(|| async { Err::<(), _>("down") }));
    assert_eq!(result, Err("down"));
}

fn policy(name: &'static str, budget: Option<RetryBudget>) -> RetryPolicy {
    let builder = RetryPolicy::builder()
        .name(name)
        .backoff(Backoff::constant(Duration::from_millis(5)))
        .max_retries(2);
    match budget {
        Some(budget) => builder.budget(budget),
        None => builder,
    }
    .build()
    .unwrap()
}

#[test]
fn attempts_retries_and_the_final_give_up_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || fail_once_through(&policy("counted", None)));

    let policy = [("policy", "counted")];
    assert_eq!(
        counter(&snapshotter, "tower_mesh_retry_attempts_total", &policy),
        3
    );
    assert_eq!(
        counter(&snapshotter, "tower_mesh_retry_retries_total", &policy),
        2
    );
    let exhausted = [("policy", "counted"), ("reason", "retries exhausted")];
    let give_ups = "tower_mesh_retry_give_ups_total";
    assert_eq!(counter(&snapshotter, give_ups, &exhausted), 1);
    let refusals = "tower_mesh_retry_budget_refusals_total";
    assert_eq!(counter(&snapshotter, refusals, &policy), 0);
}

#[test]
fn a_budget_refusal_is_counted_with_its_give_up() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let _time = runtime.enter();
        let spent = RetryBudget::builder()
            .ratio(0.0)
            .min_per_second(0)
            .build()
            .unwrap();
        fail_once_through(&policy("refused", Some(spent)));
    });

    let policy = [("policy", "refused")];
    assert_eq!(
        counter(&snapshotter, "tower_mesh_retry_attempts_total", &policy),
        1
    );
    assert_eq!(
        counter(&snapshotter, "tower_mesh_retry_retries_total", &policy),
        0
    );
    let refusals = "tower_mesh_retry_budget_refusals_total";
    assert_eq!(counter(&snapshotter, refusals, &policy), 1);
    let budget = [("policy", "refused"), ("reason", "budget exhausted")];
    assert_eq!(
        counter(&snapshotter, "tower_mesh_retry_give_ups_total", &budget),
        1
    );
}
