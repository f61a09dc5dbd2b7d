// Message catalogues and the active locale: zh-CN for Chinese browsers, English otherwise, or what the user chose
// under Me (kept in localStorage).
import { en } from "./en";
import { zhCN, type Key } from "./zh-CN";

export type Locale = "zh-CN" | "en";
const catalogues = { "zh-CN": zhCN, en } as const;
const STORAGE_KEY = "gochat.locale";

export function detectLocale(languages: readonly string[], stored: string | null): Locale {
  if (stored === "zh-CN" || stored === "en") return stored;
  return languages.some((l) => l.toLowerCase().startsWith("zh")) ? "zh-CN" : "en";
}

let locale: Locale = detectLocale(
  typeof navigator === "undefined" ? [] : navigator.languages ?? [navigator.language],
  typeof localStorage === "undefined" ? null : localStorage.getItem(STORAGE_KEY),
);

export function currentLocale(): Locale {
  return locale;
}

export function setLocale(next: Locale): void {
  locale = next;
  localStorage.setItem(STORAGE_KEY, next);
  document.documentElement.lang = next;
}

/** The message for `key` in the active locale, with `{name}` placeholders filled from `params`. */
export function t(key: Key, params: Record<string, string | number> = {}): string {
  const text = catalogues[locale][key] ?? zhCN[key];
  return text.replace(/\{(\w+)\}/g, (_, p: string) => String(params[p] ?? ""));
}

/** A message for an API error `code` (ErrorBody.code), or the generic one. */
export function errorText(code: string | undefined): string {
  const key = `error.${code}` as Key;
  return key in zhCN ? t(key) : t("error.generic");
}
