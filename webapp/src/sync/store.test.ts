import { describe, expect, it } from "vitest";
import { MessageStore, type Message } from "./store";

const ME = 1;
const PEER = 2;
const C = "d:1:2";
let nextId = 1000;

function msg(seq: number, fields: Partial<Message> = {}): Message {
  return {
    id: nextId++,
    conversation_id: C,
    seq,
    from_user_id: PEER,
    type: "text",
    text: `m${seq}`,
    created_at: new Date(Date.UTC(2026, 11, 2, 12, 0, seq)).toISOString(),
    reactions: [],
    forwarded: false,
    ...fields,
  };
}

describe("the message store", () => {
  it("keeps one entry per message id however often and in whatever order it arrives", () => {
    const store = new MessageStore(ME);
    const [a, b, c] = [msg(1), msg(2), msg(3)];
    expect(store.apply(c)).toBe("added");
    store.applyAll([a, b, c, b]);
    expect(store.apply(a)).toBe("duplicate");
    expect(store.conversation(C)!.timeline.map((m) => m.seq)).toEqual([1, 2, 3]);
  });

  it("orders the timeline by seq, not by arrival", () => {
    const store = new MessageStore(ME);
    store.applyAll([msg(5), msg(2), msg(4), msg(1), msg(3)]);
    expect(store.conversation(C)!.timeline.map((m) => m.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(store.ackSeq(C)).toBe(5);
  });

  it("applies a recall, an edit and reactions to their target and shows no event itself", () => {
    const store = new MessageStore(ME);
    const target = msg(1);
    const other = msg(2);
    store.applyAll([target, other]);
    store.apply(msg(3, { type: "edit", target_id: target.id, text: "fixed" }));
    store.apply(msg(4, { type: "reaction", target_id: target.id, from_user_id: ME, reaction: { emoji: "👍", op: "add" } }));
    store.apply(msg(5, { type: "reaction", target_id: target.id, from_user_id: PEER, reaction: { emoji: "👍", op: "add" } }));
    store.apply(msg(6, { type: "reaction", target_id: target.id, from_user_id: ME, reaction: { emoji: "👍", op: "remove" } }));
    store.apply(msg(7, { type: "recall", target_id: other.id }));
    const [t, o] = store.conversation(C)!.timeline;
    expect(store.conversation(C)!.timeline).toHaveLength(2);
    expect(t!.text).toBe("fixed");
    expect(t!.edited_at).toBeDefined();
    expect(t!.reactions).toEqual([{ emoji: "👍", user_ids: [PEER] }]);
    expect(o!.recalled_at).toBeDefined();
    expect(o!.text).toBeUndefined();
  });

  it("holds an event that arrives before its target and applies it when the target comes", () => {
    const store = new MessageStore(ME);
    const target = msg(1);
    expect(store.apply(msg(3, { type: "edit", target_id: target.id, text: "second" }))).toBe("event-waiting");
    expect(store.apply(msg(2, { type: "edit", target_id: target.id, text: "first" }))).toBe("event-waiting");
    store.apply(target);
    // Applied in seq order: the later edit wins.
    expect(store.conversation(C)!.timeline[0]!.text).toBe("second");
  });

  it("applies edits in seq order whatever order they arrive in, even with the later one stamped earlier", () => {
    const store = new MessageStore(ME);
    const target = msg(1);
    store.apply(target);
    // Written by two nodes whose clocks differ: seq 3 is the later edit although its created_at is earlier.
    store.apply(msg(3, { type: "edit", target_id: target.id, text: "second", created_at: "2026-12-02T11:00:00.000Z" }));
    store.apply(msg(2, { type: "edit", target_id: target.id, text: "first" }));
    expect(store.conversation(C)!.timeline[0]!.text).toBe("second");
  });

  it("does not roll a history page's message back with an edit older than its state", () => {
    const store = new MessageStore(ME);
    const target = msg(1, { text: "final", edited_at: "2026-12-02T12:05:00.000Z" });
    store.apply(target);
    store.apply(msg(2, { type: "edit", target_id: target.id, text: "draft", created_at: "2026-12-02T12:01:00.000Z" }));
    expect(store.conversation(C)!.timeline[0]!.text).toBe("final");
  });

  it("applies a redelivered event once (a reaction toggled by the same event twice stays added)", () => {
    const store = new MessageStore(ME);
    const target = msg(1);
    const react = msg(2, { type: "reaction", target_id: target.id, reaction: { emoji: "❤️", op: "add" } });
    store.applyAll([target, react, react]);
    expect(store.conversation(C)!.timeline[0]!.reactions).toEqual([{ emoji: "❤️", user_ids: [PEER] }]);
  });

  it("does not let an edit bring a recalled message back", () => {
    const store = new MessageStore(ME);
    const target = msg(1);
    store.applyAll([target, msg(3, { type: "recall", target_id: target.id })]);
    store.apply(msg(2, { type: "edit", target_id: target.id, text: "late edit" }));
    expect(store.conversation(C)!.timeline[0]!.text).toBeUndefined();
  });

  it("counts as unread only others' shown messages after the read position", () => {
    const store = new MessageStore(ME);
    store.applyAll([
      msg(1),
      msg(2, { from_user_id: ME }), // sent from another of my devices
      msg(3, { type: "system" }),
      msg(4),
      msg(5),
    ]);
    store.apply(msg(6, { type: "recall", target_id: store.conversation(C)!.timeline[4]!.id }));
    expect(store.unread(C)).toBe(2); // seq 1 and 4; 5 was recalled
    store.markRead(C, 4);
    expect(store.unread(C)).toBe(0);
    store.markRead(C, 2); // a stale receipt does not move the position back
    expect(store.conversation(C)!.readSeq).toBe(4);
  });

  it("flags an unread mention of the user or of everyone, and forgets it once read", () => {
    const store = new MessageStore(ME);
    store.apply(msg(1, { mentions: { user_ids: [3], all: false } }));
    expect(store.mentionedUnread(C)).toBe(false);
    store.apply(msg(2, { mentions: { user_ids: [ME], all: false } }));
    expect(store.mentionedUnread(C)).toBe(true);
    store.markRead(C, 2);
    expect(store.mentionedUnread(C)).toBe(false);
    store.apply(msg(3, { mentions: { user_ids: [], all: true } }));
    expect(store.mentionedUnread(C)).toBe(true);
  });

  it("ends in the same state whatever order a randomized stream of duplicates and events arrives in", () => {
    const base: Message[] = [];
    for (let seq = 1; seq <= 30; seq++) base.push(msg(seq));
    const events: Message[] = [];
    let seq = 31;
    for (const t of base.slice(0, 10)) {
      events.push(msg(seq++, { type: "reaction", target_id: t.id, reaction: { emoji: "👍", op: "add" } }));
      events.push(msg(seq++, { type: "edit", target_id: t.id, text: `edited ${t.seq}` }));
    }
    events.push(msg(seq++, { type: "recall", target_id: base[3]!.id }));
    const all = [...base, ...events];
    const reference = new MessageStore(ME);
    reference.applyAll(all);
    const expected = JSON.stringify(reference.conversation(C)!.timeline);
    let seed = 42;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let round = 0; round < 50; round++) {
      const shuffled = [...all, ...all.filter(() => random() < 0.3)].sort(() => random() - 0.5);
      const store = new MessageStore(ME);
      store.applyAll(shuffled);
      expect(JSON.stringify(store.conversation(C)!.timeline), `round ${round}`).toBe(expected);
      expect(store.ackSeq(C)).toBe(seq - 1);
    }
  });
});
