// What the browser tests share: the node under test and the headless Chromium they drive (scripts/test.sh gives
// GOCHAT_E2E_URL and CHROMIUM).
import { chromium } from "playwright-core";

export const base = process.env.GOCHAT_E2E_URL || "http://127.0.0.1:8080";
export const shots = process.env.GOCHAT_E2E_SHOTS;

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
}
