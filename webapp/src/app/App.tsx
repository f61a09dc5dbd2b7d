import { useState } from "preact/hooks";
import { Login } from "../me/Login";
import { loadSession, saveSession, type Session } from "./session";
import { Shell } from "./Shell";

export function App() {
  const [session, setSession] = useState<Session | null>(() => loadSession());
  if (!session) {
    return <Login onSignedIn={(s) => { saveSession(s); setSession(s); }} />;
  }
  return <Shell session={session} onSignOut={() => { saveSession(null); setSession(null); }} />;
}
