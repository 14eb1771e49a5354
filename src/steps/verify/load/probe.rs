//! The open-model sender: request i is due at start + i/rate whatever the answers take, and its
//! latency runs from that due time, so a stall counts for every request that should have gone
//! out during it (no coordinated omission, as in wrk2). Requests share a pool of HTTP/1.1
//! connections (hyper) capped at `connections`; a request that finds every connection busy
//! waits for one, and the wait is part of its latency.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use super::Endpoint;

/// The shortest sleep of the probe's clock: a request goes out at most this much after it
/// was due (plus the kernel's timer slack), and that counts in its latency.
const TICK: Duration = Duration::from_micros(200);

/// How long one request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

type Connection = SendRequest<Full<Bytes>>;

/// One endpoint, ready to send.
struct Target {
    /// Resolved once: a lookup per connection would go through tokio's blocking pool and
    /// add its delay to the latencies.
    address: SocketAddr,
    request: http::request::Parts,
    body: Bytes,
    expect: Vec<u16>,
}

impl Target {
    async fn new(endpoint: &Endpoint) -> Result<Self, String> {
        let request = &endpoint.request;
        let url = reqwest::Url::parse(&request.url).map_err(|e| e.to_string())?;
        if url.scheme() != "http" {
            return Err(format!(
                "the load probe speaks plain HTTP, not `{}`: probe the service where it listens without TLS",
                url.scheme()
            ));
        }
        let host = url.host_str().ok_or("the probe URL has no host")?;
        let port = url.port_or_known_default().unwrap_or(80);
        let mut builder = http::Request::builder()
            .method(request.method.clone())
            .uri(&url[url::Position::BeforePath..])
            .header(http::header::HOST, format!("{host}:{port}"))
            .header(http::header::USER_AGENT, crate::AGENT);
        for (k, v) in &request.headers {
            builder = builder.header(k, v);
        }
        let address = tokio::net::lookup_host((host, port))
            .await
            .ok()
            .and_then(|mut found| found.next())
            .ok_or(format!("cannot resolve `{host}`"))?;
        let (parts, ()) = builder
            .body(())
            .map_err(|e| format!("cannot build the probe's request: {e}"))?
            .into_parts();
        Ok(Target {
            address,
            request: parts,
            body: Bytes::from(request.body.clone().unwrap_or_default()),
            expect: endpoint.expect.clone(),
        })
    }
}

/// Open connections, idle ones kept per address, at most `slots` in use at once.
struct Pool {
    idle: Mutex<HashMap<SocketAddr, Vec<Connection>>>,
    slots: Semaphore,
}

impl Pool {
    fn take(&self, address: SocketAddr) -> Option<Connection> {
        let mut idle = self.idle.lock().expect("the pool lock is never poisoned");
        let list = idle.get_mut(&address)?;
        while let Some(c) = list.pop() {
            if !c.is_closed() {
                return Some(c);
            }
        }
        None
    }

    fn give_back(&self, address: SocketAddr, connection: Connection) {
        if !connection.is_closed() {
            let mut idle = self.idle.lock().expect("the pool lock is never poisoned");
            idle.entry(address).or_default().push(connection);
        }
    }
}

async fn connect(address: SocketAddr) -> Result<Connection, String> {
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| format!("connect: {}", e.kind()))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (sender, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(driver);
    Ok(sender)
}

/// What became of one request.
struct Outcome {
    endpoint: usize,
    /// From its due time to its answer (or failure).
    latency: Duration,
    /// When it went out (a connection was free): how far the probe kept to its schedule.
    sent: Instant,
    failure: Option<String>,
}

/// Sends one request due at `due`, waiting for a connection if all are busy.
async fn send(pool: Arc<Pool>, target: Arc<Target>, endpoint: usize, due: Instant) -> Outcome {
    let _slot = pool
        .slots
        .acquire()
        .await
        .expect("the pool is never closed");
    let sent = Instant::now();
    let failure = tokio::time::timeout(REQUEST_TIMEOUT, exchange(&pool, &target))
        .await
        .unwrap_or_else(|_| Err("timeout".to_string()))
        .err();
    Outcome {
        endpoint,
        latency: due.elapsed(),
        sent,
        failure,
    }
}

/// One request and its whole answer on a pooled (or new) connection; Err says why it failed.
async fn exchange(pool: &Pool, target: &Target) -> Result<(), String> {
    let reused = match pool.take(target.address) {
        Some(mut c) => c.ready().await.ok().map(|()| c),
        None => None,
    };
    let mut connection = match reused {
        Some(c) => c,
        None => connect(target.address).await?,
    };
    let request = http::Request::from_parts(target.request.clone(), Full::new(target.body.clone()));
    let response = connection
        .send_request(request)
        .await
        .map_err(|e| format!("transport: {e}"))?;
    let status = response.status().as_u16();
    response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?;
    pool.give_back(target.address, connection);
    if target.expect.contains(&status) {
        Ok(())
    } else {
        Err(format!("status {status}"))
    }
}

/// What the probe measured, overall and per endpoint (journaled, and compared by later steps).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Measured {
    pub(crate) target_rps: f64,
    /// Requests sent per second, as the schedule was kept (below the target: the probe lagged).
    pub(crate) achieved_rps: f64,
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) seconds: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p95_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
    pub(crate) endpoints: Vec<EndpointFigures>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct EndpointFigures {
    pub(crate) endpoint: String,
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) p95_ms: f64,
    /// Why requests failed, with how many each.
    pub(crate) failures: BTreeMap<String, u64>,
}

impl Measured {
    pub(crate) fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            1.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid bounds")
}

fn ms(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    histogram.value_at_quantile(quantile) as f64 / 1000.0
}

/// The endpoints of one probe, its rate and how many requests it sends.
pub(crate) struct Schedule<'a> {
    pub(crate) endpoints: &'a [Endpoint],
    pub(crate) rate: f64,
    pub(crate) requests: u64,
    pub(crate) connections: u32,
}

/// Runs the schedule to its end and measures it.
pub(crate) async fn run(schedule: &Schedule<'_>) -> Result<Measured, String> {
    let mut targets = Vec::new();
    for endpoint in schedule.endpoints {
        targets.push(Arc::new(Target::new(endpoint).await?));
    }
    // Each endpoint's share of the schedule, by weight, interleaved in a fixed order.
    let order: Vec<usize> = schedule
        .endpoints
        .iter()
        .enumerate()
        .flat_map(|(i, e)| std::iter::repeat_n(i, e.weight as usize))
        .collect();
    let pool = Arc::new(Pool {
        idle: Mutex::new(HashMap::new()),
        slots: Semaphore::new(schedule.connections as usize),
    });
    let (rate, requests) = (schedule.rate, schedule.requests);
    let (ticks, mut due_now) = tokio::sync::mpsc::unbounded_channel();
    let started = Instant::now();
    // A thread of its own keeps the schedule: tokio's timer ticks every millisecond, which
    // would add up to 1 ms to every latency; a sleeping thread wakes within microseconds.
    // It wakes at most every TICK and hands over every request due by then at once, since a
    // wake-up of the runtime per request costs more than the requests at high rates.
    let clock = tokio::task::spawn_blocking(move || {
        let due = |i: u64| started + Duration::from_secs_f64(i as f64 / rate);
        let mut next = 0;
        while next < requests {
            let now = Instant::now();
            let batch: Vec<(u64, Instant)> = (next..requests)
                .map(|i| (i, due(i)))
                .take_while(|(_, d)| *d <= now)
                .collect();
            next += batch.len() as u64;
            if !batch.is_empty() && ticks.send(batch).is_err() {
                return; // the step was cancelled (its timeout)
            }
            if next < requests {
                std::thread::sleep(due(next).saturating_duration_since(now).max(TICK));
            }
        }
    });
    let mut tally = Tally::new(schedule.endpoints);
    let mut tasks = tokio::task::JoinSet::new();
    while let Some(batch) = due_now.recv().await {
        for (i, due) in batch {
            let endpoint = order[i as usize % order.len()];
            tasks.spawn(send(pool.clone(), targets[endpoint].clone(), endpoint, due));
        }
        while let Some(done) = tasks.try_join_next() {
            tally.add(done.map_err(|e| format!("a probe request failed: {e}"))?);
        }
    }
    while let Some(done) = tasks.join_next().await {
        tally.add(done.map_err(|e| format!("a probe request failed: {e}"))?);
    }
    clock
        .await
        .map_err(|e| format!("the probe's clock failed: {e}"))?;
    Ok(tally.measured(schedule, started))
}

/// Latencies and failures as the outcomes come in.
struct Tally {
    names: Vec<String>,
    histograms: Vec<Histogram<u64>>,
    failures: Vec<BTreeMap<String, u64>>,
    last_sent: Option<Instant>,
}

impl Tally {
    fn new(endpoints: &[Endpoint]) -> Self {
        Tally {
            names: endpoints.iter().map(Endpoint::name).collect(),
            histograms: endpoints.iter().map(|_| histogram()).collect(),
            failures: endpoints.iter().map(|_| BTreeMap::new()).collect(),
            last_sent: None,
        }
    }

    fn add(&mut self, outcome: Outcome) {
        let micros = u64::try_from(outcome.latency.as_micros()).unwrap_or(u64::MAX);
        self.histograms[outcome.endpoint].saturating_record(micros.max(1));
        if let Some(why) = outcome.failure {
            *self.failures[outcome.endpoint].entry(why).or_default() += 1;
        }
        self.last_sent = self.last_sent.max(Some(outcome.sent));
    }

    fn measured(self, schedule: &Schedule<'_>, started: Instant) -> Measured {
        let seconds = started.elapsed().as_secs_f64();
        let mut all = histogram();
        for h in &self.histograms {
            all.add(h).expect("histograms of the same bounds merge");
        }
        // Kept to schedule, the last request goes out one interval before the window ends.
        let window = self
            .last_sent
            .map_or(0.0, |s| s.duration_since(started).as_secs_f64())
            + 1.0 / schedule.rate;
        let endpoints: Vec<EndpointFigures> = (self.names.into_iter())
            .zip(&self.histograms)
            .zip(self.failures)
            .map(|((endpoint, h), failures)| EndpointFigures {
                endpoint,
                requests: h.len(),
                errors: failures.values().sum(),
                p95_ms: ms(h, 0.95),
                failures,
            })
            .collect();
        Measured {
            target_rps: schedule.rate,
            achieved_rps: all.len() as f64 / window,
            requests: all.len(),
            errors: endpoints.iter().map(|e| e.errors).sum(),
            seconds,
            p50_ms: ms(&all, 0.5),
            p95_ms: ms(&all, 0.95),
            p99_ms: ms(&all, 0.99),
            max_ms: all.max() as f64 / 1000.0,
            endpoints,
        }
    }
}
