//! `parse_retry_after` over arbitrary header bytes: it never panics, a number of
//! seconds is read as exactly that, and a date never yields more than the time
//! from `now` to the end of the HTTP date range.
#![no_main]

use std::time::{Duration, SystemTime};

use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use tower_mesh_http::parse_retry_after;

fuzz_target!(|input: (u32, &[u8])| {
    let (since_epoch, bytes) = input;
    let Ok(value) = HeaderValue::from_bytes(bytes) else {
        return;
    };
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(since_epoch));
    let parsed = parse_retry_after(&value, now);
    let Ok(text) = value.to_str() else {
        assert_eq!(parsed, None, "a header that is not text has no delay");
        return;
    };
    let text = text.trim();
    let digits = !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit());
    if let (true, Ok(seconds)) = (digits, text.parse::<u64>()) {
        assert_eq!(parsed, Some(Duration::from_secs(seconds)), "{text:?}");
    }
    if let (false, Some(delay)) = (digits, parsed) {
        // HTTP dates end in 9999; no date is later than that.
        assert!(
            delay <= Duration::from_secs(253_402_300_800),
            "{text:?}: {delay:?}"
        );
    }
});
