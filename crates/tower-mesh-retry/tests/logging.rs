//! Each retry and each give-up is a `debug!` event with structured fields; a
//! first attempt that succeeds logs nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tower_mesh_retry::{Backoff, RetryPolicy};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

type Fields = BTreeMap<&'static str, String>;

/// Keeps the level and fields of every event.
#[derive(Clone, Default)]
struct Capture {
    events: Arc<Mutex<Vec<(Level, Fields)>>>,
}

impl Visit for FieldsVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name(), value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name(), format!("{value:?}"));
    }
}

struct FieldsVisitor<'a>(&'a mut Fields);

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::new();
        event.record(&mut FieldsVisitor(&mut fields));
        let level = *event.metadata().level();
        self.events.lock().unwrap().push((level, fields));
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

fn run_logged(policy: &RetryPolicy, failures: u32) -> Vec<(Level, Fields)> {
    let capture = Capture::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let calls = std::sync::atomic::AtomicU32::new(0);
    tracing::subscriber::with_default(capture.clone(), || {
        let _ = runtime.block_on(policy.execute(|| async {
            match calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < failures {
                true => Err("unavailable"),
                false => Ok(()),
            }
        }));
    });
    let events = capture.events.lock().unwrap().clone();
    events
}

fn policy() -> RetryPolicy {
    RetryPolicy::builder()
        .name("logged")
        .backoff(Backoff::constant(Duration::from_millis(40)))
        .jitter(0.0)
        .max_retries(1)
        .build()
        .unwrap()
}

#[test]
fn a_retry_logs_the_attempt_the_delay_and_the_reason_at_debug() {
    let events = run_logged(&policy(), 1);
    assert_eq!(events.len(), 1, "{events:?}");
    let (level, fields) = &events[0];
    assert_eq!(*level, Level::DEBUG);
    assert_eq!(fields["message"], "retrying after a failure");
    assert_eq!(fields["policy"], "logged");
    assert_eq!(fields["attempt"], "2", "the attempt about to be sent");
    assert_eq!(fields["delay"], "40ms");
    assert_eq!(fields["reason"], "error");
}

#[test]
fn giving_up_logs_the_attempts_made_and_why() {
    let events = run_logged(&policy(), 5);
    let (level, fields) = events.last().expect("a give-up event");
    assert_eq!(*level, Level::DEBUG);
    assert_eq!(fields["message"], "giving up on retries");
    assert_eq!(fields["attempts"], "2");
    assert_eq!(fields["reason"], "retries exhausted");
}

#[test]
fn a_first_attempt_that_succeeds_logs_nothing() {
    assert!(run_logged(&policy(), 0).is_empty());
}
