//! `gochat-loadgen`: drives one or several GoChat nodes over real HTTP and WebSockets and reports throughput,
//! end-to-end latency (send → recipient socket), errors and the server's memory. Scenarios: `direct` (1:1
//! chat, closed or open loop), `group` (fan-out to a large group), `idle` (many held sockets, spread over worker
//! processes and 127.0.0.x source addresses), `reconnect` (drop every socket at once and time the return),
//! `catchup` (summary-first and full catch-up after an absence), `group-reads` (read receipts in a large group)
//! and `chaos` (traffic from well-behaved clients while a fault command runs; what was lost, duplicated, reordered).
//!
//! Every loop is bounded in count and time, and every address is a node given on the command line (loopback
//! in this repository's benchmarks).

mod chaos;
mod wave2;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpSocket;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

#[derive(Parser)]
#[command(name = "gochat-loadgen", about = "Load generator for GoChat nodes")]
struct Cli {
    /// Node base URLs, comma-separated; users and sockets are spread over them.
    #[arg(long, global = true, value_delimiter = ',', default_value = "http://127.0.0.1:8080")]
    url: Vec<String>,
    /// Server process ids whose RSS to report (from /proc).
    #[arg(long, global = true, value_delimiter = ',')]
    pid: Vec<u32>,
    /// Print the report as one JSON object.
    #[arg(long, global = true)]
    json: bool,
    /// Password of every generated user.
    #[arg(long, global = true, default_value = "loadtest-password")]
    password: String,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// 1:1 chat: pairs of friends, senders on one node and receivers on another when several are given.
    Direct {
        #[arg(long, default_value_t = 50)]
        pairs: usize,
        /// Seconds of sending.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Open loop: total messages per second over all senders. Without it, closed loop.
        #[arg(long)]
        rate: Option<u64>,
        /// Closed loop: messages each sender keeps in flight.
        #[arg(long, default_value_t = 1)]
        inflight: usize,
        /// Senders send with `POST /api/messages/send` (one keep-alive connection each) instead of WebSocket
        /// `send` frames; receivers stay on WebSockets.
        #[arg(long)]
        http: bool,
        /// With `--http`: after this share of accepted sends (0–1), the sender changes the message it just
        /// sent — a reaction, an edit or a recall in turn — as a mixed workload of the message lifecycle.
        #[arg(long, default_value_t = 0.0)]
        changes: f64,
    },
    /// Group fan-out: one group, every member online, a few senders.
    Group {
        #[arg(long, default_value_t = 500)]
        members: usize,
        #[arg(long, default_value_t = 5)]
        senders: usize,
        /// Messages per sender.
        #[arg(long, default_value_t = 20)]
        messages: usize,
        /// Open loop: total group messages per second over all senders (latency below saturation). Without
        /// it, each sender sends its next message when the last is accepted (closed loop: throughput).
        #[arg(long)]
        rate: Option<u64>,
        /// Group changes per second while the senders send: the owner mutes and unmutes the last member in
        /// turn (each change takes the group's lock and appends a `system` message every member receives).
        #[arg(long)]
        churn: Option<f64>,
        /// Seconds to wait once every member is online before sending, so that what connecting set off on the
        /// server (catch-up, presence announcements) is over and the run measures sending alone.
        #[arg(long, default_value_t = 0.0)]
        settle: f64,
    },
    /// Many authenticated sockets held open (answering heartbeats), spread over worker processes.
    Idle {
        #[arg(long, default_value_t = 10_000)]
        sockets: usize,
        /// Distinct users the sockets belong to (each user has sockets/users devices).
        #[arg(long, default_value_t = 200)]
        users: usize,
        #[arg(long, default_value_t = 10)]
        hold_seconds: u64,
        /// Sockets per worker process (each process may open at most ~20,000 files here).
        #[arg(long, default_value_t = 15_000)]
        per_worker: usize,
    },
    /// Reconnect storm: hold sockets, drop them all at once, reconnect all at once, time until all are synced.
    Reconnect {
        #[arg(long, default_value_t = 10_000)]
        sockets: usize,
        #[arg(long, default_value_t = 200)]
        users: usize,
        #[arg(long, default_value_t = 15_000)]
        per_worker: usize,
    },
    /// Catch-up after an absence: a device away while `messages` arrived across `conversations` reconnects,
    /// summary-first (time to the summary and to every tail) and with the full flow (time to everything).
    Catchup {
        #[arg(long, default_value_t = 200)]
        conversations: usize,
        #[arg(long, default_value_t = 10_000)]
        messages: usize,
        #[arg(long, default_value_t = 20)]
        tail: usize,
        /// Reconnections measured each way (each as a fresh device).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
    },
    /// Group read receipts: every member of a group reads every message; frames per read and server CPU.
    GroupReads {
        #[arg(long, default_value_t = 500)]
        members: usize,
        #[arg(long, default_value_t = 10)]
        messages: usize,
    },
    /// Fault injection: 1:1 and group traffic (half over sockets, half over REST) from clients that reconnect,
    /// resume, dedup and retry, while `--fault` runs; then waits until every acknowledged message reached every
    /// recipient and reports losses, duplicates, order, gaps, time away and every error (`loadtest/chaos.sh`).
    Chaos {
        /// Users, each with one device (even: they chat in pairs).
        #[arg(long, default_value_t = 40)]
        users: usize,
        /// Users per group (blocks of consecutive users).
        #[arg(long, default_value_t = 10)]
        group_size: usize,
        /// Messages per second over all users.
        #[arg(long, default_value_t = 50)]
        rate: u64,
        /// Seconds of sending.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Seconds into the sending when the fault command starts.
        #[arg(long, default_value_t = 5)]
        fault_at: u64,
        /// A bash command that injects the fault (and repairs it, if the scenario repairs).
        #[arg(long)]
        fault: Option<String>,
        /// Most seconds to wait after the sending for every acknowledgement and delivery.
        #[arg(long, default_value_t = 60)]
        settle_seconds: u64,
    },
    /// Internal: one worker process of `idle` / `reconnect`.
    #[command(hide = true)]
    Worker {
        #[arg(long)]
        tokens: PathBuf,
        #[arg(long)]
        index: usize,
        #[arg(long)]
        sockets: usize,
        #[arg(long)]
        source_ip: IpAddr,
        #[arg(long)]
        hold_seconds: u64,
        #[arg(long)]
        reconnect: bool,
    },
}

fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// Latency samples in microseconds.
#[derive(Default)]
struct Samples(Vec<u64>);

impl Samples {
    fn summary(&mut self) -> Value {
        self.0.sort_unstable();
        let p = |q: f64| -> f64 {
            if self.0.is_empty() {
                return 0.0;
            }
            let i = ((self.0.len() as f64 - 1.0) * q).round() as usize;
            self.0[i] as f64 / 1000.0
        };
        json!({"count": self.0.len(), "p50_ms": p(0.5), "p90_ms": p(0.9), "p99_ms": p(0.99), "max_ms": p(1.0)})
    }
}

/// A 1:1 run's latencies, end to end and split at the time the server stored the message (its `created_at`,
/// taken as the storing statement starts): which leg a tail comes from.
#[derive(Default)]
struct DirectSamples {
    end_to_end: Samples,
    to_stored: Samples,
    stored_to_recipient: Samples,
}

#[derive(Default)]
struct Errors(Mutex<BTreeMap<String, u64>>);

impl Errors {
    fn add(&self, kind: impl Into<String>) {
        *self.0.lock().unwrap().entry(kind.into()).or_default() += 1;
    }
    fn to_json(&self) -> Value {
        json!(self.0.lock().unwrap().clone())
    }
}

/// Resident set size of the given processes, in KiB.
fn rss_kib(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    let mut total = 0;
    for pid in pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        total += line.split_whitespace().nth(1)?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// A registered user: id and token.
type User = (i64, String);

/// The nodes under test, each through the shared client (`gochat-client`).
struct Api {
    nodes: Vec<gochat_client::Client>,
    urls: Vec<String>,
    password: String,
}

impl Api {
    fn new(urls: Vec<String>, password: String) -> Self {
        let http = reqwest::Client::new();
        let nodes = urls.iter().map(|u| gochat_client::Client::with_http(u.clone(), http.clone())).collect();
        Self { nodes, urls, password }
    }

    fn node(&self, i: usize) -> &gochat_client::Client {
        &self.nodes[i % self.nodes.len()]
    }

    fn url(&self, i: usize, path: &str) -> String {
        self.node(i).url(path)
    }

    async fn post(&self, node: usize, path: &str, token: Option<&str>, body: Value) -> anyhow::Result<Value> {
        self.node(node).call(reqwest::Method::POST, path, token, Some(body)).await?.success(path)
    }

    /// Registers and logs in `name`: (user id, token).
    async fn user(&self, node: usize, name: &str) -> anyhow::Result<(i64, String)> {
        self.node(node).user(name, &self.password).await
    }

    /// `n` users, created 16 at a time.
    async fn users(self: &Arc<Self>, prefix: &str, n: usize) -> anyhow::Result<Vec<(i64, String)>> {
        let results: Vec<_> = futures_util::stream::iter(0..n)
            .map(|i| {
                let api = self.clone();
                let name = format!("{prefix}{i}");
                async move { api.user(i, &name).await }
            })
            .buffered(16)
            .collect()
            .await;
        results.into_iter().collect()
    }

    async fn befriend(&self, a: &(i64, String), b: &(i64, String)) -> anyhow::Result<()> {
        self.node(0).befriend((a.0, &a.1), (b.0, &b.1)).await
    }

    /// Makes each pair of users friends, 16 requests at a time.
    async fn befriend_all(&self, pairs: Vec<(&User, &User)>) -> anyhow::Result<()> {
        futures_util::stream::iter(pairs)
            .map(|(a, b)| self.befriend(a, b))
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect()
    }
}

/// Opens a WebSocket from `source` (a loopback address, to spread ephemeral ports) and reads its `hello`.
async fn connect(base: &str, token: &str, device: &str, source: Option<IpAddr>) -> anyhow::Result<Ws> {
    let ws_url = gochat_client::ws_url(base, token, device);
    let host = base.trim_start_matches("http://").trim_end_matches('/');
    let addr: SocketAddr = tokio::net::lookup_host(host).await?.next().context("no address")?;
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    // A small read buffer, like the server's: tungstenite zero-fills the free part of its read buffer before every
    // read, and with the default 128 KiB that memset was 15% of the generator's CPU under group fan-out.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(8 * 1024);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(ws_url, stream, Some(config)).await?;
    match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) if t.contains("\"hello\"") => Ok(ws),
        other => bail!("no hello: {other:?}"),
    }
}

/// A server frame as the readers see it: only what they measure or ack, borrowed from the frame's text so that
/// reading 100k frames a second does not make the load generator the bottleneck.
#[derive(serde::Deserialize)]
struct Incoming<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    message: Option<InMessage<'a>>,
    #[serde(default, borrow)]
    messages: Vec<InMessage<'a>>,
    #[serde(borrow)]
    code: Option<std::borrow::Cow<'a, str>>,
}

#[derive(serde::Deserialize)]
struct InMessage<'a> {
    id: i64,
    #[serde(borrow)]
    conversation_id: std::borrow::Cow<'a, str>,
    seq: i64,
    #[serde(default)]
    from_user_id: i64,
    #[serde(default, borrow)]
    client_msg_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    text: Option<std::borrow::Cow<'a, str>>,
    /// When the server stored it (RFC 3339, UTC).
    #[serde(default, borrow)]
    created_at: Option<std::borrow::Cow<'a, str>>,
}

impl<'a> Incoming<'a> {
    /// The messages a `message` or `sync` frame carries (none for other frames or unparsable text).
    fn parse(text: &'a str) -> Option<Incoming<'a>> {
        serde_json::from_str(text).ok()
    }

    fn into_messages(self) -> Vec<InMessage<'a>> {
        match self.kind.as_ref() {
            "message" => self.message.into_iter().collect(),
            "sync" => self.messages,
            _ => Vec::new(),
        }
    }
}

fn ack_frame(conversation_id: &str, seq: i64) -> Message {
    Message::Text(format!(r#"{{"type":"ack","conversation_id":"{conversation_id}","seq":{seq}}}"#).into())
}

/// Acks owed by one socket, as a client would send them: acks are cumulative, so after handling every frame
/// that has already arrived, one ack per conversation (its highest seq) goes out, all in one write.
#[derive(Default)]
struct Acks(Vec<(String, i64)>);

impl Acks {
    fn add(&mut self, conversation_id: &str, seq: i64) {
        match self.0.iter_mut().find(|(c, _)| c == conversation_id) {
            Some(entry) => entry.1 = entry.1.max(seq),
            None => self.0.push((conversation_id.to_string(), seq)),
        }
    }

    async fn flush<S>(&mut self, ws: &mut S)
    where
        S: futures_util::Sink<Message> + Unpin,
    {
        if self.0.is_empty() {
            return;
        }
        for (c, seq) in self.0.drain(..) {
            let _ = ws.feed(ack_frame(&c, seq)).await;
        }
        let _ = ws.flush().await;
    }
}

/// Frames that have already arrived on `ws` (without waiting), at most [`READY_FRAMES`].
fn ready_frames(ws: &mut Ws) -> Vec<Message> {
    use futures_util::FutureExt;
    let mut frames = Vec::new();
    while frames.len() < READY_FRAMES {
        match ws.next().now_or_never() {
            Some(Some(Ok(m))) => frames.push(m),
            _ => break,
        }
    }
    frames
}

/// Frames handled before the acks for them go out: a burst's worth, so an ack is never held back for long.
const READY_FRAMES: usize = 64;

fn ts_of(text: &str) -> Option<u64> {
    text.strip_prefix("ts=")?.split(' ').next()?.parse().ok()
}

/// Microseconds since the epoch of a UTC RFC 3339 time as the server writes it (`2026-11-28T23:36:38.123456Z`).
fn micros_of_rfc3339(t: &str) -> Option<u64> {
    let t = t.strip_suffix('Z').or_else(|| t.strip_suffix("+00:00"))?;
    let (date, time) = t.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut h = hms.splitn(3, ':').map(|x| x.parse::<i64>().ok());
    let (hh, mm, ss) = (h.next()??, h.next()??, h.next()??);
    let micros: i64 = format!("{frac:0<6}").get(..6)?.parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    u64::try_from(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1_000_000) + micros).ok()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let api = Arc::new(Api::new(cli.url.clone(), cli.password.clone()));
    let report = match cli.scenario {
        Scenario::Direct { pairs, seconds, rate, inflight, http, changes } => {
            direct(&api, DirectRun { pairs, seconds, rate, inflight, http, changes }, &cli.pid).await?
        }
        Scenario::Group { members, senders, messages, rate, churn, settle } => {
            group(&api, GroupLoad { members, senders, messages, rate, churn, settle }, &cli.pid).await?
        }
        Scenario::Idle { sockets, users, hold_seconds, per_worker } => {
            held(&api, sockets, users, hold_seconds, per_worker, false, &cli.pid).await?
        }
        Scenario::Reconnect { sockets, users, per_worker } => {
            held(&api, sockets, users, 2, per_worker, true, &cli.pid).await?
        }
        Scenario::Catchup { conversations, messages, tail, rounds } => {
            wave2::catchup(&api, conversations, messages, tail, rounds).await?
        }
        Scenario::GroupReads { members, messages } => wave2::group_reads(&api, members, messages, &cli.pid).await?,
        Scenario::Chaos { users, group_size, rate, seconds, fault_at, fault, settle_seconds } => {
            let run = chaos::ChaosRun { users, group_size, rate, seconds, fault_at, fault, settle_seconds };
            chaos::chaos(&api, run).await?
        }
        Scenario::Worker { tokens, index, sockets, source_ip, hold_seconds, reconnect } => {
            let r = worker(&cli.url, &tokens, index, sockets, source_ip, hold_seconds, reconnect).await?;
            println!("{r}");
            return Ok(());
        }
    };
    if cli.json {
        println!("{report}");
    } else {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}

fn run_id() -> String {
    format!("lt{:x}", now_micros() % 0xffffff)
}

/// The shape of a `direct` run (see [`Scenario::Direct`]).
struct DirectRun {
    pairs: usize,
    seconds: u64,
    rate: Option<u64>,
    inflight: usize,
    http: bool,
    changes: f64,
}

/// 1:1 chat. Receivers ack what they get (cumulatively, once per burst); latency is measured from the sender's clock
/// to the receiver's.
async fn direct(api: &Arc<Api>, run: DirectRun, pids: &[u32]) -> anyhow::Result<Value> {
    let DirectRun { pairs, seconds, rate, inflight, http, changes } = run;
    let id = run_id();
    let changed = Arc::new(AtomicU64::new(0));
    let setup = Instant::now();
    let users = api.users(&format!("{id}d"), pairs * 2).await?;
    for i in 0..pairs {
        api.befriend(&users[i], &users[i + pairs]).await?;
    }
    let n = api.urls.len();
    let samples = Arc::new(Mutex::new(DirectSamples::default()));
    let errors = Arc::new(Errors::default());
    let delivered = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let rss_before = rss_kib(pids);

    // Receivers on node i % n, senders on node (i + 1) % n: with two nodes every message crosses the bus.
    // Every socket is open before the clock starts, so the send phase is `seconds` of sending.
    let mut receivers = Vec::with_capacity(pairs);
    let mut senders = Vec::with_capacity(pairs);
    for i in 0..pairs {
        receivers.push(connect(&api.urls[i % n], &users[i + pairs].1, "bench", None).await?);
    }
    for (i, sender) in users.iter().take(pairs).enumerate() {
        if !http {
            senders.push(connect(&api.urls[(i + 1) % n], &sender.1, "bench", None).await?);
        }
    }
    let mut tasks = Vec::new();
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    let drain = end + Duration::from_secs(5);
    for mut ws in receivers {
        let (samples, errors, delivered) = (samples.clone(), errors.clone(), delivered.clone());
        tasks.push(tokio::spawn(async move {
            let (mut mine, mut to_server, mut from_server) = (Vec::new(), Vec::new(), Vec::new());
            let mut acks = Acks::default();
            while let Ok(Some(frame)) = tokio::time::timeout_at(drain.into(), ws.next()).await {
                let Ok(first) = frame else { continue };
                for frame in std::iter::once(first).chain(ready_frames(&mut ws)) {
                    let Message::Text(t) = frame else { continue };
                    let Some(frame) = Incoming::parse(&t) else { continue };
                    if frame.kind == "error" {
                        errors.add(format!("recv:{}", frame.code.as_deref().unwrap_or("?")));
                        continue;
                    }
                    let now = now_micros();
                    for m in frame.into_messages() {
                        if let Some(ts) = m.text.as_deref().and_then(ts_of) {
                            mine.push(now.saturating_sub(ts));
                            if let Some(stored) = m.created_at.as_deref().and_then(micros_of_rfc3339) {
                                to_server.push(stored.saturating_sub(ts));
                                from_server.push(now.saturating_sub(stored));
                            }
                            delivered.fetch_add(1, Ordering::Relaxed);
                        }
                        acks.add(&m.conversation_id, m.seq);
                    }
                }
                acks.flush(&mut ws).await;
            }
            let mut samples = samples.lock().unwrap();
            samples.end_to_end.0.extend(mine);
            samples.to_stored.0.extend(to_server);
            samples.stored_to_recipient.0.extend(from_server);
        }));
    }
    let per_sender_interval = rate.map(|r| Duration::from_secs_f64(pairs as f64 / r.max(1) as f64));
    // Open loop: sender i starts i/pairs of an interval late, so the senders together send at an even rate
    // rather than all at the same instants (which made a 1,000 msg/s run 20 bursts of 50 a second).
    let phase = |i: usize| per_sender_interval.map_or(Duration::ZERO, |iv| iv.mul_f64(i as f64 / pairs as f64));
    eprintln!("{pairs} pairs online; sending{}", if http { " over HTTP" } else { "" });
    if http {
        for i in 0..pairs {
            let to = users[i + pairs].0;
            let url = api.url(i + 1, "/api/messages/send");
            let token = users[i].1.clone();
            // One client (one keep-alive connection) per in-flight slot, as a browser tab would use.
            for slot in 0..inflight.max(1) {
                let (errors, accepted, sent) = (errors.clone(), accepted.clone(), sent.clone());
                let changed = changed.clone();
                let (url, token) = (url.clone(), token.clone());
                let base = api.url(i + 1, "");
                let client = reqwest::Client::builder().tcp_nodelay(true).build()?;
                let offset = phase(i);
                tasks.push(tokio::spawn(async move {
                    let mut k = 0u64;
                    let mut next = started + offset;
                    while Instant::now() < end {
                        if let Some(iv) = per_sender_interval {
                            tokio::time::sleep_until(next.into()).await;
                            next += iv;
                        }
                        k += 1;
                        let body = json!({"to_user_id": to, "type": "text",
                            "text": format!("ts={} n={k}", now_micros()), "client_msg_id": format!("{i}-{slot}-{k}")});
                        sent.fetch_add(1, Ordering::Relaxed);
                        match client.post(&url).bearer_auth(&token).json(&body).send().await {
                            Ok(r) if r.status().is_success() => {
                                let reply = r.bytes().await.unwrap_or_default();
                                accepted.fetch_add(1, Ordering::Relaxed);
                                // Every 1/changes-th send (spread evenly, no randomness): change it.
                                let every = if changes > 0.0 { (1.0 / changes).round().max(1.0) as u64 } else { 0 };
                                if every > 0 && k.is_multiple_of(every) {
                                    let id = serde_json::from_slice::<Value>(&reply)
                                        .ok()
                                        .and_then(|v| v["id"].as_i64())
                                        .unwrap_or_default();
                                    let change = match (k / every) % 3 {
                                        0 => client.put(format!("{base}/api/messages/{id}/reactions/%F0%9F%91%8D")),
                                        1 => client
                                            .put(format!("{base}/api/messages/{id}"))
                                            .json(&json!({"text": format!("edited {k}")})),
                                        _ => client.post(format!("{base}/api/messages/{id}/recall")),
                                    };
                                    match change.bearer_auth(&token).send().await {
                                        Ok(r) if r.status().is_success() => {
                                            let _ = r.bytes().await;
                                            changed.fetch_add(1, Ordering::Relaxed);
                                        }
                                        Ok(r) => errors.add(format!("change:{}", r.status().as_u16())),
                                        Err(_) => errors.add("change:http"),
                                    }
                                }
                            }
                            Ok(r) => errors.add(format!("send:{}", r.status().as_u16())),
                            Err(_) => errors.add("send:http"),
                        }
                    }
                }));
            }
        }
    }
    for (i, ws) in senders.into_iter().enumerate() {
        let to = users[i + pairs].0;
        let (errors, accepted, sent) = (errors.clone(), accepted.clone(), sent.clone());
        let offset = phase(i);
        tasks.push(tokio::spawn(async move {
            let (mut tx, mut rx) = ws.split();
            let window = Arc::new(Semaphore::new(inflight.max(1)));
            let reader = {
                let (window, errors, accepted) = (window.clone(), errors.clone(), accepted.clone());
                tokio::spawn(async move {
                    while let Ok(Some(frame)) = tokio::time::timeout_at(drain.into(), rx.next()).await {
                        let Ok(Message::Text(t)) = frame else { continue };
                        if t.starts_with("{\"type\":\"sent\"") {
                            accepted.fetch_add(1, Ordering::Relaxed);
                            window.add_permits(1);
                        } else if t.starts_with("{\"type\":\"error\"") {
                            let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                            errors.add(format!("send:{}", v["code"].as_str().unwrap_or("?")));
                            window.add_permits(1);
                        }
                    }
                })
            };
            let mut k = 0u64;
            let mut next = started + offset;
            while Instant::now() < end {
                match per_sender_interval {
                    Some(iv) => {
                        tokio::time::sleep_until(next.into()).await;
                        next += iv;
                    }
                    None => match tokio::time::timeout_at(end.into(), window.acquire()).await {
                        Ok(Ok(p)) => p.forget(),
                        _ => break,
                    },
                }
                k += 1;
                let frame = json!({"type": "send", "message": {"to_user_id": to, "type": "text",
                    "text": format!("ts={} n={k}", now_micros()), "client_msg_id": format!("{i}-{k}")}});
                if tx.send(Message::Text(frame.to_string().into())).await.is_err() {
                    errors.add("send:socket");
                    break;
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
            let _ = reader.await;
        }));
    }
    let rss_peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (pids, rss_peak) = (pids.to_vec(), rss_peak.clone());
        tokio::spawn(async move {
            while Instant::now() < drain {
                if let Some(r) = rss_kib(&pids) {
                    rss_peak.fetch_max(r, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    for t in tasks {
        let _ = t.await;
    }
    let _ = sampler.await;
    let elapsed = (end - started).as_secs_f64();
    let d = delivered.load(Ordering::Relaxed);
    let mut samples = samples.lock().unwrap();
    Ok(json!({
        "scenario": "direct", "nodes": api.urls.len(), "pairs": pairs, "seconds": seconds,
        "mode": match rate { Some(r) => format!("open loop {r} msg/s"), None => format!("closed loop, {inflight} in flight per sender") },
        "send_path": if http { "http" } else { "websocket" },
        "setup_seconds": (started - setup).as_secs_f64(),
        "sent": sent.load(Ordering::Relaxed), "accepted": accepted.load(Ordering::Relaxed), "delivered": d,
        "changes": changed.load(Ordering::Relaxed),
        "accepted_per_sec": accepted.load(Ordering::Relaxed) as f64 / elapsed,
        "delivered_per_sec": d as f64 / elapsed,
        "latency": samples.end_to_end.summary(),
        "latency_to_stored": samples.to_stored.summary(),
        "latency_stored_to_recipient": samples.stored_to_recipient.summary(),
        "errors": errors.to_json(),
        "server_rss_kib": {"before": rss_before, "peak": rss_kib(pids).map(|_| rss_peak.load(Ordering::Relaxed))},
    }))
}

/// Per group message: (sent at, deliveries so far, last delivery at), in microseconds.
type Reach = (u64, usize, u64);

/// What one socket has of each conversation: everything up to a seq, and the few seqs past it that came ahead of
/// their turn (a `sent` frame can overtake earlier messages); the server writes the rest in seq order.
#[derive(Default)]
struct Seen(HashMap<String, (i64, Vec<i64>)>);

impl Seen {
    /// Whether this message is new to the socket (and remember it).
    fn first_time(&mut self, conversation_id: &str, seq: i64) -> bool {
        if !self.0.contains_key(conversation_id) {
            self.0.insert(conversation_id.to_string(), (0, Vec::new()));
        }
        let Some((upto, ahead)) = self.0.get_mut(conversation_id) else { return false };
        if seq <= *upto || ahead.contains(&seq) {
            return false;
        }
        if seq == *upto + 1 {
            *upto = seq;
            while let Some(i) = ahead.iter().position(|s| *s == *upto + 1) {
                *upto = ahead.swap_remove(i);
            }
        } else {
            ahead.push(seq);
        }
        true
    }
}

/// Fan-out: every member online (spread over the nodes); `senders` members send `messages` each over their
/// WebSocket (as the web client does), closed loop or at `rate` messages/s in all. A sender's device has its own
/// message when the `sent` frame arrives, which counts as its delivery; `latency_accepted` is that round trip.
/// The shape of a `group` run (see [`Scenario::Group`]).
struct GroupLoad {
    members: usize,
    senders: usize,
    messages: usize,
    rate: Option<u64>,
    churn: Option<f64>,
    settle: f64,
}

async fn group(api: &Arc<Api>, load: GroupLoad, pids: &[u32]) -> anyhow::Result<Value> {
    let GroupLoad { members, senders, messages, rate, churn, settle } = load;
    let id = run_id();
    let users = api.users(&format!("{id}g"), members).await?;
    api.befriend_all(users[1..].iter().map(|u| (&users[0], u)).collect()).await?;
    let ids: Vec<i64> = users[1..].iter().map(|u| u.0).collect();
    let g = api.post(0, "/api/groups", Some(&users[0].1), json!({"name": "bench", "member_ids": ids})).await?;
    let gid = g["id"].as_i64().context("group id")?;
    let n = api.urls.len();
    let total = senders * messages;
    let seen: Arc<Mutex<HashMap<i64, Reach>>> = Arc::default();
    let samples = Arc::new(Mutex::new(Samples::default()));
    let delivered = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(120);
    let accept = Arc::new(Mutex::new(Samples::default()));
    let errors = Arc::new(Errors::default());
    // Open loop: each sender's interval between messages; senders are staggered over it, so messages are evenly
    // spaced overall.
    let interval = rate.map(|r| Duration::from_secs_f64(senders as f64 / r.max(1) as f64));
    let (start, started_rx) = tokio::sync::watch::channel(None::<Instant>);
    let sends_done = Arc::new(Mutex::new(None::<Instant>));
    let mut tasks = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let mut ws = connect(&api.urls[i % n], &u.1, "bench", None).await?;
        let (seen, samples, delivered, accept) = (seen.clone(), samples.clone(), delivered.clone(), accept.clone());
        let (mut started_rx, sends_done, errors) = (started_rx.clone(), sends_done.clone(), errors.clone());
        // The first `senders` members also send, over the same socket, as the web client does.
        let sender = (i < senders).then_some(i);
        tasks.push(tokio::spawn(async move {
            let mut got = 0;
            let mut mine = Vec::new();
            let mut firsts: Vec<(i64, u64, u64)> = Vec::new();
            let mut acks = Acks::default();
            let mut have = Seen::default();
            // Sending: the next message's number and when it may leave (None: waiting for the start, or, in a
            // closed loop, for the last one's `sent`).
            let (mut k, mut next_at, mut accepted) = (0, None::<Instant>, 0);
            let started = loop {
                if let Some(at) = *started_rx.borrow_and_update() {
                    break at;
                }
                if started_rx.changed().await.is_err() {
                    return;
                }
            };
            if let Some(s) = sender {
                next_at = Some(match interval {
                    Some(every) => started + every.mul_f64(s as f64 / senders as f64),
                    None => started,
                });
            }
            while got < total || sender.is_some_and(|_| accepted < messages) {
                let send_at = next_at.unwrap_or(deadline);
                tokio::select! {
                    _ = tokio::time::sleep_until(send_at.into()), if next_at.is_some() && k < messages => {
                        let s = sender.unwrap_or_default();
                        let frame = json!({"type": "send", "message": {"group_id": gid, "type": "text",
                            "text": format!("ts={} s={s} k={k}", now_micros())}});
                        if ws.send(Message::Text(frame.to_string().into())).await.is_err() {
                            break;
                        }
                        k += 1;
                        next_at = interval.map(|every| started + every.mul_f64(k as f64 + s as f64 / senders as f64));
                    }
                    frame = tokio::time::timeout_at(deadline.into(), ws.next()) => {
                        let Ok(Some(Ok(first))) = frame else { break };
                        for frame in std::iter::once(first).chain(ready_frames(&mut ws)) {
                            let Message::Text(t) = frame else { continue };
                            let Some(frame) = Incoming::parse(&t) else { continue };
                            let now = now_micros();
                            if frame.kind == "error" {
                                errors.add(format!("recv:{}", frame.code.as_deref().unwrap_or("?")));
                                if interval.is_none() && sender.is_some() {
                                    next_at = Some(Instant::now());
                                }
                                continue;
                            }
                            let own = frame.kind == "sent";
                            let messages_in = if own { frame.message.into_iter().collect() } else { frame.into_messages() };
                            for m in messages_in {
                                // A client keeps each message once (delivery is at-least-once).
                                if !have.first_time(&m.conversation_id, m.seq) {
                                    continue;
                                }
                                // Acks are cumulative: a `sent` frame can be ahead of messages still on their way,
                                // so only received messages are acked.
                                if !own {
                                    acks.add(&m.conversation_id, m.seq);
                                }
                                let Some(ts) = m.text.as_deref().and_then(ts_of) else { continue };
                                // A `sent` frame is the sender's device getting its own message, accepted (durable).
                                if own {
                                    accepted += 1;
                                    accept.lock().unwrap().0.push(now.saturating_sub(ts));
                                    if interval.is_none() {
                                        next_at = Some(Instant::now());
                                    }
                                    if accepted == messages {
                                        let mut done = sends_done.lock().unwrap();
                                        *done = Some(done.map_or(Instant::now(), |d| d.max(Instant::now())));
                                    }
                                }
                                got += 1;
                                delivered.fetch_add(1, Ordering::Relaxed);
                                mine.push(now.saturating_sub(ts));
                                firsts.push((m.id, ts, now));
                            }
                        }
                        acks.flush(&mut ws).await;
                    }
                }
            }
            // Out of the loop before everything arrived: the deadline passed or the socket closed.
            if got < total {
                errors.add("incomplete:member_missed_messages");
            }
            if sender.is_some() && accepted < messages {
                errors.add("incomplete:sends_unanswered");
            }
            samples.lock().unwrap().0.extend(mine);
            let mut s = seen.lock().unwrap();
            for (id, ts, at) in firsts {
                let e = s.entry(id).or_insert((ts, 0, 0));
                e.1 += 1;
                e.2 = e.2.max(at);
            }
        }));
    }
    eprintln!("{members} members online; sending");
    tokio::time::sleep(Duration::from_secs_f64(settle.max(0.0))).await;
    let started = Instant::now();
    let _ = start.send(Some(started));
    // Group changes while the senders send: their latency, and how many the server refused.
    let changes = Arc::new(Mutex::new(Samples::default()));
    let churner = churn.filter(|r| *r > 0.0).map(|per_sec| {
        let (api, owner, target) = (api.clone(), users[0].1.clone(), users[members - 1].0);
        let (changes, errors, sends_done) = (changes.clone(), errors.clone(), sends_done.clone());
        let every = Duration::from_secs_f64(1.0 / per_sec);
        tokio::spawn(async move {
            let path = format!("/api/groups/{gid}/members/{target}/mute");
            for k in 0.. {
                if sends_done.lock().unwrap().is_some() || started.elapsed() > Duration::from_secs(120) {
                    break;
                }
                let until = (k % 2 == 0).then(|| (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339());
                let at = Instant::now();
                let r =
                    api.node(0).call(reqwest::Method::PUT, &path, Some(&owner), Some(json!({"until": until}))).await;
                match r {
                    Ok(r) if r.status.is_success() => changes.lock().unwrap().0.push(at.elapsed().as_micros() as u64),
                    Ok(r) => errors.add(format!("churn:{}", r.status.as_u16())),
                    Err(_) => errors.add("churn:transport"),
                }
                tokio::time::sleep_until((started + every.mul_f64(k as f64 + 1.0)).into()).await;
            }
        })
    });
    for t in tasks {
        let _ = t.await;
    }
    if let Some(c) = churner {
        c.abort();
    }
    // Every send accepted: how long the senders took, apart from the fan-out still under way.
    let send_seconds = sends_done.lock().unwrap().map_or(0.0, |d| (d - started).as_secs_f64());
    let elapsed = started.elapsed().as_secs_f64();
    let mut to_last = Samples::default();
    let mut complete = 0;
    for (ts, count, last) in seen.lock().unwrap().values() {
        if *count == members {
            complete += 1;
        }
        to_last.0.push(last.saturating_sub(*ts));
    }
    let d = delivered.load(Ordering::Relaxed);
    Ok(json!({
        "scenario": "group", "nodes": n, "members": members, "senders": senders, "messages": total, "rate": rate,
        "messages_reaching_every_member": complete,
        "deliveries": d, "deliveries_per_sec": d as f64 / elapsed, "seconds": elapsed,
        "send_seconds": send_seconds, "accepted_per_sec": total as f64 / send_seconds,
        "latency_accepted": accept.lock().unwrap().summary(), "errors": errors.to_json(),
        "latency_any_member": samples.lock().unwrap().summary(),
        "latency_to_last_member": to_last.summary(),
        "latency_changes": changes.lock().unwrap().summary(),
        "server_rss_kib": rss_kib(pids),
    }))
}

/// Idle sockets or a reconnect storm, spread over worker processes (each with its own 127.0.0.x source).
async fn held(
    api: &Arc<Api>,
    sockets: usize,
    users: usize,
    hold: u64,
    per_worker: usize,
    reconnect: bool,
    pids: &[u32],
) -> anyhow::Result<Value> {
    let id = run_id();
    let users = api.users(&format!("{id}i"), users.max(1)).await?;
    let tokens = std::env::temp_dir().join(format!("{id}-tokens.txt"));
    std::fs::write(&tokens, users.iter().map(|u| u.1.clone()).collect::<Vec<_>>().join("\n"))?;
    let rss_before = rss_kib(pids);
    let workers = sockets.div_ceil(per_worker.max(1));
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for w in 0..workers {
        let n = per_worker.min(sockets - w * per_worker);
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.arg("--url").arg(api.urls.join(","));
        cmd.args(["worker", "--index", &w.to_string(), "--sockets", &n.to_string()]);
        cmd.arg("--tokens").arg(&tokens);
        cmd.args([
            "--source-ip",
            &format!("127.0.{}.{}", 1 + w / 250, 2 + w % 250),
            "--hold-seconds",
            &hold.to_string(),
        ]);
        if reconnect {
            cmd.arg("--reconnect");
        }
        cmd.stdout(std::process::Stdio::piped()).kill_on_drop(true);
        children.push(cmd.spawn()?);
    }
    // Peak RSS while the sockets are held.
    let peak_rss = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (pids, peak_rss) = (pids.to_vec(), peak_rss.clone());
        tokio::spawn(async move {
            let stop = Instant::now() + Duration::from_secs(hold + 600);
            while Instant::now() < stop {
                match rss_kib(&pids) {
                    Some(r) => peak_rss.fetch_max(r, Ordering::Relaxed),
                    None => break,
                };
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    let mut results = Vec::new();
    for c in children {
        let out = c.wait_with_output().await?;
        results.push(serde_json::from_slice::<Value>(&out.stdout).unwrap_or(json!({"error": "worker failed"})));
    }
    sampler.abort();
    let _ = std::fs::remove_file(&tokens);
    let sum = |k: &str| results.iter().map(|r| r[k].as_u64().unwrap_or(0)).sum::<u64>();
    let max = |k: &str| results.iter().map(|r| r[k].as_f64().unwrap_or(0.0)).fold(0.0, f64::max);
    let connected = sum("connected");
    let peak = rss_before.map(|_| peak_rss.load(Ordering::Relaxed));
    let per_socket = match (rss_before, peak) {
        (Some(b), Some(p)) if connected > 0 => Some((p.saturating_sub(b)) as f64 / connected as f64),
        _ => None,
    };
    Ok(json!({
        "scenario": if reconnect { "reconnect" } else { "idle" }, "nodes": api.urls.len(), "workers": workers,
        "sockets_requested": sockets, "connected": connected, "failed": sum("failed"),
        "connect_seconds": max("connect_seconds"),
        "reconnected_and_synced": if reconnect { json!(sum("reconnected")) } else { Value::Null },
        "reconnect_seconds": if reconnect { json!(max("reconnect_seconds")) } else { Value::Null },
        "server_rss_kib": {"before": rss_before, "held": peak},
        "server_rss_kib_per_socket": per_socket,
        "errors": results.iter().filter_map(|r| r.get("errors").cloned()).collect::<Vec<_>>(),
    }))
}

/// A worker: opens `sockets` sockets (users round-robin), holds them answering pings, optionally drops and
/// reopens them all at once; prints one JSON line.
async fn worker(
    urls: &[String],
    tokens: &PathBuf,
    index: usize,
    sockets: usize,
    ip: IpAddr,
    hold: u64,
    reconnect: bool,
) -> anyhow::Result<Value> {
    let tokens: Vec<String> = std::fs::read_to_string(tokens)?.lines().map(str::to_string).collect();
    let errors = Arc::new(Errors::default());
    // Connection attempts in flight: enough to keep the node busy without a SYN flood on loopback.
    let gate = Arc::new(Semaphore::new(256));
    // The reconnect round uses another source address: the dropped sockets' ports sit in TIME_WAIT.
    let round_ip = |round: usize| match ip {
        IpAddr::V4(v4) if round > 0 => {
            let [a, b, c, d] = v4.octets();
            IpAddr::V4(std::net::Ipv4Addr::new(a, b.wrapping_add(100), c, d))
        }
        other => other,
    };
    let open_all = |round: usize| {
        let ip = round_ip(round);
        let mut handles = Vec::new();
        for s in 0..sockets {
            let url = urls[(index + s) % urls.len()].clone();
            let token = tokens[(index * sockets + s) % tokens.len()].clone();
            let (gate, errors) = (gate.clone(), errors.clone());
            handles.push(tokio::spawn(async move {
                let _permit = gate.acquire().await.ok()?;
                let device = format!("w{index}s{s}");
                match connect(&url, &token, &device, Some(ip)).await {
                    Ok(mut ws) => {
                        // Wait for the catch-up answer, so "connected" means usable.
                        loop {
                            match tokio::time::timeout(Duration::from_secs(60), ws.next()).await {
                                Ok(Some(Ok(Message::Text(t)))) if t.starts_with("{\"type\":\"sync\"") => {
                                    return Some(ws)
                                }
                                Ok(Some(Ok(_))) => continue,
                                _ => {
                                    errors.add(format!("round{round}:no_sync"));
                                    return None;
                                }
                            }
                        }
                    }
                    Err(e) => {
                        let kind = e.to_string().chars().take(60).collect::<String>();
                        errors.add(format!("round{round}:{kind}"));
                        None
                    }
                }
            }));
        }
        handles
    };
    let t0 = Instant::now();
    let mut held = Vec::new();
    for h in open_all(0) {
        if let Ok(Some(ws)) = h.await {
            held.push(ws);
        }
    }
    let connect_seconds = t0.elapsed().as_secs_f64();
    let connected = held.len();
    // Hold: read (so pings get answered) until the hold ends.
    let until = Instant::now() + Duration::from_secs(hold);
    let readers: Vec<_> = held
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                while let Ok(Some(Ok(_))) = tokio::time::timeout_at(until.into(), ws.next()).await {}
                ws
            })
        })
        .collect();
    let mut held = Vec::new();
    for r in readers {
        if let Ok(ws) = r.await {
            held.push(ws);
        }
    }
    let (mut reconnected, mut reconnect_seconds) = (0, 0.0);
    if reconnect {
        drop(held);
        held = Vec::new();
        let t1 = Instant::now();
        for h in open_all(1) {
            if let Ok(Some(ws)) = h.await {
                held.push(ws);
            }
        }
        reconnect_seconds = t1.elapsed().as_secs_f64();
        reconnected = held.len();
    }
    drop(held);
    Ok(json!({
        "index": index, "connected": connected, "failed": sockets - connected, "connect_seconds": connect_seconds,
        "reconnected": reconnected, "reconnect_seconds": reconnect_seconds, "errors": errors.to_json(),
    }))
}

#[cfg(test)]
mod tests {
    use super::micros_of_rfc3339;

    #[test]
    fn server_times_parse_to_microseconds_since_the_epoch() {
        assert_eq!(micros_of_rfc3339("2026-11-28T23:36:38.123456Z"), Some(1_795_908_998_123_456));
        assert_eq!(micros_of_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(micros_of_rfc3339("2024-02-29T12:00:00.5+00:00"), Some(1_709_208_000_500_000));
        assert_eq!(micros_of_rfc3339("2024-02-29T12:00:00.5+02:00"), None);
        assert_eq!(micros_of_rfc3339("yesterday"), None);
    }
}
