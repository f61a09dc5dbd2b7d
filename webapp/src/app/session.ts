// The signed-in session, kept in localStorage so a reload stays signed in: the token (sent as a bearer header,
// never in a URL), the user, and this browser's device id (the server keeps a delivery cursor per device).
import { setToken, type User } from "../api/client";

const KEY = "gochat.session";
const DEVICE_KEY = "gochat.device";

export interface Session {
  token: string;
  user: User;
}

export function loadSession(): Session | null {
  try {
    const s = JSON.parse(localStorage.getItem(KEY) ?? "null") as Session | null;
    if (s && typeof s.token === "string" && s.user) {
      setToken(s.token);
      return s;
    }
  } catch {
    /* a damaged entry is a signed-out session */
  }
  return null;
}

export function saveSession(s: Session | null): void {
  if (s) localStorage.setItem(KEY, JSON.stringify(s));
  else localStorage.removeItem(KEY);
  setToken(s?.token ?? null);
}

/** This browser's device id (the server's `device`: 1–64 of [A-Za-z0-9_-]). */
export function deviceId(): string {
  let id = localStorage.getItem(DEVICE_KEY);
  if (!id) {
    id = "web-" + crypto.randomUUID().replace(/-/g, "").slice(0, 16);
    localStorage.setItem(DEVICE_KEY, id);
  }
  return id;
}
