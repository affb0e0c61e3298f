//! `Retry-After` parsing, in both forms, against malformed input, and its use by
//! a retry policy on paused time.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, Response};
use proptest::prelude::*;
use tokio::time::Instant;
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_mesh_http::{parse_retry_after, RetryAfter, StatusClassifier};
use tower_mesh_retry::{Backoff, RetryDecision, RetryLayer, RetryPolicy};

/// 2015-10-21 07:26:40 UTC.
fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_400)
}

fn parse(value: &str) -> Option<Duration> {
    parse_retry_after(&HeaderValue::from_str(value).unwrap(), now())
}

#[test]
fn delta_seconds_are_a_wait_in_seconds() {
    assert_eq!(parse("0"), Some(Duration::ZERO));
    assert_eq!(parse("120"), Some(Duration::from_secs(120)));
    assert_eq!(
        parse(" 7 "),
        Some(Duration::from_secs(7)),
        "surrounding spaces"
    );
}

#[test]
fn every_http_date_format_is_a_wait_until_that_time() {
    let in_80_seconds = Some(Duration::from_secs(80));
    assert_eq!(parse("Wed, 21 Oct 2015 07:28:00 GMT"), in_80_seconds);
    assert_eq!(parse("Wednesday, 21-Oct-15 07:28:00 GMT"), in_80_seconds);
    assert_eq!(parse("Wed Oct 21 07:28:00 2015"), in_80_seconds);
}

#[test]
fn a_date_in_the_past_asks_for_no_wait() {
    assert_eq!(parse("Wed, 21 Oct 2015 07:00:00 GMT"), Some(Duration::ZERO));
}

#[test]
fn malformed_values_are_ignored() {
    for value in [
        "",
        "-5",
        "1.5",
        "soon",
        "120s",
        "99999999999999999999999",
        "Wed, 32 Oct 2015",
    ] {
        assert_eq!(parse(value), None, "{value:?}");
    }
    let not_text = HeaderValue::from_bytes(b"\xff\xfe").unwrap();
    assert_eq!(parse_retry_after(&not_text, now()), None);
}

proptest! {
    #[test]
    fn no_header_value_makes_the_parser_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(value) = HeaderValue::from_bytes(&bytes) {
            let _ = parse_retry_after(&value, now());
        }
    }

    #[test]
    fn any_delta_seconds_round_trips(seconds in any::<u64>()) {
        prop_assert_eq!(parse(&seconds.to_string()), Some(Duration::from_secs(seconds)));
    }
}

fn headers(retry_after: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("retry-after", retry_after.parse().unwrap());
    headers
}

#[test]
fn the_predicate_waits_as_asked_up_to_its_maximum() {
    let honour = RetryAfter::new(Duration::from_secs(10))
        .unwrap()
        .with_clock(now);
    assert_eq!(
        honour.decide(&headers("3")),
        RetryDecision::After(Duration::from_secs(3))
    );
    let capped = RetryDecision::After(Duration::from_secs(10));
    assert_eq!(honour.decide(&headers("3600")), capped);
    assert_eq!(
        honour.decide(&headers("Wed, 21 Oct 2015 07:28:00 GMT")),
        capped
    );
    assert_eq!(honour.decide(&headers("garbage")), RetryDecision::Backoff);
    assert_eq!(honour.decide(&HeaderMap::new()), RetryDecision::Backoff);
}

#[test]
fn a_zero_maximum_wait_is_rejected() {
    let error = RetryAfter::new(Duration::ZERO).unwrap_err();
    assert_eq!(error.field(), "max_wait");
}

#[tokio::test(start_paused = true)]
async fn a_retry_policy_waits_as_long_as_the_server_asks() {
    let attempts = Arc::new(AtomicU32::new(0));
    let seen = attempts.clone();
    let server = service_fn(move |_: ()| {
        let attempt = seen.fetch_add(1, Ordering::SeqCst);
        async move {
            let response = match attempt {
                0 => Response::builder()
                    .status(503)
                    .header("retry-after", "4")
                    .body(()),
                _ => Response::builder().status(200).body(()),
            };
            Ok::<_, std::io::Error>(response.unwrap())
        }
    });
    let policy = RetryPolicy::builder()
        .backoff(Backoff::constant(Duration::from_millis(100)))
        .max_delay(Duration::from_secs(30))
        .build()
        .unwrap()
        .with_classifier(StatusClassifier::gateway_errors())
        .with_retryable(RetryAfter::new(Duration::from_secs(10)).unwrap());
    let client = ServiceBuilder::new()
        .layer(RetryLayer::new(policy))
        .service(server);

    let started = Instant::now();
    let response = client.oneshot(()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(4),
        "the server's wait, not the backoff"
    );
}
