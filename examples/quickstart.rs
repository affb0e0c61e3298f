//! Why tower-mesh exists, in one run: the same load against the same three flaky
//! backends, once through a bare client and once through a `ServiceProxy`.
//!
//! ```text
//! cargo run --release --example quickstart
//! cargo run --release --example quickstart -- --help
//! ```
//!
//! Three HTTP servers start on loopback: `a` is healthy, `b` answers `503` to a
//! share of requests, and `c` goes down part way through each run and comes back.
//! The load generator sends the same number of `GET`s, with the same number in
//! flight, first through hyper-util's client with round robin, then through a
//! proxy with retries (and a budget), a service-wide breaker, outlier detection
//! and active health checks. The report compares success rates, traffic shares and
//! latencies, and lists what the proxy's breakers and health checks did, and when.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower_mesh::balance::ActiveHealthCheck;
use tower_mesh::breaker::{CircuitState, SlidingWindow};
use tower_mesh::http::{HttpHealthCheck, HttpReplay, MakeHttpEndpoint, StatusClassifier};
use tower_mesh::prelude::*;
use tower_mesh::retry::ReplayRequest;
use tower_mesh::{HealthChange, HealthEvent};

type Body = Full<Bytes>;

// ===== options =====

const USAGE: &str = "\
tower-mesh quickstart: three local backends, the same load with and without tower-mesh

USAGE:
    cargo run --release --example quickstart -- [OPTIONS]

OPTIONS:
    --requests N        requests per run (default 20000)
    --concurrency N     requests in flight (default 64)
    --error-rate F      share of requests backend `b` answers with 503 (default 0.3)
    --outage-after F    share of a run after which backend `c` goes down (default 0.25)
    --outage-for F      share of a run that `c` stays down (default 0.35)
    --latency-ms N      time each backend takes to answer (default 2)
    -h, --help          print this help";

/// The load and the failure mix, from the command line.
#[derive(Debug, Clone, Copy)]
struct Options {
    requests: usize,
    concurrency: usize,
    error_rate: f64,
    outage_after: f64,
    outage_for: f64,
    latency: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            requests: 20_000,
            concurrency: 64,
            error_rate: 0.3,
            outage_after: 0.25,
            outage_for: 0.35,
            latency: Duration::from_millis(2),
        }
    }
}

/// What the command line asks for.
enum Command {
    Run(Options),
    Help,
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Command, String> {
    let mut options = Options::default();
    let mut args = args.peekable();
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(Command::Help);
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        set_option(&mut options, &flag, &value)?;
    }
    validate(&options)?;
    Ok(Command::Run(options))
}

fn set_option(options: &mut Options, flag: &str, value: &str) -> Result<(), String> {
    let bad = |error: &dyn std::fmt::Display| format!("{flag}: `{value}`: {error}");
    let int = |value: &str| value.parse::<u64>().map_err(|e| bad(&e));
    let float = |value: &str| value.parse::<f64>().map_err(|e| bad(&e));
    match flag {
        "--requests" => options.requests = int(value)? as usize,
        "--concurrency" => options.concurrency = int(value)? as usize,
        "--error-rate" => options.error_rate = float(value)?,
        "--outage-after" => options.outage_after = float(value)?,
        "--outage-for" => options.outage_for = float(value)?,
        "--latency-ms" => options.latency = Duration::from_millis(int(value)?),
        _ => return Err(format!("unknown option {flag}; see --help")),
    }
    Ok(())
}

fn validate(options: &Options) -> Result<(), String> {
    let share = |value: f64| (0.0..=1.0).contains(&value);
    if options.requests == 0 || options.concurrency == 0 {
        return Err("--requests and --concurrency must be at least 1".into());
    }
    if !share(options.error_rate) || !share(options.outage_after) || !share(options.outage_for) {
        return Err("--error-rate, --outage-after and --outage-for are shares in [0, 1]".into());
    }
    Ok(())
}

// ===== backends =====

/// How a backend misbehaves.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Behaviour {
    Healthy,
    Flaky { error_rate: f64 },
    Outage,
}

/// One local HTTP server and what it saw during the current run.
struct Backend {
    name: &'static str,
    address: SocketAddr,
    behaviour: Behaviour,
    latency: Duration,
    served: AtomicU64,
    up: watch::Sender<bool>,
}

impl Backend {
    /// Whether the `n`th request of the run gets a 503: a fixed, well-spread
    /// pattern, so both runs see the same failure mix.
    fn fails(&self, n: u64) -> bool {
        let Behaviour::Flaky { error_rate } = self.behaviour else {
            return false;
        };
        let spread = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
        (spread as f64 / (1u64 << 53) as f64) < error_rate
    }

    fn description(&self) -> String {
        match self.behaviour {
            Behaviour::Healthy => "healthy".into(),
            Behaviour::Flaky { error_rate } => format!("503 to {:.0} %", error_rate * 100.0),
            Behaviour::Outage => "goes down mid-run, comes back".into(),
        }
    }
}

/// Binds a listener that can be bound again on the same port after an outage.
fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(1_024)
}

async fn start_backend(
    name: &'static str,
    behaviour: Behaviour,
    latency: Duration,
) -> std::io::Result<Arc<Backend>> {
    let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let (up, _) = watch::channel(true);
    let backend = Arc::new(Backend {
        name,
        address: listener.local_addr()?,
        behaviour,
        latency,
        served: AtomicU64::new(0),
        up,
    });
    tokio::spawn(serve(listener, backend.clone()));
    Ok(backend)
}

/// Serves while the backend is up; while it is down, the port is closed and every
/// open connection dropped, as when a process dies.
async fn serve(mut listener: TcpListener, backend: Arc<Backend>) {
    let mut up = backend.up.subscribe();
    loop {
        accept_until_down(&listener, &backend, &mut up).await;
        drop(listener);
        while !*up.borrow_and_update() {
            if up.changed().await.is_err() {
                return;
            }
        }
        match bind(backend.address) {
            Ok(again) => listener = again,
            Err(error) => {
                eprintln!("backend {} could not come back: {error}", backend.name);
                return;
            }
        }
    }
}

async fn accept_until_down(
    listener: &TcpListener,
    backend: &Arc<Backend>,
    up: &mut watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                connections.spawn(serve_connection(stream, backend.clone()));
                while connections.try_join_next().is_some() {}
            }
            changed = up.changed() => {
                if changed.is_err() || !*up.borrow_and_update() {
                    connections.abort_all();
                    return;
                }
            }
        }
    }
}

async fn serve_connection(stream: tokio::net::TcpStream, backend: Arc<Backend>) {
    let service = hyper::service::service_fn(move |request| handle(backend.clone(), request));
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

async fn handle(
    backend: Arc<Backend>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    if request.uri().path() == "/healthz" {
        return Ok(respond(StatusCode::OK));
    }
    let n = backend.served.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(backend.latency).await;
    if backend.fails(n) {
        return Ok(respond(StatusCode::SERVICE_UNAVAILABLE));
    }
    Ok(respond(StatusCode::OK))
}

fn respond(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
    *response.status_mut() = status;
    response
}

// ===== the load =====

/// What one run measured.
struct Run {
    label: &'static str,
    started: Instant,
    succeeded: usize,
    failures: BTreeMap<&'static str, usize>,
    latencies: Vec<Duration>,
    elapsed: Duration,
    served: Vec<u64>,
    outage: Option<(Duration, Duration)>,
}

/// Progress shared between the load's workers and the driver.
struct Progress {
    next: AtomicUsize,
    done: AtomicUsize,
    finished: AtomicBool,
}

/// Sends `options.requests` requests with `send`, `options.concurrency` at a
/// time, while the driver takes backend `c` down and up and draws progress.
async fn run_load<F, Fut>(
    label: &'static str,
    options: Options,
    backends: &[Arc<Backend>],
    send: F,
) -> Run
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), Failure>> + Send + 'static,
{
    reset(backends);
    let progress = Arc::new(Progress {
        next: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        finished: AtomicBool::new(false),
    });
    let started = Instant::now();
    let driver = tokio::spawn(drive(label, options, backends.to_vec(), progress.clone()));

    let mut workers = JoinSet::new();
    for _ in 0..options.concurrency {
        workers.spawn(worker(options.requests, progress.clone(), send.clone()));
    }
    let tally = gather(&mut workers).await;
    let elapsed = started.elapsed();
    progress.finished.store(true, Ordering::Relaxed);
    let outage = driver.await.unwrap_or(None);

    let served = backends
        .iter()
        .map(|b| b.served.load(Ordering::Relaxed))
        .collect();
    Run {
        label,
        started,
        succeeded: tally.succeeded,
        failures: tally.failures,
        latencies: tally.latencies,
        elapsed,
        served,
        outage,
    }
}

fn reset(backends: &[Arc<Backend>]) {
    for backend in backends {
        backend.served.store(0, Ordering::Relaxed);
        backend.up.send_replace(true);
    }
}

/// Why a request failed, in a few words.
type Failure = &'static str;

/// The outcomes a worker saw.
#[derive(Default)]
struct Tally {
    succeeded: usize,
    failures: BTreeMap<Failure, usize>,
    latencies: Vec<Duration>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.succeeded += other.succeeded;
        for (why, count) in other.failures {
            *self.failures.entry(why).or_default() += count;
        }
        self.latencies.extend(other.latencies);
    }
}

/// One worker: takes request numbers until none are left.
async fn worker<F, Fut>(total: usize, progress: Arc<Progress>, send: F) -> Tally
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<(), Failure>>,
{
    let mut tally = Tally::default();
    loop {
        let n = progress.next.fetch_add(1, Ordering::Relaxed);
        if n >= total {
            return tally;
        }
        let started = Instant::now();
        match send(n).await {
            Ok(()) => tally.succeeded += 1,
            Err(why) => *tally.failures.entry(why).or_default() += 1,
        }
        tally.latencies.push(started.elapsed());
        progress.done.fetch_add(1, Ordering::Relaxed);
    }
}

async fn gather(workers: &mut JoinSet<Tally>) -> Tally {
    let mut all = Tally::default();
    while let Some(result) = workers.join_next().await {
        if let Ok(tally) = result {
            all.add(tally);
        }
    }
    all.latencies.sort_unstable();
    all
}

/// Takes `c` down and brings it back at the configured points of the run, and
/// redraws the progress bar; returns when the outage began and ended.
async fn drive(
    label: &'static str,
    options: Options,
    backends: Vec<Arc<Backend>>,
    progress: Arc<Progress>,
) -> Option<(Duration, Duration)> {
    let outage = backends.iter().find(|b| b.behaviour == Behaviour::Outage);
    let total = options.requests as f64;
    let down_at = (total * options.outage_after) as usize;
    let up_at = (total * (options.outage_after + options.outage_for)).min(total) as usize;
    let started = Instant::now();
    let (mut began, mut ended) = (None, None);
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    for round in 0u64.. {
        tick.tick().await;
        let done = progress.done.load(Ordering::Relaxed);
        if let Some(backend) = outage {
            if began.is_none() && done >= down_at && up_at > down_at {
                backend.up.send_replace(false);
                began = Some(started.elapsed());
            }
            if began.is_some() && ended.is_none() && done >= up_at {
                backend.up.send_replace(true);
                ended = Some(started.elapsed());
            }
        }
        if round % 20 == 0 || progress.finished.load(Ordering::Relaxed) {
            draw(label, done, options.requests);
        }
        if progress.finished.load(Ordering::Relaxed) {
            break;
        }
    }
    eprintln!();
    let elapsed = started.elapsed();
    began.map(|began| (began, ended.unwrap_or(elapsed)))
}

fn draw(label: &str, done: usize, total: usize) {
    const WIDTH: usize = 30;
    let filled = done * WIDTH / total.max(1);
    let bar = format!("{}{}", "#".repeat(filled), "-".repeat(WIDTH - filled));
    eprint!("\r  {label:<13} [{bar}] {done:>7}/{total}");
}

// ===== the two clients =====

/// A `GET /` for one backend, or for the proxy to route.
fn get(uri: &str) -> Request<Body> {
    let mut request = Request::new(Full::new(Bytes::new()));
    if let Ok(uri) = uri.parse() {
        *request.uri_mut() = uri;
    }
    request
}

/// Whether a response is a 200, reading its body so the connection is reused.
async fn check(response: Response<Incoming>) -> Result<(), Failure> {
    let status = response.status();
    let body = response.into_body().collect().await;
    match (status, body) {
        (StatusCode::OK, Ok(_)) => Ok(()),
        (StatusCode::SERVICE_UNAVAILABLE, _) => Err("503 from the backend"),
        (_, Err(_)) => Err("body cut off"),
        _ => Err("other status"),
    }
}

/// Names what went wrong with a call that ended in an error.
fn failure(error: &BoxError) -> Failure {
    if error
        .downcast_ref::<tower::timeout::error::Elapsed>()
        .is_some()
    {
        "timed out"
    } else if error.downcast_ref::<CircuitOpenError>().is_some() {
        "rejected by the open breaker"
    } else if error.downcast_ref::<NoHealthyInstanceError>().is_some() {
        "no healthy instance"
    } else {
        "connection error"
    }
}

async fn run_bare(options: Options, backends: &[Arc<Backend>]) -> Run {
    let client: Client<HttpConnector, Body> = Client::builder(TokioExecutor::new()).build_http();
    let uris: Arc<Vec<String>> = Arc::new(
        backends
            .iter()
            .map(|b| format!("http://{}/", b.address))
            .collect(),
    );
    run_load("bare client", options, backends, move |n| {
        let client = client.clone();
        let uri = uris[n % uris.len()].clone();
        async move {
            match client.request(get(&uri)).await {
                Ok(response) => check(response).await,
                Err(error) => Err(failure(&error.into())),
            }
        }
    })
    .await
}

/// Service-wide breaker events: when, from, to.
type BreakerLog = Arc<Mutex<Vec<(Instant, CircuitState, CircuitState)>>>;

fn build_proxy(
    backends: &[Arc<Backend>],
) -> Result<ServiceProxy<Request<Body>, Response<Incoming>>, BoxError> {
    let registry = ServiceRegistry::new(LoadBalancerStrategy::RoundRobin);
    for backend in backends {
        let port = backend.address.port();
        registry.register(ServiceInstance::new(backend.name, "127.0.0.1", port))?;
    }
    let proxy = ServiceProxy::builder("quickstart")
        .timeout(Duration::from_secs(2))
        .attempt_timeout(Duration::from_millis(500))
        .classifier(StatusClassifier::gateway_errors())
        .retry(retry_policy()?)
        .circuit_breaker(service_breaker()?)
        .outlier_detection(outlier_breaker()?)
        .active_health_check(HttpHealthCheck::new("/healthz"), health_checks()?)
        .build(registry.discover(MakeHttpEndpoint::<Body>::new()))?;
    Ok(proxy)
}

/// Up to two retries of idempotent requests, soon after the failure, within a
/// budget of 20 % extra load.
fn retry_policy() -> Result<
    RetryPolicy<
        ErrorsAsFailures,
        tower_mesh::retry::AnyFailure,
        impl ReplayRequest<Request<Body>> + Clone + Send + Sync + 'static,
    >,
    ConfigError,
> {
    let budget = RetryBudget::builder()
        .ratio(0.2)
        .min_per_second(20)
        .build()?;
    let replay = HttpReplay::idempotent();
    let policy = RetryPolicy::builder()
        .name("quickstart")
        .max_retries(2)
        .backoff(Backoff::exponential(Duration::from_millis(2), 2.0))
        .max_delay(Duration::from_millis(50))
        .budget(budget)
        .build()?;
    Ok(policy.replay_with(move |request: &Request<Body>| replay.replay(request)))
}

/// Opens when most attempts across every instance fail.
fn service_breaker() -> Result<CircuitBreakerConfig, ConfigError> {
    CircuitBreakerConfig::builder()
        .sliding_window(SlidingWindow::count(200))
        .failure_rate_threshold(50.0)
        .minimum_calls(50)
        .open_duration(Duration::from_secs(1))
        .build()
}

/// Ejects an instance after 7 failures in a row, for 250 ms at first.
fn outlier_breaker() -> Result<CircuitBreakerConfig, ConfigError> {
    CircuitBreakerConfig::builder()
        .failure_threshold(7)
        .open_duration(Duration::from_millis(250))
        .open_duration_growth(2.0, Duration::from_secs(2))
        .build()
}

fn health_checks() -> Result<ActiveHealthCheck, ConfigError> {
    ActiveHealthCheck::builder()
        .interval(Duration::from_millis(100))
        .timeout(Duration::from_millis(100))
        .unhealthy_threshold(2)
        .healthy_threshold(2)
        .build()
}

async fn run_proxy(
    options: Options,
    backends: &[Arc<Backend>],
) -> Result<
    (
        Run,
        ServiceProxy<Request<Body>, Response<Incoming>>,
        BreakerLog,
    ),
    BoxError,
> {
    let proxy = build_proxy(backends)?;
    let log: BreakerLog = Arc::default();
    let listener_log = log.clone();
    if let Some(breaker) = proxy.breaker() {
        breaker.on_state_change(move |change| {
            if let Ok(mut log) = listener_log.lock() {
                log.push((change.at, change.from, change.to));
            }
        });
    }
    let caller = proxy.clone();
    let run = run_load("tower-mesh", options, backends, move |_| {
        let call = caller.call(get("/"));
        async move {
            match call.await {
                Ok(response) => check(response).await,
                Err(error) => Err(failure(&error)),
            }
        }
    })
    .await;
    Ok((run, proxy, log))
}

// ===== the report =====

fn percent(part: f64, whole: f64) -> f64 {
    if whole == 0.0 {
        0.0
    } else {
        100.0 * part / whole
    }
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index]
}

fn millis(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1_000.0)
}

fn comparison(options: &Options, bare: &Run, mesh: &Run) -> String {
    let total = options.requests as f64;
    let mut out = String::new();
    let row = |out: &mut String, name: &str, a: String, b: String| {
        let _ = writeln!(out, "  {name:<32}{a:>16}{b:>16}");
    };
    row(&mut out, "", bare.label.into(), mesh.label.into());
    let rate = |run: &Run| format!("{:.2} %", percent(run.succeeded as f64, total));
    row(&mut out, "success rate", rate(bare), rate(mesh));
    let failed = |run: &Run| (options.requests - run.succeeded).to_string();
    row(&mut out, "failed requests", failed(bare), failed(mesh));
    let reasons: std::collections::BTreeSet<_> =
        bare.failures.keys().chain(mesh.failures.keys()).collect();
    for why in reasons {
        let count = |run: &Run| run.failures.get(why).copied().unwrap_or(0).to_string();
        row(&mut out, &format!("  {why}"), count(bare), count(mesh));
    }
    let p = |run: &Run, q| millis(quantile(&run.latencies, q));
    row(&mut out, "p50 latency", p(bare, 0.5), p(mesh, 0.5));
    row(&mut out, "p99 latency", p(bare, 0.99), p(mesh, 0.99));
    let secs = |run: &Run| format!("{:.2} s", run.elapsed.as_secs_f64());
    row(&mut out, "duration", secs(bare), secs(mesh));
    out
}

fn traffic(backends: &[Arc<Backend>], bare: &Run, mesh: &Run) -> String {
    let mut out =
        String::from("\ntraffic share (requests each backend handled, retries included)\n");
    let share = |run: &Run, index: usize| {
        let all: u64 = run.served.iter().sum();
        let served = run.served[index];
        format!("{served} ({:.1} %)", percent(served as f64, all as f64))
    };
    for (index, backend) in backends.iter().enumerate() {
        let (a, b) = (share(bare, index), share(mesh, index));
        let _ = writeln!(out, "  {:<32}{a:>16}{b:>16}", backend.name);
    }
    out
}

fn describe(change: &HealthChange) -> String {
    match change {
        HealthChange::Breaker { from, to } => format!("instance breaker {from} -> {to}"),
        HealthChange::Ejected => "ejected by outlier detection".into(),
        HealthChange::EjectionEnded => "ejection ended, probing".into(),
        HealthChange::FailingChecks => "failing health checks: out of rotation".into(),
        HealthChange::PassingChecks => "passing health checks: back in rotation".into(),
        other => format!("{other:?}"),
    }
}

fn events(mesh: &Run, health: &[HealthEvent], breaker: &BreakerLog) -> String {
    let started = mesh.started;
    let mut lines: Vec<(Duration, String)> = Vec::new();
    if let Some((began, ended)) = mesh.outage {
        lines.push((began, "c            outage begins (port closed)".into()));
        lines.push((ended, "c            comes back".into()));
    }
    for event in health.iter().filter(|e| e.change != HealthChange::Added) {
        let at = event.at.saturating_duration_since(started);
        lines.push((
            at,
            format!("{:<12} {}", event.endpoint, describe(&event.change)),
        ));
    }
    if let Ok(log) = breaker.lock() {
        for (at, from, to) in log.iter() {
            let at = at.saturating_duration_since(started);
            lines.push((
                at,
                format!("{:<12} service-wide breaker {from} -> {to}", "(all)"),
            ));
        }
    }
    lines.sort_by_key(|(at, _)| *at);
    let mut out = String::from("\nwhat the proxy saw (seconds into its run)\n");
    for (at, line) in lines {
        let _ = writeln!(out, "  {:>7.3}  {line}", at.as_secs_f64());
    }
    if breaker.lock().is_ok_and(|log| log.is_empty()) {
        out += "  the service-wide breaker stayed closed: no outage hit every instance\n";
    }
    out
}

fn retries(options: &Options, proxy: &ServiceProxy<Request<Body>, Response<Incoming>>) -> String {
    let stats = proxy.stats();
    let mut out = format!(
        "\nretries: {} for {} requests ({:.1} % extra load)",
        stats.retries,
        stats.requests,
        percent(stats.retries as f64, options.requests as f64)
    );
    if let Some(budget) = proxy.retry_budget() {
        let _ = write!(
            out,
            "; the budget allows {:.0} % + {}/s over {:?}, {} left at the end",
            budget.ratio() * 100.0,
            budget.min_per_second(),
            budget.window(),
            budget.remaining()
        );
    }
    out.push('\n');
    out
}

fn header(options: &Options, backends: &[Arc<Backend>]) -> String {
    let mut out = format!(
        "tower-mesh quickstart: {} requests per run, {} in flight, {} ms per answer\n",
        options.requests,
        options.concurrency,
        options.latency.as_millis()
    );
    for backend in backends {
        let _ = writeln!(
            out,
            "  {}  {}  {}",
            backend.name,
            backend.address,
            backend.description()
        );
    }
    let _ = writeln!(
        out,
        "  c is down from {:.0} % to {:.0} % of each run\n",
        options.outage_after * 100.0,
        ((options.outage_after + options.outage_for) * 100.0).min(100.0)
    );
    out
}

// ===== main =====

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Run(options)) => options,
        Ok(Command::Help) => {
            println!("{USAGE}");
            return Ok(());
        }
        Err(message) => {
            eprintln!("error: {message}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let latency = options.latency;
    let flaky = Behaviour::Flaky {
        error_rate: options.error_rate,
    };
    let backends = vec![
        start_backend("a", Behaviour::Healthy, latency).await?,
        start_backend("b", flaky, latency).await?,
        start_backend("c", Behaviour::Outage, latency).await?,
    ];
    print!("{}", header(&options, &backends));

    let bare = run_bare(options, &backends).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (mesh, proxy, breaker_log) = run_proxy(options, &backends).await?;

    let health = proxy.health().map(|h| h.events()).unwrap_or_default();
    let mut report = String::from("\n");
    report += &comparison(&options, &bare, &mesh);
    report += &traffic(&backends, &bare, &mesh);
    report += &events(&mesh, &health, &breaker_log);
    report += &retries(&options, &proxy);
    print!("{report}");
    Ok(())
}
