// Idle connections: SOCKETS sockets held open with the app-level ping every 25 s. SLO: under 1% failed upgrades.
// One k6 process is bounded by its open-file limit; see ../README.md for the Rust generator that spreads sockets
// over processes and source addresses.
import ws from "k6/ws";
import { check } from "k6";
import { register } from "./common.js";
import { WS_BASE } from "./common.js";

const SOCKETS = Number(__ENV.SOCKETS || 5000);
export const options = {
  scenarios: { idle: { executor: "per-vu-iterations", vus: SOCKETS, iterations: 1, maxDuration: "5m" } },
  thresholds: { checks: ["rate>0.99"] },
};

export function setup() {
  const users = [];
  for (let i = 0; i < 100; i++) users.push(register(`k6i${Date.now()}_${i}`));
  return { users };
}

export default function ({ users }) {
  const me = users[__VU % users.length];
  const res = ws.connect(`${WS_BASE}/ws?token=${me.token}&device=k6-${__VU}`, {}, (socket) => {
    socket.setInterval(() => socket.send('{"type":"ping"}'), 25000);
    socket.setTimeout(() => socket.close(), 120000);
  });
  check(res, { "upgraded": (r) => r && r.status === 101 });
}
