//! `GrpcCode::from_headers` over arbitrary `grpc-status` values: it never panics,
//! and a code it returns is one of the 17 gRPC codes, the value's number.
#![no_main]

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tower_mesh_http::GrpcCode;

fuzz_target!(|bytes: &[u8]| {
    let Ok(value) = HeaderValue::from_bytes(bytes) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert("grpc-status", value.clone());
    let Some(code) = GrpcCode::from_headers(&headers) else {
        return;
    };
    let number = u16::from(code.0);
    assert!(number <= 16, "{number} is not a gRPC code");
    let text = value.to_str().expect("a code came from text").trim();
    assert_eq!(text.parse::<u16>().ok(), Some(number), "{text:?}");
});
