import type { User } from "../api/client";
import { currentLocale, setLocale, t, type Locale } from "../i18n";

export function Me({ user, onSignOut, onLocale }: { user: User; onSignOut: () => void; onLocale: () => void }) {
  return (
    <div class="me">
      <div class="me-card">
        <span class="avatar large" aria-hidden="true">{(user.nickname || user.username).slice(0, 1).toUpperCase()}</span>
        <div>
          <p class="me-name">{user.nickname || user.username}</p>
          <p class="me-id">{user.username}</p>
        </div>
      </div>
      <label class="me-row" for="locale">{t("me.language")}</label>
      <select id="locale" value={currentLocale()}
        onChange={(e) => { setLocale(e.currentTarget.value as Locale); onLocale(); }}>
        <option value="zh-CN">简体中文</option>
        <option value="en">English</option>
      </select>
      <button class="danger" onClick={onSignOut}>{t("me.logout")}</button>
    </div>
  );
}
