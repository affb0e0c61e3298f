//! For every valid configuration: no delay exceeds its cap, and no request makes
//! more attempts than the limit allows.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use tower_mesh_retry::{Backoff, RetryBudget, RetryPolicy};

fn duration_up_to(millis: u64) -> impl Strategy<Value = Duration> + Clone {
    (0..=millis * 1_000).prop_map(Duration::from_micros)
}

fn backoff() -> impl Strategy<Value = Backoff> {
    let first = duration_up_to(5_000);
    let factor = prop_oneof![Just(1.0), 1.0..64.0f64, Just(1e300)];
    prop_oneof![
        first.clone().prop_map(Backoff::constant),
        (first.clone(), duration_up_to(60_000)).prop_map(|(f, s)| Backoff::linear(f, s)),
        (first.clone(), factor.clone()).prop_map(|(f, k)| Backoff::exponential(f, k)),
        (first.clone(), factor.clone()).prop_map(|(f, k)| Backoff::full_jitter(f, k)),
        (first.clone(), factor).prop_map(|(f, k)| Backoff::equal_jitter(f, k)),
        first.prop_map(Backoff::decorrelated_jitter),
    ]
}

prop_compose! {
    fn valid_policy()(
        backoff in backoff(),
        extra_cap in duration_up_to(30_000),
        jitter in prop_oneof![Just(0.0), 0.0..=1.0f64, Just(1.0)],
        retries in 0..12u32,
        seed in any::<u64>(),
    ) -> RetryPolicy {
        RetryPolicy::builder()
            .backoff(backoff)
            .max_delay(backoff.first_delay() + extra_cap)
            .jitter(jitter)
            .max_retries(retries)
            .seed(seed)
            .build()
            .expect("every generated configuration is valid")
    }
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn no_delay_exceeds_the_cap_or_goes_below_zero(policy in valid_policy(), retry in 0..4_000u32) {
        let delay = policy.get_delay(retry);
        prop_assert!(delay <= policy.max_delay(), "{delay:?} above {:?}", policy.max_delay());
        prop_assert!(delay >= Duration::ZERO);
    }

    #[test]
    fn deterministic_kinds_never_wait_less_than_their_first_delay(
        policy in valid_policy(),
        retry in 1..200u32,
    ) {
        prop_assume!(policy.jitter() == 0.0);
        prop_assume!(!matches!(
            policy.backoff(),
            Backoff::FullJitter { .. } | Backoff::EqualJitter { .. }
        ));
        prop_assert!(policy.get_delay(retry) >= policy.backoff().first_delay());
    }

    #[test]
    fn a_failing_operation_is_attempted_exactly_once_plus_the_retry_limit(
        policy in valid_policy(),
    ) {
        let attempts = AtomicU32::new(0);
        let result = paused_runtime().block_on(policy.execute(|| async {
            attempts.fetch_add(1, Ordering::Relaxed);
            Err::<(), _>("down")
        }));
        prop_assert_eq!(result, Err("down"));
        prop_assert_eq!(attempts.load(Ordering::Relaxed), policy.max_retries() + 1);
    }

    #[test]
    fn deadlines_and_budgets_only_ever_lower_the_attempts(
        backoff in backoff(),
        retries in 0..12u32,
        deadline in duration_up_to(20_000),
        ratio in 0.0..=1.0f64,
        floor in 0..5u32,
    ) {
        let runtime = paused_runtime();
        let _time = runtime.enter();
        let budget = RetryBudget::builder().ratio(ratio).min_per_second(floor).build().unwrap();
        let policy = RetryPolicy::builder()
            .backoff(backoff)
            .max_delay(backoff.first_delay() + Duration::from_secs(1))
            .max_retries(retries)
            .deadline(deadline + Duration::from_millis(1))
            .budget(budget)
            .build()
            .unwrap();
        let attempts = AtomicU32::new(0);
        let _ = runtime.block_on(policy.execute(|| async {
            attempts.fetch_add(1, Ordering::Relaxed);
            Err::<(), _>("down")
        }));
        let attempts = attempts.load(Ordering::Relaxed);
        prop_assert!((1..=retries + 1).contains(&attempts), "{attempts} attempts");
    }
}
