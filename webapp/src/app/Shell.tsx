// The signed-in app: on phones four tabs at the bottom and a full-screen chat with a back button; on desktop a
// narrow icon rail, the list and the chat side by side (styles.css decides by width; the markup is the same).
import { useEffect, useMemo, useReducer, useState } from "preact/hooks";
import { api, call, type Conversation, type UserSummary } from "../api/client";
import { t } from "../i18n";
import { ChatList } from "../chats/ChatList";
import { ChatView } from "../chats/ChatView";
import { directConversationId, type ChatTarget } from "../chats/target";
import { Contacts } from "../contacts/Contacts";
import { Me } from "../me/Me";
import { Connection } from "../sync/connection";
import { MessageStore } from "../sync/store";
import { deviceId, type Session } from "./session";

type Tab = "chats" | "contacts" | "discover" | "me";

export function Shell({ session, onSignOut }: { session: Session; onSignOut: () => void }) {
  const me = session.user.id;
  const [, bump] = useReducer((n: number, _: null) => n + 1, 0);
  const redraw = () => bump(null);
  const [tab, setTab] = useState<Tab>("chats");
  const [conversations, setConversations] = useState<Conversation[]>([]);
  const [open, setOpen] = useState<ChatTarget | null>(null);
  const store = useMemo(() => new MessageStore(me), [me]);
  const connection = useMemo(
    () => new Connection(store, deviceId(), {
      changed: redraw,
      frame: (f) => {
        if (f.type === "conversation_updated" || f.type === "group_updated" || f.type === "friend_accepted") void refresh();
      },
      signedOut: onSignOut,
    }),
    [store],
  );

  async function refresh() {
    try {
      const list = await call(api.GET("/api/conversations"));
      for (const c of list) store.markRead(c.conversation_id, c.read_seq);
      setConversations(list);
    } catch {
      /* the banner shows the connection; the list stays as it was */
    }
  }

  useEffect(() => {
    void refresh();
    connection.start();
    return () => connection.stop();
  }, [connection]);

  // A message in a conversation the list does not know yet (a new friend, a new group): fetch the list again.
  const known = new Set(conversations.map((c) => c.conversation_id));
  const unknown = store.conversationIds().some((id) => !known.has(id));
  useEffect(() => {
    if (unknown) void refresh();
  }, [unknown]);

  function openFriend(friend: UserSummary) {
    setOpen({ conversationId: directConversationId(me, friend.id), title: friend.nickname || friend.username, toUserId: friend.id });
    setTab("chats");
  }

  const tabs: [Tab, string][] = [["chats", t("tab.chats")], ["contacts", t("tab.contacts")], ["discover", t("tab.discover")], ["me", t("tab.me")]];
  const unreadTotal = conversations.reduce((n, c) => n + (c.muted ? 0 : store.unread(c.conversation_id)), 0);

  return (
    <div class={"shell" + (open ? " chat-open" : "")}>
      {connection.status !== "online" && (
        <div class="banner" role="status">{connection.status === "offline" ? t("conn.offline") : t("conn.connecting")}</div>
      )}
      <nav class="tabs" aria-label={t("app.name")}>
        {tabs.map(([id, label]) => (
          <button key={id} class={"tab tab-" + id + (tab === id ? " active" : "")} aria-current={tab === id ? "page" : undefined}
            onClick={() => setTab(id)}>
            <span class="tab-icon" aria-hidden="true" />
            <span class="tab-label">{label}</span>
            {id === "chats" && unreadTotal > 0 && <span class="badge">{unreadTotal > 99 ? "99+" : unreadTotal}</span>}
          </button>
        ))}
      </nav>
      <section class="pane list-pane">
        <h1 class="pane-title">{tabs.find(([id]) => id === tab)![1]}</h1>
        {tab === "chats" && (
          <ChatList conversations={conversations} store={store} me={me} selected={open?.conversationId}
            onOpen={(target) => setOpen(target)} />
        )}
        {tab === "contacts" && <Contacts onOpen={openFriend} />}
        {tab === "discover" && <p class="empty">{t("discover.soon")}</p>}
        {tab === "me" && <Me user={session.user} onSignOut={onSignOut} onLocale={redraw} />}
      </section>
      <section class="pane chat-pane">
        {open ? (
          <ChatView key={open.conversationId} target={open} store={store} connection={connection} me={me}
            myName={session.user.nickname || session.user.username}
            onBack={() => setOpen(null)} onRead={(seq) => store.markRead(open.conversationId, seq)} />
        ) : (
          <p class="empty chat-none">{t("chats.none")}</p>
        )}
      </section>
    </div>
  );
}
