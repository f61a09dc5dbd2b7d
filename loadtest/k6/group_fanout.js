// Group fan-out: MEMBERS members online, a few of them sending. SLO: every member has each message within
// p99 50 ms.
import http from "k6/http";
import ws from "k6/ws";
import { Trend } from "k6/metrics";
import { BASE, WS_BASE, register, befriend, authed } from "./common.js";

const fanout = new Trend("fanout_ms", true);
const MEMBERS = Number(__ENV.MEMBERS || 500);

export const options = {
  scenarios: { members: { executor: "per-vu-iterations", vus: MEMBERS, iterations: 1, maxDuration: "3m" } },
  thresholds: { fanout_ms: ["p(99)<50"] },
};

export function setup() {
  const users = [];
  for (let i = 0; i < MEMBERS; i++) users.push(register(`k6g${Date.now()}_${i}`));
  for (let i = 1; i < MEMBERS; i++) befriend(users[0], users[i]);
  const g = http.post(`${BASE}/api/groups`, JSON.stringify({ name: "k6", member_ids: users.slice(1).map((u) => u.id) }), authed(users[0].token));
  return { users, group: g.json("id") };
}

export default function ({ users, group }) {
  const me = users[__VU - 1];
  ws.connect(`${WS_BASE}/ws?token=${me.token}&device=k6`, {}, (socket) => {
    socket.on("message", (data) => {
      const f = JSON.parse(data);
      if (f.type === "message" && f.message.type === "text") fanout.add(Date.now() - Number(f.message.text.split(" ")[0]));
    });
    if (__VU <= 5) {
      let n = 0;
      socket.setInterval(() => {
        if (n++ < 20) socket.send(JSON.stringify({ type: "send", message: { group_id: group, type: "text", text: `${Date.now()} fan` } }));
      }, 200);
    }
    socket.setTimeout(() => socket.close(), 20000);
  });
}
