//! `parse_record` over arbitrary bytes: it never panics, an accepted record is a
//! usable instance, and writing it back with `to_record` reads back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_mesh_discover::{parse_record, to_record};

fuzz_target!(|bytes: &[u8]| {
    let Ok(instance) = parse_record(bytes, Some("default")) else {
        return;
    };
    assert!(!instance.id.is_empty(), "an instance has an id");
    assert!(!instance.host.is_empty(), "an instance has a host");
    assert_ne!(instance.port, 0, "an instance has a port");
    assert_ne!(instance.weight, 0, "an instance has a weight");
    let written = to_record(&instance);
    let read_back = parse_record(written.as_bytes(), None).expect("a written record reads back");
    assert_eq!(read_back, instance, "{written}");
});
