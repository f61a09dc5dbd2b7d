// The next web client (/app/, issue 20 in progress), end to end in headless Chromium: a person on a phone-sized
// screen in Chinese and one on a desktop in English sign up, become friends (through the API: the client has no
// friend-request screen yet), and chat both ways; the page runs under the node's strict CSP without a violation.
import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { base, launch, shots } from "./browser.mjs";

let browser;

before(async () => {
  browser = await launch();
});
after(async () => browser && (await browser.close()));

async function person(name, { locale, viewport }) {
  const context = await browser.newContext({ locale, viewport });
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(String(e)));
  // Console errors (a CSP violation is one) and failed requests, each with its URL.
  page.on("console", (m) => { if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) problems.push(m.text()); });
  page.on("response", (r) => { if (r.status() >= 400) problems.push(`${r.status()} ${r.request().method()} ${r.url()}`); });
  await page.goto(base + "/app/");
  await page.click("button.link"); // to sign-up
  await page.fill("#username", name);
  await page.fill("#password", "password123");
  await page.fill("#nickname", name.toUpperCase());
  await page.click("button[type=submit]");
  await page.waitForSelector(".shell");
  const session = await page.evaluate(() => JSON.parse(localStorage.getItem("gochat.session")));
  return { page, problems, id: session.user.id, token: session.token };
}

async function apiCall(path, token, body) {
  const r = await fetch(base + path, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  assert.ok(r.ok, `${path}: ${r.status}`);
  return r.json();
}

test("two people chat both ways in the new client, on a phone in Chinese and on a desktop in English", async () => {
  const suffix = Math.random().toString(36).slice(2, 8);
  const li = await person("li" + suffix, { locale: "zh-CN", viewport: { width: 390, height: 844 } });
  const ann = await person("ann" + suffix, { locale: "en-US", viewport: { width: 1280, height: 800 } });
  assert.equal(await li.page.textContent(".tab-chats .tab-label"), "微信");
  assert.equal(await ann.page.textContent(".tab-chats .tab-label"), "Chats");

  const request = await apiCall("/api/friends/request", li.token, { to_user_id: ann.id });
  await apiCall("/api/friends/accept", ann.token, { request_id: request.id });

  // Li opens Ann from the contacts and writes; on a phone the chat takes the whole screen.
  await li.page.click(".tab-contacts");
  await li.page.click(`.chat-row >> text=ANN${suffix.toUpperCase()}`);
  await li.page.waitForSelector(".chat-pane .chat-title");
  assert.equal(await li.page.isVisible(".list-pane"), false, "the list is hidden behind the chat on a phone");
  await li.page.fill("#composer-text", "你好 Ann 👋");
  await li.page.press("#composer-text", "Enter");
  await li.page.waitForSelector(".row.mine .bubble:not(.pending) >> text=你好 Ann 👋");

  // Ann sees it in the list with an unread badge, opens it, and answers.
  await ann.page.waitForSelector(".chat-row .badge >> text=1", { timeout: 10000 });
  await ann.page.click(`.chat-row >> text=LI${suffix.toUpperCase()}`);
  await ann.page.waitForSelector(".row:not(.mine) .bubble >> text=你好 Ann 👋");
  await ann.page.fill("#composer-text", "hi Li!");
  await ann.page.click(".composer button[type=submit]");
  await li.page.waitForSelector(".row:not(.mine) .bubble >> text=hi Li!", { timeout: 10000 });
  await ann.page.waitForSelector(".chat-row .badge", { state: "detached" });

  // Back to the list on the phone.
  await li.page.click(".back");
  await li.page.waitForSelector(".list-pane .chat-row >> text=hi Li!");

  if (shots) {
    await li.page.screenshot({ path: shots + "/app-phone.png" });
    await ann.page.screenshot({ path: shots + "/app-desktop.png" });
  }
  assert.deepEqual([...li.problems, ...ann.problems], [], "no script errors or CSP violations");
});
