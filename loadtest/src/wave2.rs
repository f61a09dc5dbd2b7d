//! Scenarios of catching up and reading: `catchup` (a device away while messages arrived across many
//! conversations reconnects, summary-first and the full flow) and `group-reads` (every member of a large group
//! reads every message: the receipt frames that causes and the server's CPU per message).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use super::{run_id, Acks, Api, Incoming, Samples};

type Stream = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a socket with extra query parameters and waits for its `hello`.
async fn open(base: &str, token: &str, device: &str, query: &str) -> anyhow::Result<Stream> {
    let url = format!("{}{query}", gochat_client::ws_url(base, token, device));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) if t.contains("\"hello\"") => Ok(ws),
        other => bail!("no hello: {other:?}"),
    }
}

/// The next text frame within 60 s.
async fn next_text(ws: &mut Stream) -> anyhow::Result<String> {
    loop {
        match tokio::time::timeout(Duration::from_secs(60), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Ok(t.to_string()),
            Ok(Some(Ok(_))) => continue,
            other => bail!("socket ended: {other:?}"),
        }
    }
}

/// CPU seconds (user + system) the processes used so far, from `/proc/<pid>/stat`.
fn cpu_seconds(pids: &[u32]) -> Option<f64> {
    let ticks = 100.0; // USER_HZ on Linux
    let mut total = 0.0;
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        total += (fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?) / ticks;
    }
    Some(total)
}

/// `catchup`: one user with `conversations` friends; their device `phone` is away while the friends send
/// `messages` in all. Then fresh devices reconnect `rounds` times each way: summary-first (time to the
/// `summary`, and to the last tail) and the full §4 flow acking each batch as a client does (time to every
/// message).
pub async fn catchup(
    api: &Arc<Api>,
    conversations: usize,
    messages: usize,
    tail: usize,
    rounds: usize,
) -> anyhow::Result<Value> {
    let id = run_id();
    let me = api.user(0, &format!("{id}me")).await?;
    let friends = api.users(&format!("{id}f"), conversations).await?;
    api.befriend_all(friends.iter().map(|f| (&me, f)).collect()).await?;
    let per = messages / conversations;
    let started = Instant::now();
    futures_util::stream::iter((0..per).flat_map(|k| friends.iter().cloned().map(move |f| (k, f))))
        .map(|(k, f)| {
            let (api, to) = (api.clone(), me.0);
            async move {
                let body = json!({"to_user_id": to, "type": "text", "text": format!("message {k} 消息")});
                api.post(0, "/api/messages/send", Some(&f.1), body).await
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?;
    let sent_seconds = started.elapsed().as_secs_f64();
    let total = per * conversations;
    let base = &api.urls[0];

    let (mut to_summary, mut to_tails, mut tails_count) = (Samples::default(), Samples::default(), 0);
    for r in 0..rounds {
        let t = Instant::now();
        let mut ws = open(base, &me.1, &format!("summary{r}"), &format!("&sync=summary&tail={tail}")).await?;
        loop {
            let text = next_text(&mut ws).await?;
            if text.contains(r#""type":"summary""#) {
                to_summary.0.push(t.elapsed().as_micros() as u64);
                break;
            }
        }
        let mut got = 0;
        loop {
            let text = next_text(&mut ws).await?;
            let Some(frame) = Incoming::parse(&text) else { continue };
            if frame.kind != "sync" {
                continue;
            }
            let more = text.contains(r#""more":true"#);
            got += frame.into_messages().len();
            if !more {
                break;
            }
        }
        to_tails.0.push(t.elapsed().as_micros() as u64);
        tails_count = got;
        let _ = ws.close(None).await;
    }

    let mut to_all = Samples::default();
    for r in 0..rounds {
        let t = Instant::now();
        let mut ws = open(base, &me.1, &format!("full{r}"), "").await?;
        let mut seen = std::collections::HashSet::new();
        let mut acks = Acks::default();
        while seen.len() < total {
            let text = next_text(&mut ws).await?;
            let Some(frame) = Incoming::parse(&text) else { continue };
            for m in frame.into_messages() {
                acks.add(&m.conversation_id, m.seq);
                seen.insert(m.id);
            }
            for (c, seq) in acks.0.drain(..) {
                ws.feed(super::ack_frame(&c, seq)).await?;
            }
            ws.flush().await?;
        }
        to_all.0.push(t.elapsed().as_micros() as u64);
        let _ = ws.close(None).await;
    }
    Ok(json!({
        "scenario": "catchup", "conversations": conversations, "messages": total, "tail": tail, "rounds": rounds,
        "send_seconds": sent_seconds, "tail_messages": tails_count,
        "summary_to_summary": to_summary.summary(), "summary_to_all_tails": to_tails.summary(),
        "full_flow_to_everything": to_all.summary(),
    }))
}

/// `group-reads`: a group of `members`, all online; the owner sends `messages`, and every other member marks
/// each one read (`POST /api/messages/read`) as it arrives. Counts every frame the members' sockets receive by
/// type, and the server's CPU per message and per read.
pub async fn group_reads(api: &Arc<Api>, members: usize, messages: usize, pids: &[u32]) -> anyhow::Result<Value> {
    let id = run_id();
    let users = api.users(&format!("{id}r"), members).await?;
    futures_util::stream::iter(1..members)
        .map(|i| {
            let (api, a, b) = (api.clone(), users[0].clone(), users[i].clone());
            async move { api.befriend(&a, &b).await }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?;
    let ids: Vec<i64> = users[1..].iter().map(|u| u.0).collect();
    let g = api.post(0, "/api/groups", Some(&users[0].1), json!({"name": "reads", "member_ids": ids})).await?;
    let gid = g["id"].as_i64().context("group id")?;
    let conv = format!("g:{gid}");
    let frames: Arc<std::sync::Mutex<BTreeMap<String, u64>>> = Arc::default();
    let reads = Arc::new(AtomicU64::new(0));
    let read_errors = Arc::new(AtomicU64::new(0));
    let n = api.urls.len();
    let mut sockets = Vec::new();
    for (i, u) in users.iter().enumerate() {
        sockets.push(open(&api.urls[i % n], &u.1, "bench", "").await?);
    }
    // Let what connecting set off settle (catch-up, presence), then count from zero.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu_before = cpu_seconds(pids);
    let started = Instant::now();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for (i, mut ws) in sockets.into_iter().enumerate() {
        let (api, token, conv) = (api.clone(), users[i].1.clone(), conv.clone());
        let (frames, reads, read_errors, mut stopped) =
            (frames.clone(), reads.clone(), read_errors.clone(), stopped.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine: BTreeMap<String, u64> = BTreeMap::new();
            let mut acks = Acks::default();
            loop {
                tokio::select! {
                    _ = stopped.changed() => break,
                    frame = ws.next() => {
                        let Some(Ok(Message::Text(t))) = frame else { if frame.is_none() { break } else { continue } };
                        let Some(f) = Incoming::parse(&t) else { continue };
                        *mine.entry(f.kind.to_string()).or_default() += 1;
                        let mut last = None;
                        for m in f.into_messages() {
                            acks.add(&m.conversation_id, m.seq);
                            last = Some(m.seq);
                        }
                        acks.flush(&mut ws).await;
                        // Every member but the sender reads what arrived, as a client showing the chat does.
                        if let (Some(seq), true) = (last, i > 0) {
                            let body = json!({"conversation_id": conv, "seq": seq});
                            match api.node(i).call(reqwest::Method::POST, "/api/messages/read", Some(&token), Some(body)).await {
                                Ok(r) if r.status.is_success() => { reads.fetch_add(1, Ordering::Relaxed); }
                                _ => { read_errors.fetch_add(1, Ordering::Relaxed); }
                            }
                        }
                    }
                }
            }
            let mut all = frames.lock().unwrap();
            for (k, v) in mine {
                *all.entry(k).or_default() += v;
            }
        }));
    }
    for k in 0..messages {
        let body = json!({"group_id": gid, "type": "text", "text": format!("read me {k}")});
        api.post(0, "/api/messages/send", Some(&users[0].1), body).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Until every read is in and the debounce window has passed.
    let expected = ((members - 1) * messages) as u64;
    let deadline = Instant::now() + Duration::from_secs(300);
    while reads.load(Ordering::Relaxed) + read_errors.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pids).zip(cpu_before).map(|(a, b)| a - b);
    let _ = stop.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let frames = frames.lock().unwrap().clone();
    let total: u64 = frames.values().sum();
    let reads = reads.load(Ordering::Relaxed);
    Ok(json!({
        "scenario": "group-reads", "members": members, "messages": messages, "reads": reads,
        "read_errors": read_errors.load(Ordering::Relaxed), "seconds": elapsed,
        "frames_by_type": frames, "frames": total, "frames_per_read": total as f64 / reads.max(1) as f64,
        "receipt_frames_per_read": frames.get("receipt").copied().unwrap_or(0) as f64 / reads.max(1) as f64,
        "frames_per_second": total as f64 / elapsed,
        "server_cpu_seconds": cpu, "server_cpu_ms_per_message": cpu.map(|c| c * 1000.0 / messages as f64),
        "server_cpu_ms_per_read": cpu.map(|c| c * 1000.0 / reads.max(1) as f64),
    }))
}
