// The device's WebSocket (DESIGN.md §4): a one-time ticket in the URL (never the token), every message into the
// store and acked cumulatively, sends with a client_msg_id answered by `sent`, and reconnection with jittered
// backoff. Liveness follows the README's heartbeat budget: a `ping` after PING_AFTER ms without any frame (or when
// a send is unanswered for SEND_WAIT ms), and the socket given up PONG_WAIT ms after that ping if the server stays
// silent (a frozen or partitioned node), without waiting for a closing handshake it would never answer.
import { api, call } from "../api/client";
import type { Message, MessageStore } from "./store";

export const PING_AFTER = 10_000;
export const SEND_WAIT = 3_000;
export const PONG_WAIT = 5_000;
const BACKOFF_FIRST = 500;
const BACKOFF_CAP = 30_000;

export type Status = "connecting" | "online" | "offline";

/** A send not yet answered: shown as "sending…", or "failed" once the socket gave up on it. */
export interface Pending {
  clientMsgId: string;
  conversationId: string;
  body: Record<string, unknown>;
  sentAt: number;
  failed: boolean;
}

type Frame = { type: string; [k: string]: unknown };

export interface ConnectionEvents {
  /** Something in the store, the pending sends or the status changed. */
  changed(): void;
  /** A frame the store does not handle (receipts, typing, presence, friend and group updates). */
  frame(frame: Frame): void;
  /** The token was refused (4401 expired, 4403 revoked): sign in again. */
  signedOut(): void;
}

export class Connection {
  status: Status = "connecting";
  readonly pending = new Map<string, Pending>();
  private ws: WebSocket | null = null;
  private retry = 0;
  private timer: ReturnType<typeof setInterval> | null = null;
  private lastHeard = 0;
  private pingedAt = 0;
  private stopped = false;

  constructor(
    private readonly store: MessageStore,
    private readonly device: string,
    private readonly events: ConnectionEvents,
  ) {}

  start(): void {
    this.stopped = false;
    void this.connect();
  }

  stop(): void {
    this.stopped = true;
    this.drop();
  }

  private setStatus(s: Status): void {
    this.status = s;
    this.events.changed();
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    this.setStatus(this.retry === 0 ? "connecting" : "offline");
    let ticket: string;
    try {
      ticket = (await call(api.POST("/api/ws/ticket"))).ticket;
    } catch (e) {
      if ((e as { status?: number }).status === 401) return this.events.signedOut();
      return this.later();
    }
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const url = `${scheme}//${location.host}/ws?token=${encodeURIComponent(ticket)}&device=${encodeURIComponent(this.device)}`;
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onopen = () => {
      this.retry = 0;
      this.lastHeard = Date.now();
      this.pingedAt = 0;
      this.setStatus("online");
      for (const p of this.pending.values()) {
        p.failed = false;
        p.sentAt = Date.now();
        ws.send(JSON.stringify({ type: "send", message: p.body }));
      }
      this.timer = setInterval(() => this.watch(), 500);
    };
    ws.onmessage = (e) => {
      this.lastHeard = Date.now();
      this.pingedAt = 0;
      this.onFrame(JSON.parse(String(e.data)) as Frame);
    };
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.drop();
      if (e.code === 4401 || e.code === 4403) return this.events.signedOut();
      this.later();
    };
  }

  /** Drops the socket at once (handlers detached: a frozen server answers no closing handshake). */
  private drop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      try {
        ws.close(4000, "client gave up");
      } catch {
        /* already closed */
      }
    }
    for (const p of this.pending.values()) p.failed = true;
    if (!this.stopped) this.setStatus("offline");
  }

  private later(): void {
    if (this.stopped) return;
    const delay = Math.min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** this.retry++) * (0.5 + Math.random() / 2);
    setTimeout(() => void this.connect(), delay);
  }

  private watch(): void {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    const now = Date.now();
    if (this.pingedAt && now - this.pingedAt > PONG_WAIT) {
      this.drop();
      void this.connect();
      return;
    }
    const stale = [...this.pending.values()].some((p) => now - p.sentAt > SEND_WAIT);
    if (!this.pingedAt && (now - this.lastHeard > PING_AFTER || stale)) {
      this.pingedAt = now;
      ws.send('{"type":"ping"}');
    }
  }

  private onFrame(f: Frame): void {
    const ws = this.ws;
    switch (f.type) {
      case "ping":
        ws?.send('{"type":"pong"}');
        return;
      case "message":
        this.take([f.message as Message]);
        return;
      case "sync":
        this.take(f.messages as Message[]);
        return;
      case "sent": {
        const id = f.client_msg_id as string | undefined;
        if (id) this.pending.delete(id);
        this.take([f.message as Message]);
        return;
      }
      default:
        this.events.frame(f);
    }
  }

  private take(messages: Message[]): void {
    const touched = new Set<string>();
    for (const m of messages) {
      this.store.apply(m);
      touched.add(m.conversation_id);
    }
    for (const c of touched) {
      this.ws?.send(JSON.stringify({ type: "ack", conversation_id: c, seq: this.store.ackSeq(c) }));
    }
    this.events.changed();
  }

  /** Sends over the socket (queued while offline: it goes when the socket opens, with the same client_msg_id). */
  send(conversationId: string, body: Record<string, unknown>): Pending {
    const clientMsgId = crypto.randomUUID();
    const p: Pending = {
      clientMsgId, conversationId, body: { ...body, client_msg_id: clientMsgId }, sentAt: Date.now(), failed: false,
    };
    this.pending.set(clientMsgId, p);
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ type: "send", message: p.body }));
    else p.failed = this.status !== "connecting";
    this.events.changed();
    return p;
  }

  /** Sends a failed message again, with its client_msg_id (the server answers a repeat with the stored message). */
  resend(clientMsgId: string): void {
    const p = this.pending.get(clientMsgId);
    if (!p || !this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    p.failed = false;
    p.sentAt = Date.now();
    this.ws.send(JSON.stringify({ type: "send", message: p.body }));
    this.events.changed();
  }
}
