// Shared helpers for the k6 scripts. BASE_URL (default http://127.0.0.1:8080) points at a node or the balancer.
import http from "k6/http";
import { check, fail } from "k6";

export const BASE = __ENV.BASE_URL || "http://127.0.0.1:8080";
export const WS_BASE = BASE.replace(/^http/, "ws");
export const PASSWORD = "k6-password-123";
const JSON_HEADERS = { headers: { "Content-Type": "application/json" } };

// The nodes' brute-force limit (GOCHAT_AUTH_RATE_PER_IP, 30 a minute by default) stops a setup that registers
// many users from one address: say so instead of failing later with undefined tokens.
function expectOk(r, what) {
  if (r.status === 429) fail(`${what}: 429 rate_limited; raise GOCHAT_AUTH_RATE_PER_IP on the nodes under test`);
  if (r.status >= 300) fail(`${what}: ${r.status} ${r.body}`);
  return r;
}

export function register(name) {
  expectOk(http.post(`${BASE}/api/user/register`, JSON.stringify({ username: name, password: PASSWORD, nickname: name }), JSON_HEADERS), "register");
  const r = expectOk(http.post(`${BASE}/api/user/login`, JSON.stringify({ username: name, password: PASSWORD }), JSON_HEADERS), "login");
  check(r, { "login 200": (x) => x.status === 200 });
  return { id: r.json("user.id"), token: r.json("token") };
}

export function authed(token) {
  return { headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` } };
}

export function befriend(a, b) {
  const r = expectOk(http.post(`${BASE}/api/friends/request`, JSON.stringify({ to_user_id: b.id }), authed(a.token)), "friend request");
  if (r.json("status") === "pending") {
    expectOk(http.post(`${BASE}/api/friends/accept`, JSON.stringify({ request_id: r.json("id") }), authed(b.token)), "accept");
  }
}
