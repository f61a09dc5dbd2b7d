import { useState } from "preact/hooks";
import { api, ApiError, call } from "../api/client";
import { errorText, t } from "../i18n";
import type { Session } from "../app/session";

export function Login({ onSignedIn }: { onSignedIn: (s: Session) => void }) {
  const [mode, setMode] = useState<"login" | "register">("login");
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [nickname, setNickname] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);

  async function submit(e: Event) {
    e.preventDefault();
    setBusy(true);
    setError("");
    try {
      if (mode === "register") {
        await call(api.POST("/api/user/register", { body: { username, password, nickname: nickname || username } }));
      }
      const r = await call(api.POST("/api/user/login", { body: { username, password } }));
      onSignedIn({ token: r.token, user: r.user });
    } catch (err) {
      setError(errorText(err instanceof ApiError ? err.code : undefined));
    } finally {
      setBusy(false);
    }
  }

  return (
    <main class="auth">
      <h1 class="auth-title">{t("app.name")}</h1>
      <form class="auth-form" onSubmit={submit}>
        <label for="username">{t("auth.username")}</label>
        <input id="username" autocomplete="username" required value={username}
          onInput={(e) => setUsername(e.currentTarget.value)} />
        <label for="password">{t("auth.password")}</label>
        <input id="password" type="password" required
          autocomplete={mode === "login" ? "current-password" : "new-password"} value={password}
          onInput={(e) => setPassword(e.currentTarget.value)} />
        {mode === "register" && (
          <>
            <label for="nickname">{t("auth.nickname")}</label>
            <input id="nickname" value={nickname} onInput={(e) => setNickname(e.currentTarget.value)} />
          </>
        )}
        {error && <p class="auth-error" role="alert">{error}</p>}
        <button class="primary" type="submit" disabled={busy}>
          {mode === "login" ? t("auth.login") : t("auth.register")}
        </button>
        <button class="link" type="button" onClick={() => { setMode(mode === "login" ? "register" : "login"); setError(""); }}>
          {mode === "login" ? t("auth.toRegister") : t("auth.toLogin")}
        </button>
      </form>
    </main>
  );
}
