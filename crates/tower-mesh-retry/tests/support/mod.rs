//! A scripted service for the retry tests: it answers each attempt from a script
//! and records when each attempt arrived, on tokio's paused clock.

#![allow(dead_code, unreachable_pub)]

use std::future::Ready;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower::Service;

/// What the scripted service answers to one attempt.
pub type Answer = Result<u16, &'static str>;

/// A service answering attempts from a script (the last answer repeats) and
/// recording when each attempt arrived.
#[derive(Clone)]
pub struct Scripted {
    script: Arc<Vec<Answer>>,
    calls: Arc<Mutex<Vec<Instant>>>,
}

impl Scripted {
    pub fn new(script: &[Answer]) -> Scripted {
        Scripted {
            script: Arc::new(script.to_vec()),
            calls: Arc::default(),
        }
    }

    /// Fails `failures` times with an error, then succeeds with 200.
    pub fn failing(failures: usize) -> Scripted {
        let mut script = vec![Err("unavailable"); failures];
        script.push(Ok(200));
        Scripted::new(&script)
    }

    /// Always fails.
    pub fn down() -> Scripted {
        Scripted::new(&[Err("unavailable")])
    }

    pub fn attempts(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    /// The time between consecutive attempts.
    pub fn gaps(&self) -> Vec<Duration> {
        let calls = self.calls.lock().unwrap();
        calls.windows(2).map(|pair| pair[1] - pair[0]).collect()
    }

    fn answer(&self) -> Answer {
        let mut calls = self.calls.lock().unwrap();
        calls.push(Instant::now());
        let index = (calls.len() - 1).min(self.script.len() - 1);
        self.script[index]
    }
}

impl<Req> Service<Req> for Scripted {
    type Response = u16;
    type Error = &'static str;
    type Future = Ready<Answer>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: Req) -> Self::Future {
        std::future::ready(self.answer())
    }
}

pub fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}
