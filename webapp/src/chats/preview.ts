// One line about a message, for the chat list and notifications: its text, or its kind in the user's language.
import { t } from "../i18n";
import type { Message } from "../sync/store";

export function preview(m: Message | undefined, me: number): string {
  if (!m) return "";
  if (m.recalled_at) return m.recalled_by === me || m.from_user_id === me ? t("chat.recalled.me") : t("chat.recalled.other", { name: "" });
  switch (m.type) {
    case "text": return m.text ?? "";
    case "image": return t("msg.image");
    case "video": return t("msg.video");
    case "voice": return t("msg.voice");
    case "file": return t("msg.file");
    case "merged": return t("msg.merged");
    default: return t("msg.system");
  }
}

/** "14:05" today, "12/01" before (the list's time column). */
export function shortTime(iso: string, now = new Date()): string {
  const d = new Date(iso);
  const sameDay = d.toDateString() === now.toDateString();
  const pad = (n: number) => String(n).padStart(2, "0");
  return sameDay ? `${pad(d.getHours())}:${pad(d.getMinutes())}` : `${pad(d.getMonth() + 1)}/${pad(d.getDate())}`;
}
