//! One WebSocket connection: a single task that reads client frames, drains the socket's bounded queue (a burst
//! of deliveries goes out in one write, see [`FLUSH_INTERVAL`]), keeps the heartbeat, and catches the device up
//! from its cursors.
//!
//! Ordering and completeness per conversation rest on `seq`: the session remembers the highest seq written to
//! this socket (`sent`); a live message is written only if it is the next one, skipped if already written, and
//! otherwise held for up to [`GAP_GRACE`] while the missing ones arrive (two senders' publishes can overtake each
//! other); a gap still open after that (a lost publish) makes the session catch up from the inbox. Catch-up
//! goes out as `sync` batches of at most [`SYNC_BATCH`]; while more remain, the next batch waits for the client's
//! acks of the last one.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use poem::web::websocket::{CloseCode, Message as WsMessage, WebSocketStream};
use tokio::time::{timeout, Instant};

use super::catchup::{self, CatchUpWindow};
use super::gateway::MAX_FRAME;
use super::hub::{Delivery, Outbound, Registration, Revoked};
use super::ordering::{Offer, SeqOrdering};
use crate::domain::frame::{BadFrame, ClientFrame, ServerFrame};
use crate::domain::model::Message;
use crate::domain::ConversationId;
use crate::error::{AppError, ErrorCode};
use crate::service::auth::Principal;
use crate::state::AppState;

/// Most messages in one `sync` frame.
pub const SYNC_BATCH: usize = 100;
// A summary's tail of one conversation fits in one `sync` batch.
const _: () = assert!(crate::service::messaging::MAX_TAIL as usize <= SYNC_BATCH);
/// A socket that cannot take a frame for this long is given up on (its client stopped reading).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a live message that arrived ahead of its turn waits for the ones before it. Publishes of concurrent
/// sends to one conversation overtake each other by well under a millisecond; a gap still open after this is a
/// lost publish and is filled from the inbox.
const GAP_GRACE: Duration = Duration::from_millis(50);
/// Most queued frames written before one flush (a full batch is flushed without waiting for [`FLUSH_INTERVAL`]):
/// enough to turn a burst into a few writes, few enough that a long queue still lets the session read its
/// socket in between.
const WRITE_BATCH: usize = 32;
/// Most live messages held back waiting for a gap (all conversations): beyond this, catching up is cheaper.
const MAX_EARLY: usize = 64;
/// Shortest time between two writes of queued deliveries to one socket: after such a write, the socket's queue
/// is left alone for this long, and what arrived meanwhile goes out in one write. A socket that was quiet for
/// longer gets its next frame at once, so this only shapes bursts. One write per frame was most of a node's CPU
/// under fan-out (the loopback `sendto` most of all), and the client reads and acks per write, so coalescing cuts its
/// reads, its acks and the delivered-cursor writes behind them too; leaving the queue alone meanwhile also spares
/// the session a wake-up per delivery. Replies (`sent`, `pong`, …) are written at once and start no interval.
///
/// 5 ms keeps a busy 1:1 chat's latency low; twice that doubled its p99 (README, "Measurements behind the
/// tunables").
const FLUSH_INTERVAL: Duration = Duration::from_millis(5);
/// The interval after a write that carried group messages. A group message is one write per member, so this is
/// where coalescing pays: at [`FLUSH_INTERVAL`] a busy large group put a couple of messages in a write and the
/// machine ran out of CPU; 20 ms puts several in a write at about half the cost per delivery (README,
/// "Measurements behind the tunables"). It adds at most 20 ms to a busy group's latency, and nothing to a quiet
/// one's.
const GROUP_FLUSH_INTERVAL: Duration = Duration::from_millis(20);

struct Session {
    /// One pointer: the state is shared, not copied (a copy of its parts was ~800 bytes per idle socket).
    state: AppState,
    user_id: i64,
    device: String,
    /// Each conversation's live messages in seq order, once each (see [`SeqOrdering`]).
    ordering: SeqOrdering<Arc<Delivery>>,
    /// The device's acks and the `sync` batch awaiting them.
    window: CatchUpWindow,
    /// Something may be missing: compare with the store and catch up.
    behind: bool,
    /// Answer the next catch-up with a `sync` frame even when nothing is missing (after `hello` or `sync {}`).
    must_answer: bool,
    /// The device asked for summary-first catch-up (`/ws?sync=summary`, DESIGN.md §12) with this tail: the first
    /// catch-up sends a `summary` and each changed conversation's tail instead of everything.
    summary_tail: Option<i64>,
    /// Per conversation whose tail skipped older messages: the seq the tail began after. An on-demand `sync
    /// {conversation_id, after_seq}` fills up to there, so the pages and the tail neither overlap nor leave a gap.
    holes: std::collections::HashMap<String, i64>,
    /// Queued deliveries were written less than [`FLUSH_INTERVAL`] ago: the queue waits until this instant.
    quiet_until: Option<Instant>,
    /// When the token the socket was opened with expires: the socket closes then ([`CLOSE_TOKEN_EXPIRED`]).
    token_expiry: Instant,
    /// The client's frame budget (`GOCHAT_WS_FRAME_RATE` a second, twice that in a burst); frames beyond it are
    /// answered `error {code: rate_limited}` and dropped.
    frames: governor::DefaultDirectRateLimiter,
}

fn frame_limiter(per_sec: u32) -> governor::DefaultDirectRateLimiter {
    let rate = std::num::NonZeroU32::new(per_sec.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
    let burst = rate.saturating_mul(std::num::NonZeroU32::new(2).unwrap_or(std::num::NonZeroU32::MIN));
    governor::RateLimiter::direct(governor::Quota::per_second(rate).allow_burst(burst))
}

/// Longest wait for a token's expiry a timer is set for (a year; tokens live days).
const MAX_TOKEN_WAIT: Duration = Duration::from_secs(365 * 86400);

enum Flow {
    Continue,
    Close(CloseCode, &'static str),
}

/// Close code of a socket whose token expired: the client refreshes it (`POST /api/user/token`) or logs in, and
/// reconnects. (4000–4999 are the application's own codes, RFC 6455 §7.4.2.)
pub const CLOSE_TOKEN_EXPIRED: u16 = 4401;
/// Close code of a socket whose token was revoked (a password change): the client must log in again.
pub const CLOSE_TOKEN_REVOKED: u16 = 4403;

/// Tells presence that a socket of `user_id` opened or closed here, off the socket's path (nothing waits for it:
/// `hello` goes out at once). Presence reads the hub when it gets to it, so the last change wins whatever the
/// order the tasks run in.
fn presence_changed(state: &AppState, user_id: i64) {
    let (presence, hub) = (state.presence.clone(), state.hub.clone());
    state.tasks.spawn(async move { presence.changed(user_id, || hub.has_user(user_id)).await });
}

/// How a socket catches its device up after `hello`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUpMode {
    /// Everything missed, in flow-controlled `sync` batches (DESIGN.md §4).
    Full,
    /// A `summary`, then the newest `tail` seqs of each changed conversation (DESIGN.md §12).
    Summary { tail: i64 },
}

pub async fn run(
    state: AppState,
    principal: Principal,
    device: String,
    mode: CatchUpMode,
    mut socket: WebSocketStream,
) {
    let user_id = principal.user_id;
    let mut registration = state.hub.register(user_id, principal.token_version);
    // Live before catching up: anything published from here on reaches the queue, anything before is stored.
    state.bus.subscribe(user_id).await;
    presence_changed(&state, user_id);
    let mut session = Session {
        state: state.clone(),
        user_id,
        device,
        ordering: SeqOrdering::new(MAX_EARLY, GAP_GRACE),
        window: CatchUpWindow::default(),
        behind: true,
        must_answer: true,
        summary_tail: match mode {
            CatchUpMode::Full => None,
            CatchUpMode::Summary { tail } => Some(tail),
        },
        holes: Default::default(),
        quiet_until: None,
        frames: frame_limiter(state.config.ws_frame_rate_per_sec),
        token_expiry: Instant::now()
            + (principal.expires_at - chrono::Utc::now()).to_std().unwrap_or(Duration::ZERO).min(MAX_TOKEN_WAIT),
    };
    let close = session.serve(&mut socket, &mut registration).await;
    if let Some((code, reason)) = close {
        let _ = timeout(Duration::from_secs(1), socket.send(WsMessage::Close(Some((code, reason.to_string()))))).await;
    }
    let _ = timeout(Duration::from_secs(1), socket.close()).await;
    drop(registration);
    if !state.hub.has_user(user_id) {
        state.bus.release(user_id);
        presence_changed(&state, user_id);
    }
}

impl Session {
    async fn serve(
        &mut self,
        socket: &mut WebSocketStream,
        reg: &mut Registration,
    ) -> Option<(CloseCode, &'static str)> {
        let heartbeat = self.state.config.heartbeat;
        let idle = self.state.config.idle_timeout;
        let hello = ServerFrame::Hello {
            user_id: self.user_id,
            heartbeat_secs: heartbeat.as_secs().max(1),
            device_id: self.device.clone(),
        };
        if self.write(socket, hello.to_json()).await.is_err() {
            return None;
        }
        match self.state.messaging.cursors(self.user_id, &self.device).await {
            Ok(c) => {
                self.ordering.reset_to(c.clone());
                self.window = CatchUpWindow::new(c);
            }
            Err(e) => {
                tracing::error!(error = %e, "loading device cursors");
                return Some((CloseCode::Error, "try again"));
            }
        }
        // What the user deleted for themselves on other devices while this one was away.
        match self.state.messaging.hides_for_device(self.user_id, &self.device).await {
            Ok(frames) => {
                for f in frames {
                    if self.write(socket, f.to_json()).await.is_err() {
                        return None;
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "loading the device's hides");
                return Some((CloseCode::Error, "try again"));
            }
        }
        let shutdown = self.state.shutdown_signal();
        let mut ticker = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
        let mut idle_deadline = Instant::now() + idle;
        loop {
            if self.behind && self.window.is_open() {
                // Boxed (here and for client frames below): the store and service futures inside are large, and
                // held inline they would make every idle socket's task carry their space.
                if let Err(()) = Box::pin(self.catch_up(socket)).await {
                    return None;
                }
            }
            let gap_deadline = self.ordering.gap_deadline();
            let gap_at = gap_deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            let quiet_end = self.quiet_until.unwrap_or(gap_at);
            let flow = tokio::select! {
                _ = shutdown.cancelled() => Flow::Close(CloseCode::Restart, "server restart"),
                _ = tokio::time::sleep_until(gap_at), if gap_deadline.is_some() => {
                    self.behind = true;
                    Flow::Continue
                }
                _ = tokio::time::sleep_until(quiet_end), if self.quiet_until.is_some() => {
                    self.quiet_until = None;
                    match self.take_queued(socket, reg, None).await {
                        Ok(()) => Flow::Continue,
                        Err(()) => return None,
                    }
                }
                _ = reg.evicted.notified() => Flow::Close(CloseCode::Again, "slow consumer"),
                _ = reg.token_revoked.notified() => Flow::Close(CLOSE_TOKEN_REVOKED.into(), "token revoked"),
                _ = tokio::time::sleep_until(self.token_expiry) => {
                    Flow::Close(CLOSE_TOKEN_EXPIRED.into(), "token expired")
                }
                _ = tokio::time::sleep_until(idle_deadline) => Flow::Close(CloseCode::Away, "idle timeout"),
                // Both heartbeats in one flush: the WebSocket Ping (answered by the client's stack, even a
                // browser's) and the app-level `ping` its code can see.
                _ = ticker.tick() => {
                    let beat = async {
                        socket.feed(WsMessage::Ping(Vec::new())).await?;
                        socket.feed(WsMessage::Text(ServerFrame::Ping {}.to_json())).await?;
                        socket.flush().await
                    };
                    match timeout(WRITE_TIMEOUT, beat).await {
                        Ok(Ok(())) => Flow::Continue,
                        _ => return None,
                    }
                }
                // Not polled in the quiet interval after a write: deliveries arriving meanwhile wait in the queue
                // without waking this task, and go out together when it ends.
                out = reg.rx.recv(), if self.quiet_until.is_none() => match out {
                    Some(first) => match self.take_queued(socket, reg, Some(first)).await {
                        Ok(()) => Flow::Continue,
                        Err(()) => return None,
                    },
                    None => return None,
                },
                incoming = socket.next() => {
                    idle_deadline = Instant::now() + idle;
                    match incoming {
                        Some(Ok(WsMessage::Text(text))) => Box::pin(self.on_text(socket, &text)).await,
                        Some(Ok(WsMessage::Binary(_))) => {
                            self.error(socket, ErrorCode::BinaryNotSupported, "send JSON text frames").await
                        }
                        Some(Ok(WsMessage::Close(_))) | None => return None,
                        Some(Ok(_)) => Flow::Continue,
                        Some(Err(e)) => {
                            // The frame limit is the only read error a client can cause on purpose.
                            let too_big = e.to_string().to_ascii_lowercase().contains("too long")
                                || e.to_string().to_ascii_lowercase().contains("size");
                            if too_big {
                                Flow::Close(CloseCode::Size, "frame too large (max 64 KiB)")
                            } else {
                                return None;
                            }
                        }
                    }
                }
            };
            if let Flow::Close(code, reason) = flow {
                return Some((code, reason));
            }
        }
    }

    /// Writes a frame at once (a reply: `hello`, `sync`, `sent`, `pong`, `error`). It does not start a quiet
    /// interval: a device that keeps sending must still get its queued deliveries.
    async fn write(&mut self, socket: &mut WebSocketStream, text: String) -> Result<(), ()> {
        match timeout(WRITE_TIMEOUT, socket.send(WsMessage::Text(text))).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(()),
        }
    }

    /// Writes `first` and whatever else is queued (at most [`WRITE_BATCH`] frames) in one write, then leaves the
    /// queue alone for [`FLUSH_INTERVAL`] ([`GROUP_FLUSH_INTERVAL`] when the write carried group messages).
    async fn take_queued(
        &mut self,
        socket: &mut WebSocketStream,
        reg: &mut Registration,
        first: Option<Outbound>,
    ) -> Result<(), ()> {
        let mut next = first.or_else(|| reg.rx.try_recv().ok());
        let (mut taken, mut group) = (0, false);
        while let Some(out) = next.take() {
            match out {
                Outbound::Deliver(d) => {
                    group |= d.group_id.is_some();
                    self.deliver(socket, &d, &reg.revoked).await?
                }
                Outbound::Resync => self.behind = true,
            }
            taken += 1;
            if taken < WRITE_BATCH {
                next = reg.rx.try_recv().ok();
            }
        }
        if taken == 0 {
            return Ok(());
        }
        match timeout(WRITE_TIMEOUT, socket.flush()).await {
            Ok(Ok(())) => {}
            _ => return Err(()),
        }
        // A full batch starts no interval: more may be waiting.
        if taken < WRITE_BATCH {
            let interval = if group { GROUP_FLUSH_INTERVAL } else { FLUSH_INTERVAL };
            self.quiet_until = Some(Instant::now() + interval);
        }
        Ok(())
    }

    /// Queues a frame in the socket's write buffer; [`Session::deliver`]'s caller flushes.
    async fn feed(&mut self, socket: &mut WebSocketStream, text: String) -> Result<(), ()> {
        match timeout(WRITE_TIMEOUT, socket.feed(WsMessage::Text(text))).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(()),
        }
    }

    /// Answers a client frame with an `error` frame, logged like an HTTP error reply (server faults are logged
    /// with their cause by [`Session::app_error`]).
    async fn error(&mut self, socket: &mut WebSocketStream, code: ErrorCode, message: &str) -> Flow {
        if code == ErrorCode::RateLimited {
            tracing::debug!(user_id = self.user_id, device = %self.device, %code, "websocket frame refused");
        } else {
            tracing::info!(user_id = self.user_id, device = %self.device, %code, message, "websocket frame refused");
        }
        match self.write(socket, ServerFrame::error(code, message).to_json()).await {
            Ok(()) => Flow::Continue,
            Err(()) => Flow::Close(CloseCode::Error, "write failed"),
        }
    }

    async fn app_error(&mut self, socket: &mut WebSocketStream, e: AppError) -> Flow {
        if e.code() == ErrorCode::Unavailable {
            tracing::warn!(user_id = self.user_id, error = %e, "websocket request refused");
        } else if e.status().is_server_error() {
            tracing::error!(user_id = self.user_id, error = %e, "websocket request failed");
        }
        let msg = e.message().to_string();
        self.error(socket, e.code(), &msg).await
    }

    fn observe(&self, path: &str, messages: &[&chrono::DateTime<chrono::Utc>]) {
        let m = &self.state.metrics;
        let now = chrono::Utc::now();
        m.deliveries.with_label_values(&[path]).inc_by(messages.len() as u64);
        for at in messages {
            m.delivery_latency.observe((now - **at).num_microseconds().unwrap_or(0).max(0) as f64 / 1e6);
        }
    }

    /// Writes (without flushing) a queued delivery; a `message` goes out only as the next seq of its conversation
    /// (one that arrives early waits in the reorder buffer), and a group message only while the group is not
    /// revoked for this user.
    async fn deliver(&mut self, socket: &mut WebSocketStream, d: &Arc<Delivery>, revoked: &Revoked) -> Result<(), ()> {
        let is_revoked =
            |d: &Delivery| d.group_id.is_some_and(|g| revoked.lock().unwrap_or_else(|e| e.into_inner()).contains(&g));
        if is_revoked(d) {
            return Ok(());
        }
        let Some(meta) = &d.message else {
            return self.feed(socket, d.json.to_string()).await;
        };
        match self.ordering.offer(&meta.conversation_id, meta.seq, d.clone(), Instant::now(), |d| !is_revoked(d)) {
            Offer::Write { now, released } => {
                for next in now.into_iter().chain(released) {
                    self.feed(socket, next.json.to_string()).await?;
                    if let Some(m) = &next.message {
                        self.observe("live", &[&m.created_at]);
                    }
                }
            }
            Offer::CatchUp => self.behind = true,
            Offer::Duplicate | Offer::Buffered => {}
        }
        Ok(())
    }

    /// Summary-first catch-up (DESIGN.md §12): the changed conversations' heads, then their tails as `sync`
    /// batches (the last with `more: false`) written without waiting for acks, since they are bounded by `tail`
    /// per conversation. Live messages continue after each tail; what lies before a tail the device asks for.
    async fn summary_catch_up(&mut self, socket: &mut WebSocketStream, tail: i64) -> Result<(), ()> {
        self.ordering.clear_pending();
        let user = self.user_id;
        let summary = {
            let ordering = &self.ordering;
            self.state.messaging.summary(user, |c| ordering.written(c), tail).await
        };
        let (conversations, wants) = match summary {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "summary catch-up failed");
                self.summary_tail = Some(tail);
                let flow = self.app_error(socket, e).await;
                return if matches!(flow, Flow::Continue) { Ok(()) } else { Err(()) };
            }
        };
        self.behind = false;
        self.must_answer = false;
        self.write(socket, ServerFrame::Summary { conversations }.to_json()).await?;
        // Several tails per batch while their seqs fit in one (a tail is at most MAX_TAIL <= SYNC_BATCH seqs).
        let mut batches: Vec<Vec<crate::inbox::Want>> = Vec::new();
        let mut span = 0;
        for want in wants {
            let n = (want.upto - want.after) as usize;
            match batches.last_mut() {
                Some(batch) if span + n <= SYNC_BATCH => batch.push(want),
                _ => {
                    batches.push(vec![want]);
                    span = 0;
                }
            }
            span += n;
        }
        if batches.is_empty() {
            return self
                .write(socket, ServerFrame::Sync { conversation_id: None, messages: Vec::new(), more: false }.to_json())
                .await;
        }
        let count = batches.len();
        for (i, batch) in batches.into_iter().enumerate() {
            let messages = match self.state.messaging.catch_up(user, &batch, SYNC_BATCH).await {
                Ok(m) => m,
                Err(e) => {
                    // What was not sent stays behind the cursors: the full flow picks it up.
                    self.behind = true;
                    let flow = self.app_error(socket, e).await;
                    return if matches!(flow, Flow::Continue) { Ok(()) } else { Err(()) };
                }
            };
            for want in &batch {
                if want.after > self.ordering.written(&want.conversation_id) {
                    self.holes.insert(want.conversation_id.clone(), want.after);
                }
                self.ordering.caught_up_to(&want.conversation_id, want.upto);
            }
            let times: Vec<chrono::DateTime<chrono::Utc>> = messages.iter().map(|m| m.created_at).collect();
            let more = i + 1 < count;
            self.write(socket, ServerFrame::Sync { conversation_id: None, messages, more }.to_json()).await?;
            self.observe("sync", &times.iter().collect::<Vec<_>>());
        }
        Ok(())
    }

    /// Answers `sync {conversation_id, after_seq}`: one page of the conversation after `after_seq`, up to where
    /// this socket's tail of it began, or else up to what the socket was sent.
    async fn sync_page(&mut self, socket: &mut WebSocketStream, conversation_id: String, after_seq: i64) -> Flow {
        let upto = match self.holes.get(&conversation_id) {
            Some(&hole) if after_seq < hole => hole,
            _ => self.ordering.written(&conversation_id),
        };
        match self.state.messaging.page(self.user_id, &conversation_id, after_seq, upto, SYNC_BATCH).await {
            Ok(page) => {
                let frame = ServerFrame::Sync {
                    conversation_id: Some(conversation_id),
                    messages: page.messages,
                    more: page.more,
                };
                match self.write(socket, frame.to_json()).await {
                    Ok(()) => Flow::Continue,
                    Err(()) => Flow::Close(CloseCode::Error, "write failed"),
                }
            }
            Err(e) => self.app_error(socket, e).await,
        }
    }

    /// Sends the next batch of what the device is missing, by the store's conversation heads.
    async fn catch_up(&mut self, socket: &mut WebSocketStream) -> Result<(), ()> {
        if let Some(tail) = self.summary_tail.take() {
            return self.summary_catch_up(socket, tail).await;
        }
        // Whatever was held back is read again from the inbox with the rest.
        self.ordering.clear_pending();
        let heads = match self.state.messaging.heads(self.user_id).await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "catch-up failed");
                self.behind = false;
                let flow = self.app_error(socket, e).await;
                return if matches!(flow, Flow::Continue) { Ok(()) } else { Err(()) };
            }
        };
        let (wants, missing) = catchup::plan(heads, |c| self.ordering.written(c));
        let wants = catchup::batch_wants(wants, SYNC_BATCH);
        let messages: Vec<Message> = if wants.is_empty() {
            Vec::new()
        } else {
            match self.state.messaging.catch_up(self.user_id, &wants, SYNC_BATCH).await {
                Ok(m) => m,
                Err(e) => {
                    self.behind = false;
                    let flow = self.app_error(socket, e).await;
                    return if matches!(flow, Flow::Continue) { Ok(()) } else { Err(()) };
                }
            }
        };
        self.behind = false;
        if messages.is_empty() && !self.must_answer {
            return Ok(());
        }
        self.must_answer = false;
        let more = (messages.len() as i64) < missing;
        let batch_heads = catchup::batch_heads(messages.iter().map(|m| (&*m.conversation_id, m.seq)));
        for (c, s) in &batch_heads {
            self.ordering.caught_up_to(c, *s);
        }
        let times: Vec<chrono::DateTime<chrono::Utc>> = messages.iter().map(|m| m.created_at).collect();
        self.write(socket, ServerFrame::Sync { conversation_id: None, messages, more }.to_json()).await?;
        self.observe("sync", &times.iter().collect::<Vec<_>>());
        self.behind |= more;
        self.window.sent_batch(batch_heads, more);
        Ok(())
    }

    async fn on_text(&mut self, socket: &mut WebSocketStream, text: &str) -> Flow {
        if text.len() > MAX_FRAME {
            // Read whole (up to the transport's larger limit) so the close is clean, not a reset.
            return Flow::Close(CloseCode::Size, "frame too large (max 64 KiB)");
        }
        if self.frames.check().is_err() {
            return self.error(socket, ErrorCode::RateLimited, "too many frames; slow down").await;
        }
        let frame = match ClientFrame::parse(text) {
            Ok(f) => f,
            Err(BadFrame { code, message }) => return self.error(socket, code, &message).await,
        };
        match frame {
            ClientFrame::Ping {} => match self.write(socket, ServerFrame::Pong {}.to_json()).await {
                Ok(()) => Flow::Continue,
                Err(()) => Flow::Close(CloseCode::Error, "write failed"),
            },
            // Its arrival already moved the idle deadline; nothing else to do.
            ClientFrame::Pong {} => Flow::Continue,
            ClientFrame::Ack { conversation_id, seq } => self.on_ack(socket, &conversation_id, seq).await,
            ClientFrame::Send { message } => {
                let client_msg_id = message.client_msg_id.clone();
                match self.state.messaging.send(self.user_id, message).await {
                    Ok((message, _)) => {
                        // The `sent` frame delivers the message to this socket: its echo over the bus is then
                        // a duplicate, and the device acks it like any other.
                        self.ordering.note_given(&message.conversation_id, message.seq);
                        let frame =
                            ServerFrame::Sent { client_msg_id: client_msg_id.map(|c| c.into_string()), message };
                        match self.write(socket, frame.to_json()).await {
                            Ok(()) => Flow::Continue,
                            Err(()) => Flow::Close(CloseCode::Error, "write failed"),
                        }
                    }
                    Err(e) => self.app_error(socket, e).await,
                }
            }
            ClientFrame::Typing { conversation_id } => {
                match self.state.messaging.typing(self.user_id, &conversation_id).await {
                    Ok(()) => Flow::Continue,
                    Err(e) => self.app_error(socket, e).await,
                }
            }
            ClientFrame::Sync { conversation_id: Some(c), after_seq: Some(after) } => {
                Box::pin(self.sync_page(socket, c, after)).await
            }
            ClientFrame::Sync { conversation_id: Some(_), after_seq: None }
            | ClientFrame::Sync { conversation_id: None, after_seq: Some(_) } => {
                let message = "sync takes both conversation_id and after_seq (one page), or neither (everything)";
                self.error(socket, ErrorCode::InvalidFrame, message).await
            }
            ClientFrame::Sync { conversation_id: None, after_seq: None } => {
                self.ordering.reset_to(self.window.acked().clone());
                self.window.restart();
                self.behind = true;
                self.must_answer = true;
                Flow::Continue
            }
        }
    }

    async fn on_ack(&mut self, socket: &mut WebSocketStream, conversation_id: &str, seq: i64) -> Flow {
        let conversation: ConversationId = match conversation_id.parse() {
            Ok(c) => c,
            Err(e) => return self.app_error(socket, AppError::from(e)).await,
        };
        let written = self.ordering.ackable(conversation_id);
        if seq < 1 || seq > written {
            return self
                .error(
                    socket,
                    ErrorCode::InvalidSeq,
                    &format!("ack seq must be 1 to {written}, what this socket received"),
                )
                .await;
        }
        // A device may ack its own message from a `sent` frame that overtook earlier messages still on their way
        // here; its cursor moves only as far as this socket has written everything, so a reconnect cannot skip them.
        let seq = seq.min(self.ordering.written(conversation_id));
        if !self.window.ack(conversation_id, seq) {
            return Flow::Continue;
        }
        if let Err(e) = self.state.messaging.ack(self.user_id, &self.device, &conversation, seq).await {
            return self.app_error(socket, e).await;
        }
        Flow::Continue
    }
}
