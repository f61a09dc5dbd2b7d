// The conversation list: pinned first on grey, newest first, an unread badge (a dot when muted), "[有人@我]" for an
// unread mention, the draft marker. Every row is a button (reachable with Tab).
import type { Conversation } from "../api/client";
import { t } from "../i18n";
import type { MessageStore } from "../sync/store";
import { preview, shortTime } from "./preview";
import { targetOf, type ChatTarget } from "./target";

interface Props {
  conversations: Conversation[];
  store: MessageStore;
  me: number;
  selected: string | undefined;
  onOpen: (target: ChatTarget) => void;
}

export function ChatList({ conversations, store, me, selected, onOpen }: Props) {
  if (conversations.length === 0) return <p class="empty">{t("chats.empty")}</p>;
  const rows = conversations.map((c) => {
    const timeline = store.conversation(c.conversation_id)?.timeline;
    const last = timeline?.[timeline.length - 1] ?? c.last_message ?? undefined;
    return { c, last, at: last?.created_at ?? "" };
  });
  rows.sort((a, b) => Number(b.c.pinned) - Number(a.c.pinned) || b.at.localeCompare(a.at));
  return (
    <ul class="chat-list">
      {rows.map(({ c, last }) => {
        const target = targetOf(c);
        const unread = store.unread(c.conversation_id);
        const mentioned = store.mentionedUnread(c.conversation_id);
        return (
          <li key={c.conversation_id} class={(c.pinned ? "pinned" : "") + (selected === c.conversation_id ? " selected" : "")}>
            <button class="chat-row" onClick={() => onOpen(target)}>
              <span class="avatar" aria-hidden="true">{target.title.slice(0, 1).toUpperCase()}</span>
              <span class="chat-row-main">
                <span class="chat-row-top">
                  <span class="chat-row-title">{target.title}</span>
                  <span class="chat-row-time">{last ? shortTime(last.created_at) : ""}</span>
                </span>
                <span class="chat-row-preview">
                  {mentioned && <span class="mention">{t("chats.mentioned")}</span>}
                  {!mentioned && c.draft && <span class="mention">{t("chats.draft")}</span>}
                  {c.draft && !mentioned ? c.draft : preview(last, me)}
                </span>
              </span>
              {unread > 0 && (c.muted ? <span class="badge dot" aria-label={t("chat.unread")} /> : <span class="badge">{unread > 99 ? "99+" : unread}</span>)}
              {c.muted && <span class="muted-icon" aria-hidden="true" />}
            </button>
          </li>
        );
      })}
    </ul>
  );
}
