// One chat: the timeline from the store (own bubbles right and green, others left and white, time separators,
// recalls as grey lines), the pending sends ("sending…", or "failed" with a retry that reuses the client_msg_id),
// older history on demand, and the composer. Reading the newest message marks the conversation read. The view
// follows new messages only while the reader is at the bottom.
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import { api, call, callVoid } from "../api/client";
import { t } from "../i18n";
import type { Connection } from "../sync/connection";
import type { Message, MessageStore } from "../sync/store";
import { preview } from "./preview";
import type { ChatTarget } from "./target";

interface Props {
  target: ChatTarget;
  store: MessageStore;
  connection: Connection;
  me: number;
  /** The user's display name (their avatar's initial). */
  myName: string;
  onBack: () => void;
  onRead: (seq: number) => void;
}

/** A time separator goes before a message more than this long after the one before it (WeChat: 5 minutes). */
const SEPARATOR_GAP_MS = 5 * 60 * 1000;
const PAGE = 30;

export function ChatView({ target, store, connection, me, myName, onBack, onRead }: Props) {
  const [text, setText] = useState("");
  const [hasMore, setHasMore] = useState(true);
  const list = useRef<HTMLOListElement>(null);
  const atBottom = useRef(true);
  const state = store.conversation(target.conversationId);
  const timeline = state?.timeline ?? [];
  const pending = [...connection.pending.values()].filter((p) => p.conversationId === target.conversationId);
  const newest = timeline[timeline.length - 1];

  async function loadOlder() {
    const before = timeline[0]?.seq;
    try {
      const page = await call(api.GET("/api/messages/history", {
        params: { query: { conversation_id: target.conversationId, limit: PAGE, ...(before ? { before_seq: before } : {}) } },
      }));
      store.applyAll(page.messages);
      setHasMore(page.has_more);
    } catch {
      /* the button stays; the banner says when the server is unreachable */
    }
  }

  useEffect(() => {
    if (timeline.length < PAGE) void loadOlder();
  }, []);

  // Keep the newest message in view only when the reader was already there.
  useLayoutEffect(() => {
    const el = list.current;
    if (el && atBottom.current) el.scrollTop = el.scrollHeight;
  }, [timeline.length, pending.length]);

  useEffect(() => {
    if (!newest || document.visibilityState !== "visible") return;
    if (newest.seq > (state?.readSeq ?? 0)) {
      onRead(newest.seq);
      void callVoid(api.POST("/api/messages/read", { body: { conversation_id: target.conversationId, seq: newest.seq } })).catch(() => {});
    }
  }, [newest?.seq]);

  function send(e: Event) {
    e.preventDefault();
    const body = text.trim();
    if (!body) return;
    const to = target.groupId !== undefined ? { group_id: target.groupId } : { to_user_id: target.toUserId };
    connection.send(target.conversationId, { ...to, type: "text", text: body });
    setText("");
    atBottom.current = true;
  }

  return (
    <div class="chat">
      <header class="chat-header">
        <button class="back" onClick={onBack} aria-label={t("chat.back")}>‹</button>
        <h2 class="chat-title">{target.title}</h2>
      </header>
      <ol class="messages" ref={list} aria-live="polite"
        onScroll={(e) => {
          const el = e.currentTarget;
          atBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
        }}>
        {hasMore && (
          <li class="older"><button class="link" onClick={() => void loadOlder()}>{t("chat.older")}</button></li>
        )}
        {timeline.map((m, i) => (
          <Entry key={m.id} m={m} me={me} previous={timeline[i - 1]} title={target.title} myName={myName} />
        ))}
        {pending.map((p) => (
          <li key={p.clientMsgId} class="row mine">
            <div class="bubble pending">{String(p.body.text ?? "")}</div>
            {p.failed ? (
              <button class="link failed" onClick={() => connection.resend(p.clientMsgId)}>{t("chat.failed")}</button>
            ) : (
              <span class="status">{t("chat.sending")}</span>
            )}
          </li>
        ))}
      </ol>
      <form class="composer" onSubmit={send}>
        <label class="visually-hidden" for="composer-text">{t("chat.input")}</label>
        <textarea id="composer-text" rows={1} value={text} onInput={(e) => setText(e.currentTarget.value)}
          onKeyDown={(e) => {
            if (e.key === "Enter" && !e.shiftKey && !e.isComposing) send(e);
          }} />
        <button class="primary" type="submit" disabled={!text.trim()}>{t("chat.send")}</button>
      </form>
    </div>
  );
}

interface EntryProps {
  m: Message;
  me: number;
  previous: Message | undefined;
  title: string;
  myName: string;
}

function Entry({ m, me, previous, title, myName }: EntryProps) {
  const separator = !previous || Date.parse(m.created_at) - Date.parse(previous.created_at) > SEPARATOR_GAP_MS;
  const when = new Date(m.created_at).toLocaleString(undefined, { month: "numeric", day: "numeric", hour: "2-digit", minute: "2-digit" });
  const mine = m.from_user_id === me;
  let body;
  if (m.recalled_at) {
    body = <p class="notice">{mine ? t("chat.recalled.me") : t("chat.recalled.other", { name: title })}</p>;
  } else if (m.type === "system") {
    body = <p class="notice">{preview(m, me)}</p>;
  } else {
    body = (
      <div class={"row" + (mine ? " mine" : "")}>
        <span class="avatar small" aria-hidden="true">{(mine ? myName : title).slice(0, 1).toUpperCase()}</span>
        <div class="bubble">
          {m.type === "text" ? m.text : preview(m, me)}
          {m.edited_at && <span class="edited"> ({t("chat.edited")})</span>}
        </div>
      </div>
    );
  }
  return (
    <li>
      {separator && <p class="time-separator">{when}</p>}
      {body}
    </li>
  );
}
