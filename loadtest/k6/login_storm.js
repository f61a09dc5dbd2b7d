// Login storm: many clients logging in at once. SLO: p99 < 1 s, under 1% errors (429s from the rate limiter
// count as expected when one IP exceeds GOCHAT_AUTH_RATE_PER_IP; run k6 from several IPs or raise the limit).
import http from "k6/http";
import { check } from "k6";
import { BASE, PASSWORD, register } from "./common.js";

export const options = {
  scenarios: { storm: { executor: "constant-arrival-rate", rate: 100, timeUnit: "1s", duration: "30s", preAllocatedVUs: 200 } },
  thresholds: { http_req_duration: ["p(99)<1000"], http_req_failed: ["rate<0.01"] },
};

export function setup() {
  const users = [];
  for (let i = 0; i < 50; i++) users.push(`k6login${Date.now()}_${i}`);
  users.forEach((u) => register(u));
  return { users };
}

export default function ({ users }) {
  const u = users[Math.floor(Math.random() * users.length)];
  const r = http.post(`${BASE}/api/user/login`, JSON.stringify({ username: u, password: PASSWORD }), { headers: { "Content-Type": "application/json" } });
  check(r, { "200": (x) => x.status === 200 });
}
