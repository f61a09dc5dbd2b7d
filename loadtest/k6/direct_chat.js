// 1:1 chat: pairs of friends; each VU holds a socket, sends to its peer and measures send → receive.
// SLO: delivery p99 < 100 ms (the product promise), p50 < 10 ms.
import ws from "k6/ws";
import { check } from "k6";
import { Trend, Counter } from "k6/metrics";
import { WS_BASE, register, befriend } from "./common.js";

const delivery = new Trend("delivery_ms", true);
const delivered = new Counter("delivered");
const PAIRS = Number(__ENV.PAIRS || 50);

export const options = {
  scenarios: { chat: { executor: "per-vu-iterations", vus: PAIRS * 2, iterations: 1, maxDuration: "2m" } },
  thresholds: { delivery_ms: ["p(50)<10", "p(99)<100"], delivered: ["count>0"] },
};

export function setup() {
  const users = [];
  for (let i = 0; i < PAIRS * 2; i++) users.push(register(`k6d${Date.now()}_${i}`));
  for (let i = 0; i < PAIRS; i++) befriend(users[i], users[i + PAIRS]);
  return { users };
}

export default function ({ users }) {
  const i = __VU - 1;
  const me = users[i];
  const peer = users[(i + PAIRS) % (PAIRS * 2)];
  const res = ws.connect(`${WS_BASE}/ws?token=${me.token}&device=k6`, {}, (socket) => {
    let n = 0;
    socket.on("message", (data) => {
      const f = JSON.parse(data);
      // Only the peer's text messages carry a timestamp (`system` messages and the server's `ping` do not).
      if (f.type === "message" && f.message.type === "text" && f.message.from_user_id !== me.id) {
        delivery.add(Date.now() - Number(f.message.text.split(" ")[0]));
        delivered.add(1);
        socket.send(JSON.stringify({ type: "ack", conversation_id: f.message.conversation_id, seq: f.message.seq }));
      }
    });
    socket.setInterval(() => {
      if (n++ >= 100) { socket.close(); return; }
      socket.send(JSON.stringify({ type: "send", message: { to_user_id: peer.id, type: "text", text: `${Date.now()} hi`, client_msg_id: `${__VU}-${n}` } }));
    }, 100);
    socket.setTimeout(() => socket.close(), 30000);
  });
  check(res, { "upgraded": (r) => r && r.status === 101 });
}
