//! The `chaos` scenario: 1:1 and group traffic from clients that behave as a good client must (reconnect with
//! backoff, resume from their cursor on the same device, deduplicate by message id, retry a send with the same
//! `client_msg_id` until it is acknowledged, give up on a silent server by the heartbeat budget in the README),
//! while a fault command runs part-way through. Afterwards it waits until every acknowledged message has reached
//! every recipient (or a bound passes) and reports what the contract promises: nothing acknowledged lost, nothing
//! out of order, no seq gap, and how long clients were away. `loadtest/chaos.sh` runs it once per fault.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

use super::{connect, now_micros, run_id, Acks, Api, Errors, Incoming, Ws};

/// A client pings after this long without a frame (README, "Heartbeats").
const PING_AFTER: Duration = Duration::from_secs(10);
/// A send over the socket unanswered for this long makes the client ping (and resend it).
const SEND_WAIT: Duration = Duration::from_secs(3);
/// A server silent for this long after the client's ping is given up on.
const PONG_WAIT: Duration = Duration::from_secs(5);
/// Bound of one WebSocket handshake (through the balancer, to a node that may be frozen) and of one HTTP send.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound of one write to the socket.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Reconnect backoff: first wait and cap (each wait is jittered to 50–100 %).
const BACKOFF_FIRST: Duration = Duration::from_millis(200);
const BACKOFF_CAP: Duration = Duration::from_secs(3);

pub struct ChaosRun {
    pub users: usize,
    pub group_size: usize,
    pub rate: u64,
    pub seconds: u64,
    pub fault_at: u64,
    pub fault: Option<String>,
    pub settle_seconds: u64,
}

/// What one client saw, across all its connections.
#[derive(Default)]
struct Seen {
    /// Message ids received (live, in `sync`, or as the `sent` answer to its own send).
    ids: HashMap<i64, Instant>,
    /// Own messages received as `sent` replies: (conversation, seq).
    given: HashSet<(String, i64)>,
    /// Per conversation, the highest seq received (a gap is counted from the second message on: where a new
    /// device's history starts is the server's choice).
    max_seq: HashMap<String, i64>,
    duplicates: u64,
    /// Per (sender, client_msg_id), the message id it was stored as.
    sends: HashMap<(i64, String), i64>,
    stored_twice: u64,
    out_of_order: u64,
    gaps: u64,
    /// Connections lost, and each return's delay after its loss (seconds).
    drops: u64,
    returns: Vec<(Instant, f64)>,
    /// The first few anomalies, described (for the report).
    anomalies: Vec<String>,
    /// Connections opened so far (the anomalies name theirs).
    connection: u32,
}

impl Seen {
    /// A message stored twice for one send (a retry that was not idempotent): the same sender and
    /// `client_msg_id` under two ids.
    fn check_send_once(&mut self, id: i64, from: i64, client_msg_id: Option<&str>) {
        let Some(cmid) = client_msg_id else { return };
        let first = *self.sends.entry((from, cmid.to_string())).or_insert(id);
        if first != id {
            self.stored_twice += 1;
            if self.anomalies.len() < 5 {
                self.anomalies.push(format!("stored twice: {cmid} from {from} as {first} and {id}"));
            }
        }
    }

    /// `how`: the frame that carried it. `message` and `sync` frames are the conversation's stream, which the
    /// server writes in seq order without gaps from the device's cursor on (DESIGN.md §4); a `sent` frame is the
    /// reply to this device's own send and comes at once, ahead of the stream, so it is checked for loss and
    /// duplicates only, and the stream may then skip that seq (or repeat it, as a duplicate).
    fn receive(&mut self, id: i64, conversation_id: &str, seq: i64, how: &str) {
        let new = !self.ids.contains_key(&id);
        if new {
            self.ids.insert(id, Instant::now());
        }
        if !new {
            self.duplicates += 1;
        }
        if how == "sent" {
            self.given.insert((conversation_id.to_string(), seq));
            return;
        }
        let max = *self.max_seq.get(conversation_id).unwrap_or(&0);
        let mut next = max + 1;
        while self.given.contains(&(conversation_id.to_string(), next)) {
            next += 1;
        }
        // A redelivery starts again at the device's cursor, which never passes what it was written, so even a
        // duplicate beyond `next` means the stream skipped something.
        let anomaly = if max > 0 && seq > next {
            self.gaps += 1;
            "gap"
        } else if new && seq <= max {
            self.out_of_order += 1;
            "out of order"
        } else {
            ""
        };
        if !anomaly.is_empty() && self.anomalies.len() < 5 {
            let c = self.connection;
            self.anomalies
                .push(format!("{anomaly}: {conversation_id} seq {seq} after {max} in a {how} frame, connection {c}"));
        }
        self.max_seq.insert(conversation_id.to_string(), max.max(seq));
    }
}

/// An acknowledged message: who must receive it (client indexes, the sender's own device included) and when it
/// was acknowledged.
struct Acked {
    recipients: Vec<usize>,
    /// When the sender got its acknowledgement.
    at: Instant,
}

struct Shared {
    seen: Vec<Mutex<Seen>>,
    acked: Mutex<HashMap<i64, Acked>>,
    errors: Errors,
    /// Longest time from a send's first attempt to its acknowledgement, in ms.
    slowest_send_ms: Mutex<f64>,
    /// Sends not yet acknowledged.
    unacked: Mutex<HashSet<String>>,
    /// Answers to a send that carried another send's message (another `client_msg_id` or conversation).
    wrong_answers: std::sync::atomic::AtomicU64,
    /// Every lost connection: when (since the first), which client, which connection of it, why.
    losses: Mutex<Vec<(Instant, usize, u32, &'static str)>>,
}

impl Shared {
    /// Moves a send from unacknowledged to acknowledged in one step (under the `unacked` lock), so that a reader
    /// that sees nothing unacknowledged sees every acknowledgement.
    fn ack(&self, client_msg_id: &str, message_id: i64, recipients: Vec<usize>, started: Instant) {
        let mut unacked = self.unacked.lock().unwrap();
        if unacked.remove(client_msg_id) {
            self.acked.lock().unwrap().insert(message_id, Acked { recipients, at: Instant::now() });
            drop(unacked);
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            let mut slowest = self.slowest_send_ms.lock().unwrap();
            *slowest = slowest.max(ms);
        }
    }
}

/// One send: the body of `POST /api/messages/send` and who must receive it.
struct Send {
    client_msg_id: String,
    /// The conversation the answer's message must be in (DESIGN.md §7: `d:<low>:<high>` or `g:<group id>`).
    conversation_id: String,
    body: Value,
    recipients: Vec<usize>,
    started: Instant,
}

fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.5 + (now_micros() % 1000) as f64 / 2000.0)
}

pub async fn chaos(api: &Arc<Api>, run: ChaosRun) -> anyhow::Result<Value> {
    let ChaosRun { users: n, group_size, rate, seconds, fault_at, fault, settle_seconds } = run;
    anyhow::ensure!(n >= 2 && n % 2 == 0, "--users must be even and at least 2");
    anyhow::ensure!((2..=n).contains(&group_size), "--group-size must be between 2 and --users");
    let id = run_id();
    let users = api.users(&format!("{id}c"), n).await?;
    // Pairs (0,1), (2,3)… chat 1:1; blocks of `group_size` form groups owned by their first member.
    let mut friends: HashSet<(usize, usize)> = (0..n / 2).map(|p| (2 * p, 2 * p + 1)).collect();
    let blocks: Vec<Vec<usize>> = (0..n).collect::<Vec<_>>().chunks(group_size).map(|c| c.to_vec()).collect();
    for b in &blocks {
        for &m in &b[1..] {
            friends.insert((b[0], m));
        }
    }
    api.befriend_all(friends.into_iter().map(|(a, b)| (&users[a], &users[b])).collect()).await?;
    let mut groups = Vec::new(); // (group id, member indexes)
    for b in blocks.iter().filter(|b| b.len() >= 2) {
        let ids: Vec<i64> = b[1..].iter().map(|&m| users[m].0).collect();
        let g = api.post(0, "/api/groups", Some(&users[b[0]].1), json!({"name": "chaos", "member_ids": ids})).await?;
        groups.push((g["id"].as_i64().context("group id")?, b.clone()));
    }
    let group_of: HashMap<usize, usize> =
        groups.iter().enumerate().flat_map(|(g, (_, members))| members.iter().map(move |&m| (m, g))).collect();

    let shared = Arc::new(Shared {
        seen: (0..n).map(|_| Mutex::new(Seen::default())).collect(),
        acked: Mutex::default(),
        errors: Errors::default(),
        slowest_send_ms: Mutex::new(0.0),
        unacked: Mutex::default(),
        losses: Mutex::default(),
        wrong_answers: Default::default(),
    });
    let base = api.urls[0].clone();
    let (stop, stopped) = watch::channel(false);
    let mut outboxes = Vec::new();
    let mut clients = Vec::new();
    for (i, (_, token)) in users.iter().enumerate() {
        let (tx, rx) = mpsc::unbounded_channel();
        outboxes.push(tx);
        let (shared, base, token, mut stop) = (shared.clone(), base.clone(), token.clone(), stopped.clone());
        clients.push(tokio::spawn(async move { client(i, &base, &token, rx, &shared, &mut stop).await }));
    }
    // Every client online before the traffic starts.
    let online_by = Instant::now() + Duration::from_secs(30);
    while shared.seen.iter().any(|s| s.lock().unwrap().returns.is_empty()) {
        anyhow::ensure!(Instant::now() < online_by, "not every client connected within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let http = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).connect_timeout(Duration::from_secs(2)).build()?;
    let start = Instant::now();
    let fault_task = fault.clone().map(|cmd| {
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(fault_at)).await;
            let began = Instant::now();
            // Its output is not the report's: stdout goes to stderr.
            let status =
                tokio::process::Command::new("bash").arg("-ec").arg(&cmd).stdout(std::io::stderr()).status().await;
            (began, Instant::now(), status.map(|s| s.success()).unwrap_or(false))
        })
    });
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1) as f64));
    let mut http_sends = Vec::new();
    let mut k = 0usize;
    while start.elapsed() < Duration::from_secs(seconds) {
        ticker.tick().await;
        let sender = k % n;
        let round = k / n;
        k += 1;
        let client_msg_id = format!("{id}-{sender}-{round}");
        let text = format!("chaos {sender} {round} 混沌");
        // Alternating conversations (1:1, group) and ways of sending (socket, REST) per sender.
        let (body, recipients, conversation_id) = if round.is_multiple_of(2) || !group_of.contains_key(&sender) {
            let peer = sender ^ 1;
            let (a, b) = (users[sender].0.min(users[peer].0), users[sender].0.max(users[peer].0));
            (
                json!({"to_user_id": users[peer].0, "type": "text", "text": text, "client_msg_id": client_msg_id}),
                vec![peer, sender],
                format!("d:{a}:{b}"),
            )
        } else {
            let (gid, members) = &groups[group_of[&sender]];
            // Every member, the sender's own device included (a REST send reaches it through the stream).
            (
                json!({"group_id": gid, "type": "text", "text": text, "client_msg_id": client_msg_id}),
                members.clone(),
                format!("g:{gid}"),
            )
        };
        shared.unacked.lock().unwrap().insert(client_msg_id.clone());
        let send = Send { client_msg_id, conversation_id, body, recipients, started: Instant::now() };
        if (round / 2).is_multiple_of(2) {
            let _ = outboxes[sender].send(send);
        } else {
            let (http, shared, url, token) =
                (http.clone(), shared.clone(), format!("{base}/api/messages/send"), users[sender].1.clone());
            let give_up = Instant::now() + Duration::from_secs(settle_seconds);
            http_sends.push(tokio::spawn(async move { http_send(&http, &url, &token, send, &shared, give_up).await }));
        }
    }
    let sent = k;
    // Every acknowledged message delivered to every recipient, or the bound.
    let settle_start = Instant::now();
    let settle_by = settle_start + Duration::from_secs(settle_seconds);
    let missing = loop {
        // Unacknowledged first: once it reads 0, every acknowledgement is already in `acked` (see `Shared::ack`).
        let unacked = shared.unacked.lock().unwrap().len();
        let missing = missing_deliveries(&shared);
        if (missing == 0 && unacked == 0) || Instant::now() > settle_by {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let settled_s = settle_start.elapsed().as_secs_f64();
    let fault = match fault_task {
        Some(t) => Some(t.await?),
        None => None,
    };
    let _ = stop.send(true);
    for c in clients {
        let _ = c.await;
    }
    for h in http_sends {
        h.abort();
    }

    let (mut duplicates, mut out_of_order, mut gaps, mut drops, mut stored_twice) = (0, 0, 0, 0, 0);
    let mut back_s: f64 = 0.0;
    let mut anomalies = Vec::new();
    let fault_began = fault.as_ref().map(|f| f.0);
    for (client, s) in shared.seen.iter().enumerate() {
        let s = s.lock().unwrap();
        duplicates += s.duplicates;
        stored_twice += s.stored_twice;
        out_of_order += s.out_of_order;
        gaps += s.gaps;
        drops += s.drops;
        anomalies.extend(s.anomalies.iter().map(|a| format!("client {client}: {a}")));
        // A return counts from the loss it ended; the longest over the run is when every client was back.
        for &(at, away) in &s.returns {
            if fault_began.is_some_and(|f| at >= f) {
                back_s = back_s.max(away);
            }
        }
    }
    let losses: Vec<String> = shared
        .losses
        .lock()
        .unwrap()
        .iter()
        .take(100)
        .map(|(at, client, connection, why)| {
            let t = at.duration_since(start).as_secs_f64();
            format!("{t:.1} s: client {client} connection {connection}: {why}")
        })
        .collect();
    let acked = shared.acked.lock().unwrap().len();
    let wrong_answers = shared.wrong_answers.load(std::sync::atomic::Ordering::Relaxed);
    // A fault command that failed (or never ran) means the scenario tested nothing.
    let fault_ok = fault.as_ref().is_none_or(|f| f.2);
    let unacked = shared.unacked.lock().unwrap().len();
    let errors = shared.errors.to_json();
    let server_errors: u64 = errors
        .as_object()
        .map(|m| m.iter().filter(|(k, _)| k.starts_with("http 5")).map(|(_, v)| v.as_u64().unwrap_or(0)).sum())
        .unwrap_or(0);
    Ok(json!({
        "scenario": "chaos",
        "users": n,
        "groups": groups.len(),
        "rate_per_s": rate,
        "seconds": seconds,
        "fault": fault.as_ref().map(|(began, ended, ok)| json!({
            "at_s": began.duration_since(start).as_secs_f64(),
            "took_s": ended.duration_since(*began).as_secs_f64(),
            "succeeded": ok,
        })),
        "sends": sent,
        "acknowledged": acked,
        "unacknowledged": unacked,
        "lost": missing,
        "duplicates_before_dedup": duplicates,
        "out_of_order": out_of_order,
        "seq_gaps": gaps,
        "disconnects": drops,
        "back_after_s": back_s,
        "slowest_send_ms": *shared.slowest_send_ms.lock().unwrap(),
        "slowest_delivery_ms": slowest_delivery_ms(&shared),
        "settled_s": settled_s,
        "http_5xx": server_errors,
        "errors": errors,
        "anomalies": anomalies,
        "losses": losses,
        "stored_twice": stored_twice,
        "wrong_answers": wrong_answers,
        "ok": missing == 0
            && unacked == 0
            && acked + unacked == sent
            && out_of_order == 0
            && gaps == 0
            && stored_twice == 0
            && wrong_answers == 0
            && fault_ok,
    }))
}

/// The longest time from a message's acknowledgement to its last recipient having it, in ms (a recipient that had
/// it before the sender's acknowledgement counts as 0).
fn slowest_delivery_ms(shared: &Shared) -> f64 {
    let acked = shared.acked.lock().unwrap();
    let mut slowest = Duration::ZERO;
    for (id, a) in acked.iter() {
        for &r in &a.recipients {
            if let Some(&got) = shared.seen[r].lock().unwrap().ids.get(id) {
                slowest = slowest.max(got.saturating_duration_since(a.at));
            }
        }
    }
    slowest.as_secs_f64() * 1000.0
}

/// (message, recipient) pairs acknowledged but not yet received.
fn missing_deliveries(shared: &Shared) -> usize {
    let acked = shared.acked.lock().unwrap();
    let mut missing = 0;
    for (id, a) in acked.iter() {
        for &r in &a.recipients {
            if !shared.seen[r].lock().unwrap().ids.contains_key(id) {
                missing += 1;
            }
        }
    }
    missing
}

/// `POST /api/messages/send` until it is acknowledged: a timeout, a refused connection or a 5xx (each counted)
/// is retried with the same `client_msg_id` after a backoff; a 4xx other than 429 is a bug and is given up.
async fn http_send(http: &reqwest::Client, url: &str, token: &str, send: Send, shared: &Shared, give_up: Instant) {
    let mut wait = Duration::from_millis(250);
    while Instant::now() < give_up {
        match http.post(url).bearer_auth(token).json(&send.body).send().await {
            Ok(r) if r.status().is_success() => match r.json::<Value>().await {
                Ok(m) => {
                    if m["client_msg_id"].as_str() != Some(send.client_msg_id.as_str()) {
                        shared.wrong_answers.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        shared.errors.add("http answer for another send");
                    } else if m["conversation_id"].as_str() != Some(send.conversation_id.as_str()) {
                        shared.wrong_answers.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        shared.errors.add("http answer in another conversation");
                    } else if let Some(mid) = m["id"].as_i64() {
                        shared.ack(&send.client_msg_id, mid, send.recipients, send.started);
                        return;
                    } else {
                        shared.errors.add("http 2xx without a message");
                    }
                }
                Err(_) => shared.errors.add("http body cut off"),
            },
            Ok(r) => {
                let status = r.status();
                let code = r.json::<Value>().await.ok().and_then(|b| b["code"].as_str().map(str::to_string));
                shared.errors.add(format!("http {} {}", status.as_u16(), code.as_deref().unwrap_or("-")));
                if status.is_client_error() && status.as_u16() != 429 {
                    return;
                }
            }
            Err(e) if e.is_timeout() => shared.errors.add("http timeout"),
            Err(_) => shared.errors.add("http connection failed"),
        }
        tokio::time::sleep(jitter(wait)).await;
        wait = (wait * 2).min(Duration::from_secs(2));
    }
}

/// One user's device: connects, reads and acks, sends what the outbox gives it, and reconnects with backoff when
/// the connection is lost or the server falls silent, until `stop`.
async fn client(
    i: usize,
    base: &str,
    token: &str,
    mut outbox: mpsc::UnboundedReceiver<Send>,
    shared: &Shared,
    stop: &mut watch::Receiver<bool>,
) {
    // Sends over the socket not yet acknowledged, by client_msg_id: resent on every new connection.
    let mut pending: BTreeMap<String, (Send, Instant)> = BTreeMap::new();
    let mut backoff = BACKOFF_FIRST;
    let mut lost_at: Option<Instant> = None;
    while !stop_requested(stop) {
        let ws = tokio::time::timeout(REQUEST_TIMEOUT, connect(base, token, "chaos", None)).await;
        let mut ws = match ws {
            Ok(Ok(ws)) => ws,
            Ok(Err(e)) => {
                let e = e.to_string();
                shared.errors.add(format!("ws connect: {}", e.chars().take(40).collect::<String>()));
                tokio::time::sleep(jitter(backoff)).await;
                backoff = (backoff * 2).min(BACKOFF_CAP);
                continue;
            }
            Err(_) => {
                shared.errors.add("ws connect: timed out");
                tokio::time::sleep(jitter(backoff)).await;
                backoff = (backoff * 2).min(BACKOFF_CAP);
                continue;
            }
        };
        backoff = BACKOFF_FIRST;
        {
            let mut seen = shared.seen[i].lock().unwrap();
            let now = Instant::now();
            seen.connection += 1;
            seen.returns.push((now, lost_at.map_or(0.0, |l| now.duration_since(l).as_secs_f64())));
        }
        let now = Instant::now();
        let resend = async {
            for (s, at) in pending.values_mut() {
                *at = now;
                ws.feed(send_frame(s)).await?;
            }
            ws.flush().await
        };
        // A stalled write is the next liveness check's to find; pending sends go again after SEND_WAIT.
        let _ = tokio::time::timeout(WRITE_TIMEOUT, resend).await;
        let ended = session(i, &mut ws, &mut outbox, &mut pending, shared, stop).await;
        if let Some(reason) = ended {
            shared.errors.add(format!("ws lost: {reason}"));
            let connection = {
                let mut seen = shared.seen[i].lock().unwrap();
                seen.drops += 1;
                seen.connection
            };
            shared.losses.lock().unwrap().push((Instant::now(), i, connection, reason));
            lost_at = Some(Instant::now());
            tokio::time::sleep(jitter(BACKOFF_FIRST)).await;
        }
    }
}

/// Writes a frame within [`WRITE_TIMEOUT`]: a peer that stopped reading must not stall the client's loop (and with
/// it the liveness check and the stop signal). `false` when the write failed or stalled.
async fn write(ws: &mut Ws, frame: Message) -> bool {
    matches!(tokio::time::timeout(WRITE_TIMEOUT, ws.send(frame)).await, Ok(Ok(())))
}

fn send_frame(s: &Send) -> Message {
    Message::Text(json!({"type": "send", "message": s.body}).to_string().into())
}

/// Serves one connection; `Some(why)` when it was lost, `None` when told to stop.
async fn session(
    i: usize,
    ws: &mut Ws,
    outbox: &mut mpsc::UnboundedReceiver<Send>,
    pending: &mut BTreeMap<String, (Send, Instant)>,
    shared: &Shared,
    stop: &mut watch::Receiver<bool>,
) -> Option<&'static str> {
    let mut last_heard = Instant::now();
    let mut pinged: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut acks = Acks::default();
    loop {
        tokio::select! {
            _ = stop.changed() => {
                let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                return None;
            }
            send = outbox.recv() => {
                let send = send?;
                let frame = send_frame(&send);
                pending.insert(send.client_msg_id.clone(), (send, Instant::now()));
                if !write(ws, frame).await {
                    return Some("write failed");
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                if let Some(p) = pinged {
                    if now.duration_since(p) > PONG_WAIT {
                        return Some("server silent");
                    }
                }
                let stale = pending.values().any(|(_, at)| now.duration_since(*at) > SEND_WAIT);
                if pinged.is_none() && (now.duration_since(last_heard) > PING_AFTER || stale) {
                    pinged = Some(now);
                    if !write(ws, Message::Text(r#"{"type":"ping"}"#.into())).await {
                        return Some("write failed");
                    }
                }
                // Unanswered sends go again (same client_msg_id: the server answers with the stored message).
                for (s, at) in pending.values_mut() {
                    if now.duration_since(*at) > SEND_WAIT {
                        *at = now;
                        if !write(ws, send_frame(s)).await {
                            return Some("write failed");
                        }
                    }
                }
            }
            frame = ws.next() => {
                let text = match frame {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | None => return Some("closed by the server"),
                    Some(Ok(_)) => { last_heard = Instant::now(); pinged = None; continue; }
                    Some(Err(_)) => return Some("socket error"),
                };
                last_heard = Instant::now();
                pinged = None;
                let Some(frame) = Incoming::parse(&text) else {
                    // An `error` frame's `message` is a string, which `Incoming` does not take.
                    let v: Value = serde_json::from_str(&text).unwrap_or_default();
                    if v["type"] == "error" {
                        shared.errors.add(format!("ws error {}", v["code"].as_str().unwrap_or("-")));
                    }
                    continue;
                };
                match frame.kind.as_ref() {
                    "ping" => {
                        if !write(ws, Message::Text(r#"{"type":"pong"}"#.into())).await {
                            return Some("write failed");
                        }
                    }
                    "error" => shared.errors.add(format!("ws error {}", frame.code.as_deref().unwrap_or("-"))),
                    "sent" => {
                        if let Some(m) = &frame.message {
                            let v: Value = serde_json::from_str(&text).unwrap_or_default();
                            if let Some(cmid) = v["client_msg_id"].as_str() {
                                if let Some((s, _)) = pending.remove(cmid) {
                                    let body_conversation = &s.conversation_id;
                                    if m.client_msg_id.as_deref() != Some(cmid) || m.conversation_id != *body_conversation {
                                        shared.wrong_answers.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                    } else {
                                        shared.ack(cmid, m.id, s.recipients, s.started);
                                    }
                                }
                            }
                            let mut seen = shared.seen[i].lock().unwrap();
                            seen.check_send_once(m.id, m.from_user_id, m.client_msg_id.as_deref());
                            seen.receive(m.id, &m.conversation_id, m.seq, "sent");
                            acks.add(&m.conversation_id, m.seq);
                        }
                    }
                    _ => {
                        let kind = if frame.kind == "sync" { "sync" } else { "message" };
                        let messages = frame.into_messages();
                        let mut seen = shared.seen[i].lock().unwrap();
                        for m in &messages {
                            seen.check_send_once(m.id, m.from_user_id, m.client_msg_id.as_deref());
                            seen.receive(m.id, &m.conversation_id, m.seq, kind);
                            acks.add(&m.conversation_id, m.seq);
                        }
                    }
                }
                if tokio::time::timeout(WRITE_TIMEOUT, acks.flush(ws)).await.is_err() {
                    return Some("write stalled");
                }
            }
        }
    }
}

fn stop_requested(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow()
}

#[cfg(test)]
mod tests {
    use super::Seen;

    #[test]
    fn a_sent_reply_ahead_of_the_stream_is_neither_out_of_order_nor_a_gap() {
        let mut seen = Seen::default();
        seen.receive(1, "d:1:2", 1, "sync");
        // Own message 3 answered at once; the peer's 2 arrives after it, then the echo of 3 from a catch-up.
        seen.receive(3, "d:1:2", 3, "sent");
        seen.receive(2, "d:1:2", 2, "message");
        seen.receive(4, "d:1:2", 4, "message");
        seen.receive(3, "d:1:2", 3, "sync");
        assert_eq!((seen.out_of_order, seen.gaps, seen.duplicates), (0, 0, 1));
        // A stream that skips a seq nobody gave is a gap; one that goes back with a new message is out of order.
        seen.receive(6, "d:1:2", 6, "message");
        seen.receive(5, "d:1:2", 5, "message");
        assert_eq!((seen.out_of_order, seen.gaps), (1, 1));
        assert_eq!(seen.anomalies.len(), 2, "{:?}", seen.anomalies);
    }

    #[test]
    fn a_redelivered_message_that_jumps_over_a_missing_one_is_a_gap() {
        let mut seen = Seen::default();
        for seq in 1..=3 {
            seen.receive(10 + seq, "d:1:2", seq, "message");
        }
        // Own 5 answered as `sent`; the stream then brings 5 (a duplicate) and 6, and never 4.
        seen.receive(15, "d:1:2", 5, "sent");
        seen.receive(15, "d:1:2", 5, "message");
        seen.receive(16, "d:1:2", 6, "message");
        assert_eq!(seen.gaps, 1, "{:?}", seen.anomalies);
    }

    #[test]
    fn one_send_stored_as_two_messages_is_caught() {
        let mut seen = Seen::default();
        seen.check_send_once(20, 7, Some("c-1"));
        seen.check_send_once(20, 7, Some("c-1"));
        seen.check_send_once(21, 8, Some("c-1"));
        assert_eq!(seen.stored_twice, 0, "another sender may use the same client_msg_id");
        seen.check_send_once(22, 7, Some("c-1"));
        assert_eq!(seen.stored_twice, 1);
    }

    #[test]
    fn redelivery_after_a_reconnect_counts_as_duplicates_only() {
        let mut seen = Seen::default();
        for seq in 1..=5 {
            seen.receive(100 + seq, "g:7", seq, "message");
        }
        for seq in 3..=6 {
            seen.receive(100 + seq, "g:7", seq, "sync");
        }
        assert_eq!((seen.duplicates, seen.out_of_order, seen.gaps), (3, 0, 0));
    }
}
