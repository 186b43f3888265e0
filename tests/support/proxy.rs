//! A loopback HTTP proxy between slx and the emulator that adds latency,
//! injects the failures AWS produces (throttling, 5xx, dropped connections,
//! lost responses) and counts calls per operation.
//!
//! Self-contained (std only) so the benchmark suite can include it too.
//! It binds 127.0.0.1 only and stops by itself after its time bound.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the proxy does to each call. Rates are probabilities in [0, 1].
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Added before each call is forwarded: one round trip to AWS.
    pub latency: Duration,
    /// Per-service latency (signing name: `lambda`, `sqs`, …), overriding `latency`.
    pub service_latency: HashMap<String, Duration>,
    /// Rejected with the service's throttling error; never reaches the emulator.
    pub throttle: f64,
    /// Answered with a 5xx; never reaches the emulator.
    pub server_error: f64,
    /// Connection closed without forwarding the request.
    pub drop_request: f64,
    /// Forwarded and applied, then the connection closed before the response:
    /// the case that makes a blind retry create a resource twice.
    pub drop_response: f64,
    /// Only calls of these services are faulted (all when empty).
    pub only_services: Vec<String>,
    /// Only these operations are faulted (all when empty), e.g. `sqs:CreateQueue`
    /// or `lambda:POST /2015-03-31/functions`.
    pub only_operations: Vec<String>,
    /// Fault only the first call of each operation, so a retry gets through.
    pub first_only: bool,
    pub seed: u64,
}

impl Faults {
    pub fn latency(ms: u64) -> Faults {
        Faults { latency: Duration::from_millis(ms), ..Faults::default() }
    }

    /// `rate` of calls fail, split evenly between the four kinds of failure.
    pub fn mixed(rate: f64, seed: u64) -> Faults {
        let each = rate / 4.0;
        Faults {
            throttle: each,
            server_error: each,
            drop_request: each,
            drop_response: each,
            seed,
            ..Faults::default()
        }
    }
}

/// One AWS call as the proxy saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub service: String,
    pub operation: String,
    pub write: bool,
    /// The fault injected, if any (`throttle`, `5xx`, `drop-request`, `drop-response`).
    pub fault: Option<&'static str>,
}

struct State {
    faults: Faults,
    rng: u64,
    seen: Vec<Seen>,
    /// Operations already faulted, for `first_only`.
    faulted: std::collections::HashSet<String>,
    /// Calls being answered now, and the most at once, per service.
    in_flight: HashMap<String, (usize, usize)>,
}

pub struct Proxy {
    pub url: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

const READ_PREFIXES: [&str; 8] = ["Get", "List", "Describe", "Head", "Receive", "Scan", "Query", "BatchGet"];

impl Proxy {
    /// Starts a proxy to `upstream` (`http://127.0.0.1:PORT`) that lives at most `bound`.
    pub fn start(upstream: &str, faults: Faults, bound: Duration) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy binds loopback");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let rng = faults.seed.max(1);
        let state = Arc::new(Mutex::new(State {
            faults,
            rng,
            seen: Vec::new(),
            faulted: Default::default(),
            in_flight: HashMap::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let upstream = upstream.trim_start_matches("http://").to_string();
        let deadline = Instant::now() + bound;
        listener.set_nonblocking(true).unwrap();
        let (st, sp) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            while !sp.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((client, _)) => {
                        let (st, sp, up) = (st.clone(), sp.clone(), upstream.clone());
                        std::thread::spawn(move || serve(client, &up, &st, &sp, deadline));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2))
                    }
                    Err(_) => break,
                }
            }
        });
        Proxy { url, state, stop }
    }

    /// Changes what the proxy does from the next call on.
    pub fn set(&self, faults: Faults) {
        let mut s = self.state.lock().unwrap();
        s.rng = faults.seed.max(1);
        s.faults = faults;
        s.faulted.clear();
    }

    pub fn faults(&self) -> Faults {
        self.state.lock().unwrap().faults.clone()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    pub fn reset(&self) {
        let mut s = self.state.lock().unwrap();
        s.seen.clear();
        s.in_flight.clear();
    }

    /// The most calls each service had in flight at once since the last reset.
    pub fn peak_in_flight(&self) -> BTreeMap<String, usize> {
        self.state.lock().unwrap().in_flight.iter().map(|(k, (_, peak))| (k.clone(), *peak)).collect()
    }

    /// Calls per `service:Operation`, split into (reads, writes), faults included.
    pub fn counts(&self) -> BTreeMap<String, (usize, usize)> {
        let mut out: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for c in self.seen() {
            let e = out.entry(format!("{}:{}", c.service, c.operation)).or_default();
            if c.write { e.1 += 1 } else { e.0 += 1 }
        }
        out
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A parsed HTTP/1.1 request or response: start line, headers, body.
struct Message {
    start: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Message {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn write_to(&self, out: &mut impl Write, connection: &str) -> std::io::Result<()> {
        let mut head = format!("{}\r\n", self.start);
        for (k, v) in &self.headers {
            if !["content-length", "transfer-encoding", "connection"].contains(&k.to_ascii_lowercase().as_str()) {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        head.push_str(&format!("Content-Length: {}\r\nConnection: {connection}\r\n\r\n", self.body.len()));
        // One write: a second small one would wait out the peer's delayed ACK.
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&self.body);
        out.write_all(&bytes)?;
        out.flush()
    }
}

/// Reads one message (framed by Content-Length or chunked, as HTTP/1.1
/// keep-alive needs); None at a clean end of stream.
fn read_message(r: &mut impl BufRead) -> std::io::Result<Option<Message>> {
    let mut start = String::new();
    if r.read_line(&mut start)? == 0 {
        return Ok(None);
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let mut m = Message { start: start.trim_end().to_string(), headers, body: Vec::new() };
    if m.header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            m.body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = m.header("content-length").and_then(|n| n.parse::<usize>().ok()) {
        m.body = vec![0; n];
        r.read_exact(&mut m.body)?;
    }
    Ok(Some(m))
}

fn serve(client: TcpStream, upstream: &str, state: &Mutex<State>, stop: &AtomicBool, deadline: Instant) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(120)));
    let _ = client.set_nodelay(true);
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut client = client;
    // One upstream connection per client connection, kept alive like the client's.
    let mut up: Option<BufReader<TcpStream>> = None;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let Ok(Some(req)) = read_message(&mut reader) else { return };
        let call = classify(&req);
        let (delay, fault) = decide(state, &call);
        let flight = Flight::enter(state, &call.service);
        std::thread::sleep(delay);
        state.lock().unwrap().seen.push(Seen { fault, ..call.clone() });
        let response = match fault {
            Some("throttle") => throttled(&req, &call),
            Some("5xx") => server_error(&req),
            Some("drop-request") => return cut(client),
            _ => match forward(upstream, &mut up, &req) {
                Ok(resp) => resp,
                Err(_) => return cut(client),
            },
        };
        // Answered: the caller may send its next call as soon as it reads this.
        drop(flight);
        if fault == Some("drop-response") {
            return cut(client);
        }
        if response.write_to(&mut client, "keep-alive").is_err() {
            return;
        }
    }
}

/// One call in flight for its service, from arrival until its answer is ready.
struct Flight<'a> {
    state: &'a Mutex<State>,
    service: String,
}

impl<'a> Flight<'a> {
    fn enter(state: &'a Mutex<State>, service: &str) -> Flight<'a> {
        let mut s = state.lock().unwrap();
        let (now, peak) = s.in_flight.entry(service.to_string()).or_default();
        *now += 1;
        *peak = (*peak).max(*now);
        Flight { state, service: service.to_string() }
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        if let Some((now, _)) = self.state.lock().unwrap().in_flight.get_mut(&self.service) {
            *now = now.saturating_sub(1);
        }
    }
}

/// Closes the connection without a response.
fn cut(client: TcpStream) {
    let _ = client.shutdown(Shutdown::Both);
}

/// Sends `req` over the kept-alive connection `up`, opening one if there is
/// none; a reused connection the emulator closed while idle is opened anew
/// once (it closed before reading anything, so nothing was applied).
fn forward(upstream: &str, up: &mut Option<BufReader<TcpStream>>, req: &Message) -> std::io::Result<Message> {
    for reused in [up.is_some(), false] {
        if up.is_none() {
            let conn = TcpStream::connect(upstream)?;
            conn.set_read_timeout(Some(Duration::from_secs(120)))?;
            conn.set_nodelay(true)?;
            *up = Some(BufReader::new(conn));
        }
        let r = up.as_mut().expect("connected above");
        let answer = req.write_to(r.get_mut(), "keep-alive").and_then(|()| read_message(r));
        match answer {
            Ok(Some(resp)) => {
                if resp.header("connection").is_some_and(|c| c.eq_ignore_ascii_case("close")) {
                    *up = None;
                }
                return Ok(resp);
            }
            Ok(None) | Err(_) if reused => *up = None,
            Ok(None) => return Err(std::io::Error::other("upstream closed without a response")),
            Err(e) => return Err(e),
        }
    }
    unreachable!("the second attempt uses a new connection and returns")
}

fn decide(state: &Mutex<State>, call: &Seen) -> (Duration, Option<&'static str>) {
    let mut s = state.lock().unwrap();
    let f = &s.faults;
    let delay = f.service_latency.get(&call.service).copied().unwrap_or(f.latency);
    let key = format!("{}:{}", call.service, call.operation);
    let eligible = (f.only_services.is_empty() || f.only_services.contains(&call.service))
        && (f.only_operations.is_empty() || f.only_operations.contains(&key))
        && !(f.first_only && s.faulted.contains(&key));
    let cuts = [
        (f.throttle, "throttle"),
        (f.server_error, "5xx"),
        (f.drop_request, "drop-request"),
        (f.drop_response, "drop-response"),
    ];
    // xorshift64*: reproducible from the seed for a given order of calls.
    s.rng ^= s.rng >> 12;
    s.rng ^= s.rng << 25;
    s.rng ^= s.rng >> 27;
    let roll = (s.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64;
    let mut acc = 0.0;
    for (rate, name) in cuts {
        acc += rate;
        if eligible && roll < acc {
            s.faulted.insert(key);
            return (delay, Some(name));
        }
    }
    (delay, None)
}

/// Names the call the way the API reference does (REST calls by method and
/// path shape), and whether it writes.
fn classify(req: &Message) -> Seen {
    let service = req
        .header("authorization")
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').nth(3))
        .unwrap_or("unknown")
        .to_string();
    let mut parts = req.start.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("").trim_end_matches('/');
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let action = |text: &str| text.split('&').find_map(|kv| kv.strip_prefix("Action=")).map(|a| a.to_string());
    let operation = if let Some(t) = req.header("x-amz-target") {
        t.rsplit('.').next().unwrap_or(t).to_string()
    } else if let Some((_, op)) = path.split_once("/operation/") {
        op.to_string()
    } else if let Some(a) = action(query).or_else(|| action(&String::from_utf8_lossy(&req.body))) {
        a
    } else {
        // /VERSION/collection/ID/collection/ID…: keep the collections.
        let shape: Vec<&str> =
            path.split('/').enumerate().map(|(i, seg)| if i >= 3 && i % 2 == 1 { "*" } else { seg }).collect();
        return Seen {
            service,
            operation: format!("{method} {}", shape.join("/")),
            write: !matches!(method, "GET" | "HEAD"),
            fault: None,
        };
    };
    let write = !READ_PREFIXES.iter().any(|p| operation.starts_with(p));
    Seen { service, operation, write, fault: None }
}

enum Protocol {
    Json,
    Query,
    Cbor,
    RestJson,
}

fn protocol(req: &Message) -> Protocol {
    if req.header("x-amz-target").is_some() {
        Protocol::Json
    } else if req.header("smithy-protocol").is_some_and(|p| p.contains("cbor")) {
        Protocol::Cbor
    } else if req.header("content-type").is_some_and(|c| c.starts_with("application/x-www-form-urlencoded")) {
        Protocol::Query
    } else {
        Protocol::RestJson
    }
}

/// An error response shaped as the service's protocol shapes it.
fn error(req: &Message, status: u16, reason: &str, code: &str, message: &str) -> Message {
    let start = format!("HTTP/1.1 {status} {reason}");
    let request_id = "00000000-0000-4000-8000-000000000000".to_string();
    let mut headers = vec![("x-amzn-RequestId".to_string(), request_id.clone())];
    let body = match protocol(req) {
        Protocol::Json => {
            headers.push(("Content-Type".into(), "application/x-amz-json-1.0".into()));
            format!(r#"{{"__type":"{code}","message":"{message}"}}"#).into_bytes()
        }
        Protocol::RestJson => {
            headers.push(("Content-Type".into(), "application/json".into()));
            headers.push(("x-amzn-ErrorType".into(), code.into()));
            format!(r#"{{"message":"{message}","Type":"User"}}"#).into_bytes()
        }
        Protocol::Query => {
            headers.push(("Content-Type".into(), "text/xml".into()));
            format!(
                "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
            )
            .into_bytes()
        }
        Protocol::Cbor => {
            headers.push(("Content-Type".into(), "application/cbor".into()));
            headers.push(("smithy-protocol".into(), "rpc-v2-cbor".into()));
            cbor_map(&[("__type", code), ("message", message)])
        }
    };
    Message { start, headers, body }
}

fn throttled(req: &Message, call: &Seen) -> Message {
    match protocol(req) {
        // Lambda and API Gateway answer 429 TooManyRequestsException.
        Protocol::RestJson => error(req, 429, "Too Many Requests", "TooManyRequestsException", "Rate exceeded"),
        // IAM and STS (query protocol) say `Throttling`.
        Protocol::Query => error(req, 400, "Bad Request", "Throttling", "Rate exceeded"),
        _ if call.service == "dynamodb" => {
            error(req, 400, "Bad Request", "ThrottlingException", "Rate of requests exceeds the allowed throughput.")
        }
        _ => error(req, 400, "Bad Request", "ThrottlingException", "Rate exceeded"),
    }
}

fn server_error(req: &Message) -> Message {
    let code = match protocol(req) {
        Protocol::Query => "ServiceUnavailable",
        Protocol::RestJson => "ServiceException",
        _ => "ServiceUnavailableException",
    };
    error(req, 503, "Service Unavailable", code, "Service is temporarily unavailable")
}

/// A CBOR map of short text strings (all the error shape needs).
fn cbor_map(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = vec![0xa0 | pairs.len() as u8];
    for s in pairs.iter().flat_map(|(k, v)| [k, v]) {
        let b = s.as_bytes();
        if b.len() < 24 {
            out.push(0x60 | b.len() as u8);
        } else {
            out.push(0x78);
            out.push(b.len() as u8);
        }
        out.extend_from_slice(b);
    }
    out
}
