//! Chaos: real hyper backends on loopback, faults injected in front of them and
//! backends stopped and restarted on a schedule, while 32 callers send requests
//! through one [`ServiceProxy`].
//!
//! The run proves that no call outlives the proxy's overall timeout, that every
//! call ends in a response or in one of the documented error types, that at least
//! 99.9 % of calls succeed while one backend stays healthy, that the breaker of a
//! stopped backend opens within [`OPEN_WITHIN`] and closes within
//! [`CLOSE_WITHIN`] of its restart, and that nothing panics.
//!
//! Time is real. The default run lasts about 6 s; a soak of the same schedule is
//! one variable away:
//!
//! ```text
//! TOWER_MESH_SOAK_SECS=600 cargo test -p tower-mesh-tests --test chaos -- --nocapture
//! ```
//!
//! Every run prints its figures (requests, faults, restarts, the longest call).

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use support::Backend;
use tokio::time::Instant;
use tower::{service_fn, Layer, ServiceExt};
use tower_mesh::fault::HttpFaultLayer;
use tower_mesh::fault::{AbortKind, DelayKind, FaultConfig, FaultHandle, FaultInjectedError};
use tower_mesh::http::{http_client, HttpClient, HttpEndpoint, HttpReplay, StatusClassifier};
use tower_mesh::prelude::*;
use tower_mesh::retry::{AnyFailure, ReplayRequest, ReplayWith};
use tower_mesh::{HealthChange, HealthEvent};

/// Backends behind the proxy; the first is never faulted nor stopped.
const BACKENDS: usize = 4;
/// Concurrent callers.
const CALLERS: usize = 32;
/// The proxy's overall timeout: no call may last longer (plus [`MARGIN`]).
const TIMEOUT: Duration = Duration::from_secs(1);
/// One attempt's timeout, below the longest injected delay.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(250);
/// What a loaded 2-core machine may add to a timer before the call returns.
const MARGIN: Duration = Duration::from_millis(250);
/// A stopped backend's breaker opens within this.
const OPEN_WITHIN: Duration = Duration::from_millis(500);
/// A restarted backend's breaker closes within this of the restart.
const CLOSE_WITHIN: Duration = Duration::from_millis(1_000);
/// How long a backend stays stopped in each episode.
const STOPPED_FOR: Duration = Duration::from_millis(600);
/// How long the faults last after the restart, then how long all is quiet.
const FAULTS_AFTER_RESTART: Duration = Duration::from_millis(300);
const QUIET_FOR: Duration = Duration::from_millis(700);
/// The default length of a run, and the variable that changes it.
const DEFAULT_SECS: u64 = 6;
const SOAK_VARIABLE: &str = "TOWER_MESH_SOAK_SECS";

type Body = Full<Bytes>;

/// How one call ended.
#[derive(Debug, Default)]
struct Tally {
    calls: u64,
    ok: u64,
    failed_status: u64,
    circuit_open: u64,
    no_instance: u64,
    injected: u64,
    elapsed: u64,
    transport: u64,
    untyped: Vec<String>,
    late: Vec<Duration>,
    longest: Duration,
}

impl Tally {
    fn record(&mut self, result: Result<Response<Body>, BoxError>, took: Duration) {
        self.calls += 1;
        self.longest = self.longest.max(took);
        if took > TIMEOUT + MARGIN {
            self.late.push(took);
        }
        match result {
            Ok(response) if response.status() == StatusCode::OK => self.ok += 1,
            Ok(_) => self.failed_status += 1,
            Err(error) => self.record_error(&error),
        }
    }

    /// Counts `error` under its documented type, or keeps it as untyped.
    fn record_error(&mut self, error: &BoxError) {
        let counter = if error.is::<CircuitOpenError>() {
            &mut self.circuit_open
        } else if error.is::<NoHealthyInstanceError>() {
            &mut self.no_instance
        } else if error.is::<FaultInjectedError>() {
            &mut self.injected
        } else if error.is::<tower::timeout::error::Elapsed>() {
            &mut self.elapsed
        } else if error.is::<hyper_util::client::legacy::Error>() || error.is::<hyper::Error>() {
            &mut self.transport
        } else {
            self.untyped.push(format!("{error:?}"));
            return;
        };
        *counter += 1;
    }

    fn merge(&mut self, other: Tally) {
        self.calls += other.calls;
        self.ok += other.ok;
        self.failed_status += other.failed_status;
        self.circuit_open += other.circuit_open;
        self.no_instance += other.no_instance;
        self.injected += other.injected;
        self.elapsed += other.elapsed;
        self.transport += other.transport;
        self.untyped.extend(other.untyped);
        self.late.extend(other.late);
        self.longest = self.longest.max(other.longest);
    }

    fn errors(&self) -> u64 {
        self.circuit_open + self.no_instance + self.injected + self.elapsed + self.transport
    }
}

/// The backends, the faults in front of each, and the proxy over them.
struct Mesh {
    backends: Vec<Arc<Backend>>,
    faults: Vec<FaultHandle>,
    proxy: ServiceProxy<Request<Body>, Response<Body>>,
    service_breaker: Arc<Mutex<Vec<CircuitState>>>,
}

fn id(index: usize) -> String {
    format!("backend-{index}")
}

async fn mesh() -> Mesh {
    let mut backends = Vec::new();
    let registry = ServiceRegistry::new(LoadBalancerStrategy::RoundRobin);
    for index in 0..BACKENDS {
        let backend = Backend::start().await;
        registry.register(backend.instance(&id(index))).unwrap();
        backends.push(backend);
    }
    let faults: Vec<FaultHandle> = (0..BACKENDS)
        .map(|index| FaultHandle::with_seed(FaultConfig::none(), 1 + index as u64))
        .collect();
    let (breaker, service_breaker) = service_breaker();
    let proxy = ServiceProxy::builder("chaos")
        .timeout(TIMEOUT)
        .attempt_timeout(ATTEMPT_TIMEOUT)
        .classifier(StatusClassifier::gateway_errors())
        .retry(retry_policy())
        .shared_circuit_breaker(breaker)
        .outlier_detection(outlier_detection())
        .seed(7)
        .build(registry.discover(endpoints(http_client(), faults.clone())))
        .unwrap();
    Mesh {
        backends,
        faults,
        proxy,
        service_breaker,
    }
}

/// Makes each instance's endpoint: hyper-util's client, the whole body read
/// within the attempt, behind the instance's own faults.
fn endpoints(
    client: HttpClient<Body>,
    faults: Vec<FaultHandle>,
) -> impl Fn(&ServiceInstance) -> tower_mesh::fault::Fault<Collect, tower_mesh::fault::AbortWithStatus>
       + Send
       + Unpin
       + 'static {
    move |instance: &ServiceInstance| {
        let index: usize = instance.id.trim_start_matches("backend-").parse().unwrap();
        let endpoint = HttpEndpoint::new(client.clone(), &instance.address());
        HttpFaultLayer::new(faults[index].clone()).layer(collect(endpoint))
    }
}

type Collect = tower::util::BoxCloneSyncService<Request<Body>, Response<Body>, BoxError>;

/// Reads the whole response body, so a connection cut mid-answer fails the attempt.
fn collect(endpoint: HttpEndpoint<Body>) -> Collect {
    let service = service_fn(move |request: Request<Body>| {
        let endpoint = endpoint.clone();
        async move {
            let response = endpoint.oneshot(request).await?;
            let (parts, body) = response.into_parts();
            let bytes = body.collect().await?.to_bytes();
            Ok::<_, BoxError>(Response::from_parts(parts, Full::new(bytes)))
        }
    });
    tower::util::BoxCloneSyncService::new(service)
}

/// Copies a request for a retry when its method is idempotent.
type Replay = fn(&Request<Body>) -> Option<Request<Body>>;

fn replay_idempotent(request: &Request<Body>) -> Option<Request<Body>> {
    HttpReplay::idempotent().replay(request)
}

fn retry_policy() -> RetryPolicy<ErrorsAsFailures, AnyFailure, ReplayWith<Replay>> {
    let budget = RetryBudget::builder()
        .ratio(0.5)
        .min_per_second(200)
        .build()
        .unwrap();
    RetryPolicy::builder()
        .max_retries(3)
        .backoff(Backoff::constant(Duration::from_millis(2)))
        .budget(budget)
        .build()
        .unwrap()
        .replay_with(replay_idempotent as Replay)
}

/// Ejects an instance after 3 failures in a row, for 100 ms at a time.
fn outlier_detection() -> CircuitBreakerConfig {
    CircuitBreakerConfig::builder()
        .failure_threshold(3)
        .open_duration(Duration::from_millis(100))
        .success_threshold(2)
        .build()
        .unwrap()
}

/// The service-wide breaker, and every state it entered.
fn service_breaker() -> (CircuitBreaker, Arc<Mutex<Vec<CircuitState>>>) {
    let config = CircuitBreakerConfig::builder()
        .sliding_window(SlidingWindow::count(100))
        .failure_rate_threshold(50.0)
        .minimum_calls(20)
        .build()
        .unwrap();
    let breaker = CircuitBreaker::new("chaos", config);
    let entered = Arc::new(Mutex::new(Vec::new()));
    let seen = entered.clone();
    breaker.on_state_change(move |change| seen.lock().unwrap().push(change.to));
    (breaker, entered)
}

fn request() -> Request<Body> {
    Request::get("http://chaos/item")
        .body(Full::default())
        .unwrap()
}

/// Calls the proxy until `stop` is set, timing each call.
async fn caller(
    proxy: ServiceProxy<Request<Body>, Response<Body>>,
    stop: Arc<AtomicBool>,
) -> Tally {
    let mut tally = Tally::default();
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let result = proxy.call(request()).await;
        tally.record(result, started.elapsed());
    }
    tally
}

/// The faults of one episode: 503s and long-tailed delays on one backend,
/// injected errors on another.
fn episode_faults(mesh: &Mesh, delayed: usize, erring: usize) {
    let slow = FaultConfig::builder()
        .abort(10.0, AbortKind::Status(503))
        .delay(
            20.0,
            DelayKind::Exponential {
                mean: Duration::from_millis(30),
                max: Duration::from_millis(400),
            },
        )
        .build()
        .unwrap();
    let erring_config = FaultConfig::builder()
        .abort(5.0, AbortKind::Error)
        .build()
        .unwrap();
    mesh.faults[delayed].set(slow);
    mesh.faults[erring].set(erring_config);
}

/// What the schedule did and saw.
#[derive(Debug, Default)]
struct Schedule {
    episodes: u64,
    restarts: u64,
    failures: Vec<String>,
}

fn breaker_event(
    events: &[HealthEvent],
    endpoint: &str,
    after: Instant,
    within: Duration,
    open: bool,
) -> bool {
    events.iter().any(|event| {
        let in_window = event.at >= after && event.at <= after + within;
        let matches = match event.change {
            HealthChange::Ejected => open,
            HealthChange::Breaker { to, .. } if open => to == CircuitState::Open,
            HealthChange::Breaker { to, .. } => to == CircuitState::Closed,
            _ => false,
        };
        event.endpoint == endpoint && in_window && matches
    })
}

/// One episode: faults on two backends, a third stopped and restarted, then
/// quiet; checks that the stopped backend's breaker opened and closed in time.
async fn episode(mesh: &Mesh, number: usize, schedule: &mut Schedule) {
    let victim = 1 + number % (BACKENDS - 1);
    let delayed = 1 + (number + 1) % (BACKENDS - 1);
    let erring = 1 + (number + 2) % (BACKENDS - 1);
    episode_faults(mesh, delayed, erring);
    let backend = &mesh.backends[victim];
    let stopped = Instant::now();
    backend.stop().await;
    tokio::time::sleep(STOPPED_FOR).await;
    backend.restart().await;
    let restarted = Instant::now();
    let answered = backend.answered();
    schedule.restarts += 1;
    tokio::time::sleep(FAULTS_AFTER_RESTART).await;
    mesh.faults.iter().for_each(FaultHandle::disable);
    tokio::time::sleep(QUIET_FOR).await;
    check_episode(mesh, victim, stopped, restarted, schedule);
    if backend.answered() == answered {
        schedule
            .failures
            .push(format!("{} got no traffic after its restart", id(victim)));
    }
    schedule.episodes += 1;
}

fn check_episode(
    mesh: &Mesh,
    victim: usize,
    stopped: Instant,
    restarted: Instant,
    schedule: &mut Schedule,
) {
    let events = mesh.proxy.health().unwrap().events();
    let name = id(victim);
    if !breaker_event(&events, &name, stopped, OPEN_WITHIN, true) {
        schedule.failures.push(format!(
            "{name}'s breaker did not open within {OPEN_WITHIN:?}"
        ));
    }
    if !breaker_event(&events, &name, restarted, CLOSE_WITHIN, false) {
        schedule.failures.push(format!(
            "{name}'s breaker did not close within {CLOSE_WITHIN:?}"
        ));
    }
}

fn run_length() -> Duration {
    let secs = std::env::var(SOAK_VARIABLE)
        .ok()
        .map(|value| {
            value
                .parse()
                .expect("TOWER_MESH_SOAK_SECS is a number of seconds")
        })
        .unwrap_or(DEFAULT_SECS);
    Duration::from_secs(secs)
}

async fn run_schedule(mesh: &Mesh, length: Duration) -> Schedule {
    let episode_length = STOPPED_FOR + FAULTS_AFTER_RESTART + QUIET_FOR;
    let started = Instant::now();
    let mut schedule = Schedule::default();
    // A quiet start, so every connection is made before the first fault.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut number = 0;
    while number == 0 || started.elapsed() + episode_length <= length {
        episode(mesh, number, &mut schedule).await;
        number += 1;
    }
    schedule
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_end_in_time_typed_and_mostly_ok_while_backends_fail_and_restart() {
    let mesh = mesh().await;
    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| tokio::spawn(caller(mesh.proxy.clone(), stop.clone())))
        .collect();
    let length = run_length();
    let schedule = run_schedule(&mesh, length).await;
    stop.store(true, Ordering::Relaxed);

    let mut tally = Tally::default();
    for caller in callers {
        let finished = tokio::time::timeout(TIMEOUT + MARGIN, caller).await;
        tally.merge(
            finished
                .expect("every caller ends")
                .expect("no caller panics"),
        );
    }
    report(&mesh, &schedule, &tally);

    assert!(
        schedule.failures.is_empty(),
        "breakers: {:#?}",
        schedule.failures
    );
    assert!(
        tally.late.is_empty(),
        "calls outlived {TIMEOUT:?}: {:?}",
        tally.late
    );
    assert!(
        tally.untyped.is_empty(),
        "untyped errors: {:#?}",
        tally.untyped
    );
    assert_eq!(tally.calls, tally.ok + tally.failed_status + tally.errors());
    let success = tally.ok as f64 / tally.calls as f64;
    assert!(
        success >= 0.999,
        "only {:.4} % succeeded: {tally:?}",
        success * 100.0
    );
    let injected: u64 = mesh
        .faults
        .iter()
        .map(|f| f.stats().aborted + f.stats().delayed)
        .sum();
    assert!(
        injected > 0 && schedule.restarts > 0,
        "the run injected faults"
    );
    let entered = mesh.service_breaker.lock().unwrap().clone();
    assert!(
        !entered.contains(&CircuitState::Open),
        "the service-wide breaker opened: {entered:?}"
    );
}

fn report(mesh: &Mesh, schedule: &Schedule, tally: &Tally) {
    let aborted: u64 = mesh.faults.iter().map(|f| f.stats().aborted).sum();
    let delayed: u64 = mesh.faults.iter().map(|f| f.stats().delayed).sum();
    let answered: Vec<u64> = mesh.backends.iter().map(|b| b.answered()).collect();
    let stats = mesh.proxy.stats();
    println!(
        "chaos: {} calls, {} ok ({:.3} %), {} failed statuses, {} errors {tally:?}",
        tally.calls,
        tally.ok,
        tally.ok as f64 * 100.0 / tally.calls.max(1) as f64,
        tally.failed_status,
        tally.errors(),
    );
    println!(
        "chaos: {} episodes, {} restarts, {aborted} aborts and {delayed} delays injected, \
         backends answered {answered:?}, proxy {stats:?}",
        schedule.episodes, schedule.restarts,
    );
    println!(
        "chaos: longest call {:?} (deadline {TIMEOUT:?} + {MARGIN:?})",
        tally.longest
    );
}
