// Shared helpers for the k6 scripts. BASE_URL (default http://127.0.0.1:8080) points at a node or the balancer.
import http from "k6/http";
import { check } from "k6";

export const BASE = __ENV.BASE_URL || "http://127.0.0.1:8080";
export const WS_BASE = BASE.replace(/^http/, "ws");
export const PASSWORD = "k6-password-123";
const JSON_HEADERS = { headers: { "Content-Type": "application/json" } };

export function register(name) {
  http.post(`${BASE}/api/user/register`, JSON.stringify({ username: name, password: PASSWORD, nickname: name }), JSON_HEADERS);
  const r = http.post(`${BASE}/api/user/login`, JSON.stringify({ username: name, password: PASSWORD }), JSON_HEADERS);
  check(r, { "login 200": (x) => x.status === 200 });
  return { id: r.json("user.id"), token: r.json("token") };
}

export function authed(token) {
  return { headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` } };
}

export function befriend(a, b) {
  const r = http.post(`${BASE}/api/friends/request`, JSON.stringify({ to_user_id: b.id }), authed(a.token));
  if (r.json("status") === "pending") {
    http.post(`${BASE}/api/friends/accept`, JSON.stringify({ request_id: r.json("id") }), authed(b.token));
  }
}
