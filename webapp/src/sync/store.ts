// The client's copy of its conversations: every message the server sends (live `message` frames, `sync` batches,
// `sent` replies, history pages) goes through `apply`, in whatever order and as many times as it arrives, and the
// store keeps each conversation as the server's seq stream defines it (DESIGN.md §4, §7): one entry per message
// id, content in seq order, and events (`recall`, `edit`, `reaction`) applied to their target once, in seq order,
// even when the event arrives before its target (a history page loaded after a live event).
import type { components } from "../api/schema";

export type Message = components["schemas"]["Message"];
export type MessageType = components["schemas"]["MessageType"];

/** Message types that change another message instead of being shown themselves. */
const EVENT_TYPES: ReadonlySet<MessageType> = new Set(["recall", "edit", "reaction"]);

export function isEvent(m: Pick<Message, "type">): boolean {
  return EVENT_TYPES.has(m.type);
}

/** One conversation as this device knows it. */
export interface ConversationState {
  readonly id: string;
  /** Shown entries (content and `system` messages), ascending seq. */
  readonly timeline: readonly Message[];
  /** Highest seq seen in this conversation (events included). */
  readonly maxSeq: number;
  /** The user's read position (from `Conversation.read_seq`, a `receipt` of their own, or reading here). */
  readonly readSeq: number;
}

interface Mutable {
  id: string;
  /** Every message by id, events included. */
  byId: Map<number, Message>;
  maxSeq: number;
  readSeq: number;
  /** Events whose target is not here yet, by target id, in seq order. */
  waiting: Map<number, Message[]>;
  /** Per message, the seq of the last edit applied to it: an older edit arriving later is not applied. */
  editSeq: Map<number, number>;
  timeline: Message[] | null;
}

/** What `apply` did with a message. */
export type Applied = "added" | "duplicate" | "event" | "event-waiting";

export class MessageStore {
  private readonly conversations = new Map<string, Mutable>();

  /** `me`: the signed-in user's id (their own messages are never unread). */
  constructor(private readonly me: number) {}

  private state(conversationId: string): Mutable {
    let c = this.conversations.get(conversationId);
    if (!c) {
      c = {
        id: conversationId, byId: new Map(), maxSeq: 0, readSeq: 0,
        waiting: new Map(), editSeq: new Map(), timeline: null,
      };
      this.conversations.set(conversationId, c);
    }
    return c;
  }

  /** Takes one message from any source. Idempotent: a message seen before changes nothing. */
  apply(m: Message): Applied {
    const c = this.state(m.conversation_id);
    const known = c.byId.get(m.id);
    if (known) return "duplicate";
    c.byId.set(m.id, m);
    c.maxSeq = Math.max(c.maxSeq, m.seq);
    if (isEvent(m)) {
      const applied = this.applyEvent(c, m);
      c.timeline = null;
      return applied ? "event" : "event-waiting";
    }
    // Events that arrived before this message, in seq order.
    const waiting = c.waiting.get(m.id);
    if (waiting) {
      c.waiting.delete(m.id);
      for (const e of waiting) this.applyEvent(c, e);
    }
    c.timeline = null;
    return "added";
  }

  /** Applies every message of a batch (a `sync` frame, a history page). */
  applyAll(messages: readonly Message[]): void {
    for (const m of messages) this.apply(m);
  }

  private applyEvent(c: Mutable, e: Message): boolean {
    const targetId = e.target_id;
    if (targetId === undefined || targetId === null) return true;
    const target = c.byId.get(targetId);
    if (!target) {
      const list = c.waiting.get(targetId) ?? [];
      list.push(e);
      list.sort((a, b) => a.seq - b.seq);
      c.waiting.set(targetId, list);
      return false;
    }
    // A target that already carries a later state (a history page holds messages "as they are now") is not
    // rolled back by an older event.
    const updated: Message = { ...target };
    switch (e.type) {
      case "recall":
        updated.recalled_at = e.created_at;
        updated.recalled_by = e.from_user_id;
        // Nothing of the content stays (whichever order its recall and edits arrived in).
        delete updated.text;
        delete updated.file;
        delete updated.edited_at;
        updated.reactions = [];
        break;
      case "edit":
        if (updated.recalled_at) return true;
        // Seq orders edits (nodes' clocks may differ); a target from a history page, "as it is now", carries the
        // time of its last edit instead, and an edit from before it is already in its text.
        if ((c.editSeq.get(target.id) ?? 0) > e.seq) return true;
        if (!c.editSeq.has(target.id) && updated.edited_at && updated.edited_at >= e.created_at) return true;
        c.editSeq.set(target.id, e.seq);
        updated.text = e.text;
        updated.edited_at = e.created_at;
        break;
      case "reaction": {
        const change = e.reaction;
        if (!change || updated.recalled_at) return true;
        const reactions = updated.reactions.map((r) => ({ ...r, user_ids: [...r.user_ids] }));
        let r = reactions.find((x) => x.emoji === change.emoji);
        if (change.op === "add") {
          if (!r) reactions.push((r = { emoji: change.emoji, user_ids: [] }));
          if (!r.user_ids.includes(e.from_user_id)) r.user_ids.push(e.from_user_id);
        } else if (r) {
          r.user_ids = r.user_ids.filter((u) => u !== e.from_user_id);
        }
        updated.reactions = reactions.filter((x) => x.user_ids.length > 0);
        break;
      }
    }
    c.byId.set(target.id, updated);
    return true;
  }

  /** Moves the read position forward (never back: receipts and reads may arrive out of order). */
  markRead(conversationId: string, seq: number): void {
    const c = this.state(conversationId);
    c.readSeq = Math.max(c.readSeq, seq);
  }

  /** Every conversation the store holds messages of. */
  conversationIds(): string[] {
    return [...this.conversations.keys()];
  }

  conversation(conversationId: string): ConversationState | undefined {
    const c = this.conversations.get(conversationId);
    if (!c) return undefined;
    if (!c.timeline) {
      c.timeline = [...c.byId.values()].filter((m) => !isEvent(m)).sort((a, b) => a.seq - b.seq);
    }
    return { id: c.id, timeline: c.timeline, maxSeq: c.maxSeq, readSeq: c.readSeq };
  }

  /**
   * Messages that count as unread: shown content from someone else (not the user's own, sent from another
   * device; not events; not `system` lines) after the read position and not recalled.
   */
  unread(conversationId: string): number {
    const c = this.conversation(conversationId);
    if (!c) return 0;
    return c.timeline.filter(
      (m) => m.seq > c.readSeq && m.from_user_id !== this.me && m.type !== "system" && !m.recalled_at,
    ).length;
  }

  /** Whether an unread message mentions the user (or everyone): the list's "[有人@我]". */
  mentionedUnread(conversationId: string): boolean {
    const c = this.conversation(conversationId);
    if (!c) return false;
    return c.timeline.some(
      (m) => m.seq > c.readSeq && m.from_user_id !== this.me && !m.recalled_at &&
        !!m.mentions && (m.mentions.all || m.mentions.user_ids.includes(this.me)),
    );
  }

  /**
   * The cumulative ack a device owes for this conversation (`ack {conversation_id, seq}`): the highest seq it
   * holds. The server writes the stream gapless from the device's cursor and moves the cursor only as far as the
   * socket wrote everything (a `sent` reply may run ahead), so the highest seq is always a safe ack.
   */
  ackSeq(conversationId: string): number {
    return this.conversations.get(conversationId)?.maxSeq ?? 0;
  }
}
