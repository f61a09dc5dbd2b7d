import { useEffect, useState } from "preact/hooks";
import { api, call, type UserSummary } from "../api/client";
import { t } from "../i18n";

export function Contacts({ onOpen }: { onOpen: (friend: UserSummary) => void }) {
  const [friends, setFriends] = useState<UserSummary[] | null>(null);
  useEffect(() => {
    call(api.GET("/api/friends")).then(setFriends, () => setFriends([]));
  }, []);
  if (!friends) return null;
  if (friends.length === 0) return <p class="empty">{t("contacts.empty")}</p>;
  return (
    <ul class="chat-list">
      {friends.map((f) => {
        const name = f.remark || f.nickname || f.username;
        return (
          <li key={f.id}>
            <button class="chat-row" onClick={() => onOpen(f)}>
              <span class="avatar" aria-hidden="true">{name.slice(0, 1).toUpperCase()}</span>
              <span class="chat-row-main"><span class="chat-row-title">{name}</span></span>
            </button>
          </li>
        );
      })}
    </ul>
  );
}
