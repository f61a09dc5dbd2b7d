// GoChat web client: plain JavaScript over the REST API and the WebSocket gateway (no build step).
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  token: localStorage.getItem("gochat.token"),
  me: JSON.parse(localStorage.getItem("gochat.me") || "null"),
  device: localStorage.getItem("gochat.device") || (() => {
    const d = "web-" + Math.random().toString(36).slice(2, 10);
    localStorage.setItem("gochat.device", d);
    return d;
  })(),
  ws: null,
  retry: 0,
  conversations: [],
  current: null,         // conversation id shown
  messages: new Map(),   // conversation id -> Map(message id -> message)
  users: new Map(),      // user id -> UserSummary
  friends: [],
  groups: [],
  blobs: new Map(),      // file id -> object URL
};

// ---- HTTP -------------------------------------------------------------------------------------------------

async function api(method, path, body) {
  const headers = {};
  if (state.token) headers.Authorization = "Bearer " + state.token;
  let payload;
  if (body instanceof FormData) payload = body;
  else if (body !== undefined) { headers["Content-Type"] = "application/json"; payload = JSON.stringify(body); }
  const resp = await fetch(path, { method, headers, body: payload });
  if (resp.status === 401 && state.token) { logout(); throw new Error("session expired; log in again"); }
  const text = await resp.text();
  const data = text ? JSON.parse(text) : null;
  if (!resp.ok) throw new Error((data && data.message) || resp.statusText);
  return data;
}

// ---- Auth -------------------------------------------------------------------------------------------------

function signedIn(r) {
  state.token = r.token;
  state.me = r.user;
  localStorage.setItem("gochat.token", r.token);
  localStorage.setItem("gochat.expires", r.expires_at);
  localStorage.setItem("gochat.me", JSON.stringify(r.user));
}

async function login(username, password) {
  signedIn(await api("POST", "/api/user/login", { username, password }));
  start();
}

// Trade the token for a fresh one when less than a day of it is left, so a device stays signed in.
async function refreshToken() {
  const expires = Date.parse(localStorage.getItem("gochat.expires") || "");
  if (!state.token || (expires && expires - Date.now() > 86400000)) return;
  try { signedIn(await api("POST", "/api/user/token")); } catch (_) { /* 401 logs out in api() */ }
}
setInterval(refreshToken, 3600000);

function logout() {
  localStorage.removeItem("gochat.token");
  localStorage.removeItem("gochat.expires");
  localStorage.removeItem("gochat.me");
  state.token = null;
  if (state.ws) state.ws.close();
  location.reload();
}

$("auth-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("auth-error").textContent = "";
  try { await login($("username").value, $("password").value); } catch (err) { $("auth-error").textContent = err.message; }
});

$("register-btn").addEventListener("click", async () => {
  $("auth-error").textContent = "";
  const username = $("username").value, password = $("password").value;
  try {
    await api("POST", "/api/user/register", { username, password, nickname: $("nickname").value || username });
    await login(username, password);
  } catch (err) { $("auth-error").textContent = err.message; }
});

$("logout").addEventListener("click", logout);

// ---- Rendering ------------------------------------------------------------------------------------------

const el = (tag, props = {}, ...children) => {
  const n = document.createElement(tag);
  Object.assign(n, props);
  for (const c of children) n.append(c);
  return n;
};

function nameOf(id) {
  if (state.me && id === state.me.id) return "me";
  const u = state.users.get(id);
  return u ? u.nickname : "user " + id;
}

function titleOf(c) {
  if (c.peer) return c.peer.nickname;
  if (c.group) return "[group] " + c.group.name;
  return c.conversation_id;
}

function preview(m) {
  if (!m) return "";
  if (m.type === "image") return "[image]";
  if (m.type === "video") return "[video]";
  return m.text || "";
}

function renderChats() {
  const list = $("chats");
  list.replaceChildren();
  for (const c of state.conversations) {
    const li = el("li", { className: c.conversation_id === state.current ? "active" : "" },
      el("div", { className: "grow" }, el("div", { textContent: titleOf(c) }), el("div", { className: "preview", textContent: preview(c.last_message) })));
    if (c.unread_count > 0 && c.conversation_id !== state.current) li.append(el("span", { className: "badge", textContent: c.unread_count }));
    li.onclick = () => open(c.conversation_id);
    list.append(li);
  }
}

async function media(m) {
  const id = m.file.id;
  if (!state.blobs.has(id)) {
    const resp = await fetch(m.file.url, { headers: { Authorization: "Bearer " + state.token } });
    if (!resp.ok) throw new Error("cannot load file");
    state.blobs.set(id, URL.createObjectURL(await resp.blob()));
  }
  return state.blobs.get(id);
}

function renderMessages() {
  const box = $("messages");
  box.replaceChildren();
  const msgs = [...(state.messages.get(state.current) || new Map()).values()].sort((a, b) => a.seq - b.seq);
  for (const m of msgs) {
    const mine = state.me && m.from_user_id === state.me.id;
    const bubble = el("div", { className: "bubble" });
    if (m.file) {
      const node = m.type === "video" ? el("video", { controls: true }) : el("img", { alt: "image" });
      media(m).then((url) => { node.src = url; }).catch(() => { node.replaceWith(el("span", { textContent: "[file unavailable]" })); });
      bubble.append(node);
      if (m.text) bubble.append(el("div", { textContent: m.text }));
    } else {
      bubble.textContent = m.text;
    }
    const when = new Date(m.created_at).toLocaleTimeString();
    box.append(el("li", { className: mine ? "mine" : "" },
      el("span", { className: "meta", textContent: (state.current.startsWith("g:") && !mine ? nameOf(m.from_user_id) + " · " : "") + when }),
      bubble));
  }
  box.scrollTop = box.scrollHeight;
}

// ---- Conversations --------------------------------------------------------------------------------------

function remember(m) {
  if (!state.messages.has(m.conversation_id)) state.messages.set(m.conversation_id, new Map());
  state.messages.get(m.conversation_id).set(m.id, m);
}

async function loadConversations() {
  state.conversations = await api("GET", "/api/conversations");
  for (const c of state.conversations) if (c.peer) state.users.set(c.peer.id, c.peer);
  renderChats();
}

async function open(conversationId) {
  state.current = conversationId;
  $("composer").hidden = false;
  const c = state.conversations.find((x) => x.conversation_id === conversationId);
  $("chat-title").textContent = c ? titleOf(c) : conversationId;
  try {
    const page = await api("GET", "/api/messages/history?conversation_id=" + encodeURIComponent(conversationId) + "&limit=100");
    page.messages.forEach(remember);
  } catch (err) { $("chat-error").textContent = err.message; }
  renderMessages();
  markRead();
  renderChats();
}

async function markRead() {
  const c = state.conversations.find((x) => x.conversation_id === state.current);
  if (!c || c.last_seq === 0 || c.read_seq >= c.last_seq) return;
  try {
    await api("POST", "/api/messages/read", { conversation_id: c.conversation_id, seq: c.last_seq });
    c.read_seq = c.last_seq;
    c.unread_count = 0;
    renderChats();
  } catch (_) { /* a later read covers it */ }
}

function onMessage(m) {
  remember(m);
  let c = state.conversations.find((x) => x.conversation_id === m.conversation_id);
  if (!c) { loadConversations(); return; }
  if (m.seq > c.last_seq) {
    c.last_seq = m.seq;
    c.last_message = m;
    if (!(state.me && m.from_user_id === state.me.id)) c.unread_count = Math.max(0, c.last_seq - c.read_seq);
    state.conversations = [c, ...state.conversations.filter((x) => x !== c)];
  }
  if (m.conversation_id === state.current) { renderMessages(); markRead(); }
  renderChats();
}

// ---- Sending ----------------------------------------------------------------------------------------------

function target() {
  const c = state.current;
  if (c.startsWith("g:")) return { group_id: Number(c.slice(2)) };
  const [, a, b] = c.split(":").map(Number);
  return { to_user_id: a === state.me.id ? b : a };
}

function send(body) {
  const message = { ...target(), ...body, client_msg_id: crypto.randomUUID ? crypto.randomUUID() : String(Date.now() + Math.random()) };
  if (state.ws && state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(JSON.stringify({ type: "send", message }));
    return Promise.resolve();
  }
  return api("POST", "/api/messages/send", message).then(onMessage);
}

$("composer").addEventListener("submit", async (e) => {
  e.preventDefault();
  const text = $("text").value;
  if (!text) return;
  $("chat-error").textContent = "";
  try { await send({ type: "text", text }); $("text").value = ""; } catch (err) { $("chat-error").textContent = err.message; }
});

let lastTyping = 0;
$("text").addEventListener("input", () => {
  if (!state.ws || state.ws.readyState !== WebSocket.OPEN || Date.now() - lastTyping < 3000) return;
  lastTyping = Date.now();
  state.ws.send(JSON.stringify({ type: "typing", conversation_id: state.current }));
});

$("file").addEventListener("change", async () => {
  const file = $("file").files[0];
  if (!file) return;
  $("chat-error").textContent = "";
  try {
    const form = new FormData();
    form.append("file", file);
    const info = await api("POST", "/api/messages/upload", form);
    await send({ type: info.kind, file_id: info.id });
  } catch (err) { $("chat-error").textContent = err.message; }
  $("file").value = "";
});

// ---- Friends and groups ---------------------------------------------------------------------------------

async function loadFriends() {
  state.friends = await api("GET", "/api/friends");
  for (const f of state.friends) state.users.set(f.id, f);
  const list = $("friend-list");
  list.replaceChildren();
  const checks = $("group-members");
  checks.replaceChildren();
  for (const f of state.friends) {
    const chat = el("button", { textContent: "Chat" });
    chat.onclick = () => { showTab("chats"); openDirect(f.id); };
    const remove = el("button", { textContent: "Remove", className: "secondary" });
    remove.onclick = async () => { if (confirm("Remove " + f.nickname + "?")) { await api("DELETE", "/api/friends/" + f.id); loadFriends(); } };
    list.append(el("li", {}, el("span", { className: "grow", textContent: f.nickname + " (@" + f.username + ")" }), chat, remove));
    checks.append(el("label", {}, el("input", { type: "checkbox", value: f.id }), " " + f.nickname));
  }
  const reqs = (await api("GET", "/api/friends/requests?direction=incoming")).filter((r) => r.status === "pending");
  $("req-badge").hidden = reqs.length === 0;
  $("req-badge").textContent = reqs.length;
  const rl = $("requests");
  rl.replaceChildren();
  for (const r of reqs) {
    const ok = el("button", { textContent: "Accept" });
    ok.onclick = async () => { await api("POST", "/api/friends/accept", { request_id: r.id }); loadFriends(); };
    const no = el("button", { textContent: "Reject", className: "secondary" });
    no.onclick = async () => { await api("POST", "/api/friends/reject", { request_id: r.id }); loadFriends(); };
    rl.append(el("li", {}, el("span", { className: "grow", textContent: r.from_user.nickname + (r.message ? ": " + r.message : "") }), ok, no));
  }
}

function openDirect(peer) {
  const [a, b] = [state.me.id, peer].sort((x, y) => x - y);
  const id = "d:" + a + ":" + b;
  if (!state.conversations.find((c) => c.conversation_id === id)) {
    state.conversations.unshift({ conversation_id: id, type: "direct", peer: state.users.get(peer), last_seq: 0, read_seq: 0, unread_count: 0 });
  }
  open(id);
}

$("search-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const list = $("search-results");
  list.replaceChildren();
  try {
    const users = await api("GET", "/api/users/search?q=" + encodeURIComponent($("search").value));
    for (const u of users.filter((x) => x.id !== state.me.id)) {
      const add = el("button", { textContent: "Add" });
      add.onclick = async () => {
        try { await api("POST", "/api/friends/request", { to_user_id: u.id }); add.textContent = "Sent"; add.disabled = true; } catch (err) { add.textContent = err.message; }
      };
      list.append(el("li", {}, el("span", { className: "grow", textContent: u.nickname + " (@" + u.username + ")" }), add));
    }
  } catch (err) { list.append(el("li", { textContent: err.message })); }
});

async function loadGroups() {
  state.groups = await api("GET", "/api/groups");
  const list = $("group-list");
  list.replaceChildren();
  for (const g of state.groups) {
    for (const m of g.members) state.users.set(m.user_id, { id: m.user_id, username: m.username, nickname: m.nickname });
    const li = el("li", {}, el("span", { className: "grow", textContent: g.name + " (" + g.members.length + ")" }));
    li.onclick = () => { showTab("chats"); open("g:" + g.id); };
    list.append(li);
  }
}

$("group-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const member_ids = [...document.querySelectorAll("#group-members input:checked")].map((i) => Number(i.value));
  try {
    const g = await api("POST", "/api/groups", { name: $("group-name").value, member_ids });
    $("group-name").value = "";
    await loadGroups();
    await loadConversations();
    showTab("chats");
    open("g:" + g.id);
  } catch (err) { alert(err.message); }
});

function showTab(tab) {
  for (const b of document.querySelectorAll(".tabs button")) b.classList.toggle("active", b.dataset.tab === tab);
  $("chats").hidden = tab !== "chats";
  $("friends").hidden = tab !== "friends";
  $("groups").hidden = tab !== "groups";
  if (tab === "friends") loadFriends();
  if (tab === "groups") loadGroups();
}
for (const b of document.querySelectorAll(".tabs button")) b.onclick = () => showTab(b.dataset.tab);

// ---- WebSocket ------------------------------------------------------------------------------------------

function ack(messages) {
  const last = new Map();
  for (const m of messages) last.set(m.conversation_id, Math.max(last.get(m.conversation_id) || 0, m.seq));
  for (const [conversation_id, seq] of last) state.ws.send(JSON.stringify({ type: "ack", conversation_id, seq }));
}

async function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  // A one-time ticket in the URL, never the token itself (URLs end up in proxy logs).
  let ticket;
  try { ticket = (await api("POST", "/api/ws/ticket")).ticket; } catch (_) {
    if (state.token) setTimeout(connect, Math.min(30000, 500 * 2 ** state.retry++) * (0.5 + Math.random()));
    return;
  }
  const ws = new WebSocket(proto + "//" + location.host + "/ws?token=" + encodeURIComponent(ticket) + "&device=" + state.device);
  state.ws = ws;
  // Liveness (README, "Heartbeats"): after PING_AFTER ms without a frame the client sends `ping`; a server that
  // then stays silent for PONG_WAIT ms (frozen, partitioned) is given up on, and the client reconnects — through
  // the load balancer, to another node — and resumes from its cursor.
  const PING_AFTER = 10000, PONG_WAIT = 5000;
  let heartbeat, lastHeard = Date.now(), pingedAt = 0;
  ws.onopen = () => {
    state.retry = 0;
    $("status").textContent = "online";
    $("status").className = "status online";
    heartbeat = setInterval(() => {
      if (ws.readyState !== WebSocket.OPEN) return;
      const now = Date.now();
      if (pingedAt && now - pingedAt > PONG_WAIT) {
        // Not waiting for onclose: a frozen server does not answer the closing handshake either.
        clearInterval(heartbeat);
        ws.onclose = ws.onmessage = null;
        ws.close(4000, "server silent");
        $("status").textContent = "reconnecting…";
        $("status").className = "status";
        connect();
        return;
      }
      if (!pingedAt && now - lastHeard > PING_AFTER) { pingedAt = now; ws.send('{"type":"ping"}'); }
    }, 500);
  };
  ws.onclose = (e) => {
    clearInterval(heartbeat);
    $("status").textContent = "reconnecting…";
    $("status").className = "status";
    if (e.code === 1008 || !state.token) return;
    // 4401: the token expired; 4403: it was revoked (a password change elsewhere). Either way, sign in again.
    if (e.code === 4401 || e.code === 4403) { logout(); return; }
    const delay = Math.min(30000, 500 * 2 ** state.retry++) * (0.5 + Math.random());
    setTimeout(connect, delay);
  };
  ws.onmessage = (e) => {
    lastHeard = Date.now(); pingedAt = 0;
    const f = JSON.parse(e.data);
    switch (f.type) {
      case "ping": ws.send('{"type":"pong"}'); break;
      case "message":
        onMessage(f.message); ack([f.message]);
        // A group's name, roles and mutes change by `system` messages (only joins and leaves send group_updated).
        if (f.message.type === "system") { loadGroups(); loadConversations(); }
        break;
      case "sync": f.messages.forEach(onMessage); ack(f.messages); break;
      case "sent": onMessage(f.message); ack([f.message]); break;
      case "typing":
        if (f.conversation_id === state.current) {
          $("typing").textContent = nameOf(f.user_id) + " is typing…";
          setTimeout(() => { $("typing").textContent = ""; }, 3000);
        }
        break;
      case "friend_request": case "friend_accepted": case "friend_removed": loadFriends(); break;
      case "group_updated": case "group_removed": loadGroups(); loadConversations(); break;
      case "error": $("chat-error").textContent = f.message; break;
      default: break;
    }
  };
}

// ---- Start ----------------------------------------------------------------------------------------------

async function start() {
  $("auth").hidden = true;
  $("app").hidden = false;
  $("me").textContent = state.me.nickname;
  try {
    state.me = await api("GET", "/api/user/profile");
    await Promise.all([loadConversations(), loadFriends(), loadGroups(), refreshToken()]);
  } catch (err) { $("chat-error").textContent = err.message; }
  connect();
}

if (state.token && state.me) start();
