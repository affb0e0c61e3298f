//! The resolution loop: resolve, decide what the answer means, wait, again.

use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use hickory_resolver::TokioResolver;
use tokio::time::{sleep_until, Instant};

use super::lookup::{resolve, Answer, Query};
use super::EmptyAnswer;
use crate::changes::{InstanceSet, Snapshots};
use crate::telemetry::Telemetry;

/// When to resolve again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timing {
    pub(crate) min_refresh: Duration,
    pub(crate) max_refresh: Duration,
}

impl Timing {
    /// After an answer: when its records expire, within the bounds.
    pub(crate) fn after_answer(&self, ttl: Duration) -> Duration {
        ttl.clamp(self.min_refresh, self.max_refresh)
    }

    /// After the `failures`th failure in a row: the minimum, doubled per earlier
    /// failure, up to the maximum.
    pub(crate) fn after_failure(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(20);
        let delay = self.min_refresh.saturating_mul(1 << doublings);
        delay.min(self.max_refresh)
    }
}

/// The state the loop carries from one round to the next.
pub(crate) struct Refresh {
    pub(crate) resolver: TokioResolver,
    pub(crate) query: Query,
    pub(crate) timing: Timing,
    pub(crate) on_empty: EmptyAnswer,
    pub(crate) telemetry: Telemetry,
    pub(crate) failures: u32,
    pub(crate) empty: bool,
    pub(crate) next_round: Option<Instant>,
}

impl Refresh {
    /// The wanted sets, one per answer that changes what the balancer should have.
    pub(crate) fn snapshots(self) -> Snapshots {
        let rounds = stream::unfold(self, |mut refresh| async move {
            let wanted = refresh.next_wanted().await;
            Some((wanted, refresh))
        });
        rounds.boxed()
    }

    async fn next_wanted(&mut self) -> InstanceSet {
        loop {
            if let Some(at) = self.next_round {
                sleep_until(at).await;
            }
            // Each round asks the server: the source keeps its own schedule.
            self.resolver.clear_cache();
            let answer = resolve(&self.resolver, &self.query).await;
            let (wanted, delay) = self.judge(answer);
            self.next_round = Some(Instant::now() + delay);
            if let Some(wanted) = wanted {
                return wanted;
            }
        }
    }

    /// What an answer means for the wanted set (`None`: keep the last one) and
    /// how long to wait before the next round.
    fn judge(&mut self, answer: Answer) -> (Option<InstanceSet>, Duration) {
        let name = self.query.name();
        match answer {
            Answer::Found { instances, ttl } => {
                self.failures = 0;
                self.empty = false;
                self.telemetry.lookup("found");
                self.telemetry.instances(instances.len());
                let delay = self.timing.after_answer(ttl);
                tracing::trace!(%name, instances = instances.len(), ?ttl, ?delay, "dns answer");
                (Some(instances), delay)
            }
            Answer::Empty => {
                self.failures = 0;
                self.telemetry.lookup("empty");
                let first = !std::mem::replace(&mut self.empty, true);
                (self.on_empty_answer(first), self.timing.min_refresh)
            }
            Answer::Failed(error) => {
                self.failures += 1;
                self.telemetry.lookup("failed");
                let failures = self.failures;
                let delay = self.timing.after_failure(failures);
                tracing::warn!(
                    %name, %error, failures, ?delay,
                    "dns lookup failed; keeping the last known instances"
                );
                (None, delay)
            }
        }
    }

    fn on_empty_answer(&self, first: bool) -> Option<InstanceSet> {
        let name = self.query.name();
        match self.on_empty {
            EmptyAnswer::KeepLastKnown => {
                if first {
                    tracing::warn!(
                        %name,
                        "dns name has no records; keeping the last known instances"
                    );
                }
                None
            }
            EmptyAnswer::RemoveAll => {
                if first {
                    tracing::warn!(%name, "dns name has no records; removing every instance");
                }
                self.telemetry.instances(0);
                Some(InstanceSet::new())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMING: Timing = Timing {
        min_refresh: Duration::from_secs(2),
        max_refresh: Duration::from_secs(60),
    };

    #[test]
    fn answers_are_kept_for_their_ttl_within_bounds() {
        assert_eq!(TIMING.after_answer(Duration::ZERO), Duration::from_secs(2));
        assert_eq!(
            TIMING.after_answer(Duration::from_secs(30)),
            Duration::from_secs(30)
        );
        assert_eq!(
            TIMING.after_answer(Duration::from_secs(86400)),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn failures_back_off_up_to_the_maximum() {
        let delays: Vec<u64> = (1..=7).map(|n| TIMING.after_failure(n).as_secs()).collect();
        assert_eq!(delays, [2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(TIMING.after_failure(u32::MAX), Duration::from_secs(60));
    }
}
