//! The HTTP and gRPC classifiers, status by status.

use std::time::Duration;

use http::{HeaderMap, Response};
use tower_mesh_core::{Classify, Outcome};
use tower_mesh_http::{GrpcClassifier, GrpcCode, StatusClassifier};

fn status(code: u16) -> Response<()> {
    Response::builder().status(code).body(()).unwrap()
}

fn verdict<C: Classify<Response<()>, std::io::Error>>(classifier: &C, code: u16) -> Outcome {
    classifier.classify(Ok(&status(code)), Duration::ZERO)
}

fn grpc(classifier: &GrpcClassifier, value: &str) -> Outcome {
    let response = Response::builder()
        .header("grpc-status", value)
        .body(())
        .unwrap();
    Classify::<_, std::io::Error>::classify(classifier, Ok(&response), Duration::ZERO)
}

#[test]
fn server_errors_fail_every_5xx_and_nothing_else() {
    let classifier = StatusClassifier::server_errors();
    for code in 500..600 {
        assert_eq!(verdict(&classifier, code), Outcome::Failure, "{code}");
    }
    for code in [200, 204, 301, 400, 404, 429, 499] {
        assert_eq!(verdict(&classifier, code), Outcome::Success, "{code}");
    }
}

#[test]
fn gateway_errors_fail_only_502_503_and_504() {
    let classifier = StatusClassifier::gateway_errors();
    for code in 100..600 {
        let expected = if matches!(code, 502..=504) {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        assert_eq!(verdict(&classifier, code), expected, "{code}");
    }
}

#[test]
fn too_many_requests_fails_only_when_overload_counts() {
    assert_eq!(
        verdict(&StatusClassifier::gateway_errors(), 429),
        Outcome::Success
    );
    let overload = StatusClassifier::gateway_errors().with_overload_as_failure();
    assert_eq!(verdict(&overload, 429), Outcome::Failure);
}

#[test]
fn an_error_without_a_response_is_a_failure() {
    let error = std::io::Error::other("connection refused");
    let classifier = StatusClassifier::gateway_errors();
    let outcome = Classify::<Response<()>, _>::classify(&classifier, Err(&error), Duration::ZERO);
    assert_eq!(outcome, Outcome::Failure);
}

#[test]
fn grpc_fails_the_codes_that_say_the_server_is_unwell() {
    let classifier = GrpcClassifier::default();
    let failing = [2, 4, 8, 13, 14, 15];
    for code in 0..=16u8 {
        let expected = if failing.contains(&code) {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        assert_eq!(
            grpc(&classifier, &code.to_string()),
            expected,
            "code {code}"
        );
    }
}

#[test]
fn grpc_failure_codes_can_be_added_and_removed() {
    let classifier = GrpcClassifier::default()
        .with_failure_code(GrpcCode::NOT_FOUND)
        .without_failure_code(GrpcCode::RESOURCE_EXHAUSTED);
    assert_eq!(grpc(&classifier, "5"), Outcome::Failure);
    assert_eq!(grpc(&classifier, "8"), Outcome::Success);
}

#[test]
fn a_malformed_grpc_status_is_no_status() {
    let classifier = GrpcClassifier::default();
    for value in ["", "fourteen", "-1", "17", "999", "1 4"] {
        assert_eq!(grpc(&classifier, value), Outcome::Success, "{value:?}");
    }
}

#[test]
fn grpc_trailers_are_classified_when_they_carry_a_status() {
    let classifier = GrpcClassifier::default();
    let mut trailers = HeaderMap::new();
    assert_eq!(classifier.classify_trailers(&trailers), None);
    trailers.insert("grpc-status", "14".parse().unwrap());
    assert_eq!(
        classifier.classify_trailers(&trailers),
        Some(Outcome::Failure)
    );
    trailers.insert("grpc-status", "0".parse().unwrap());
    assert_eq!(
        classifier.classify_trailers(&trailers),
        Some(Outcome::Success)
    );
}
