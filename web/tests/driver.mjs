// Drives the page in a real Chromium for tests/web.rs: one JSON command a line on stdin,
// one JSON answer a line on stdout. Every wait has a deadline; a failed step answers
// {"ok": false, "error": "..."} and the driver goes on to the next command.
//
//   node tests/driver.mjs /usr/bin/chromium
//   {"cmd": "open", "url": "http://127.0.0.1:8080/?format=text"}
//   {"cmd": "hello", "name": "Ferris"}          -> {"ok": true, "state": "ok", "result": "Hello Ferris", "error": ""}
//   {"cmd": "subscribe", "symbol": "TSMC"}      -> ticks with the time each appeared in the page
//   {"cmd": "page"}                             -> the visible text of the method table and notes
//   {"cmd": "protocols"}                        -> the HTTP version of each call so far
//   {"cmd": "screenshot", "path": "page.png"}
//   {"cmd": "quit"}
import puppeteer from "puppeteer-core";
import { createInterface } from "node:readline";

const STEP_DEADLINE_MS = 30_000;
const executablePath = process.argv[2];
if (!executablePath) {
  console.error("usage: node tests/driver.mjs CHROMIUM");
  process.exit(2);
}

const browser = await puppeteer.launch({
  executablePath,
  headless: true,
  // --no-sandbox: Chromium's sandbox refuses to run as root, as tests do here.
  // --ignore-certificate-errors: the TLS test's gateway has a certificate of its own making.
  args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run", "--ignore-certificate-errors"],
  protocolTimeout: STEP_DEADLINE_MS,
});
const page = await browser.newPage();
await page.setViewport({ width: 960, height: 620 });
page.setDefaultTimeout(STEP_DEADLINE_MS);
const consoleLines = [];
page.on("console", (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
page.on("pageerror", (e) => consoleLines.push(`pageerror: ${e.message}`));

async function settled(selector) {
  await page.waitForFunction(
    (s) => ["ok", "error"].includes(document.querySelector(s)?.dataset.state ?? ""),
    { timeout: STEP_DEADLINE_MS },
    selector,
  );
}

const text = (selector) => page.$eval(selector, (e) => e.textContent ?? "");
const errorText = () => page.$eval("#error", (e) => (e.hidden ? "" : e.textContent ?? ""));

const commands = {
  async open({ url }) {
    await page.goto(url, { waitUntil: "load" });
    await page.waitForSelector("body[data-ready=true]");
    return {};
  },
  async hello({ name }) {
    await page.$eval("#name", (e, v) => { e.value = v; }, name);
    await page.$eval("#hello-result", (e) => { delete e.dataset.state; });
    await page.click("#say-hello");
    await settled("#hello-result");
    return {
      state: await page.$eval("#hello-result", (e) => e.dataset.state),
      result: await text("#hello-result"),
      error: await errorText(),
    };
  },
  async subscribe({ symbol }) {
    // The time each tick's row appears in the page, seen from the page itself.
    await page.evaluate(() => {
      window.__tickTimes = [];
      const list = document.getElementById("ticks");
      new MutationObserver((records) => {
        for (const r of records) for (const n of r.addedNodes) {
          window.__tickTimes.push({ text: n.textContent, at: performance.now() });
        }
      }).observe(list, { childList: true });
      delete document.getElementById("stock-status").dataset.state;
    });
    await page.$eval("#symbol", (e, v) => { e.value = v; }, symbol);
    await page.click("#subscribe");
    await settled("#stock-status");
    return {
      state: await page.$eval("#stock-status", (e) => e.dataset.state),
      status: await text("#stock-status"),
      ticks: await page.evaluate(() => window.__tickTimes),
      points: await page.$$eval("#chart circle", (c) => c.length),
      error: await errorText(),
    };
  },
  async page() {
    return {
      methods: await page.$$eval("#methods tbody tr", (rows) => rows.map((r) => r.innerText.replace(/\s+/g, " ").trim())),
      notes: await text("#not-here p"),
    };
  },
  async protocols() {
    // The HTTP version of every gRPC-Web call the page made ("http/1.1", "h2").
    return {
      protocols: await page.evaluate(() => performance.getEntriesByType("resource")
        .filter((e) => e.name.includes("/greeter.Greeter/"))
        .map((e) => e.nextHopProtocol)),
    };
  },
  async screenshot({ path }) {
    await page.screenshot({ path, type: "png" });
    return {};
  },
};

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  const command = JSON.parse(line);
  if (command.cmd === "quit") break;
  let answer;
  try {
    const step = commands[command.cmd];
    if (!step) throw new Error(`unknown command ${command.cmd}`);
    answer = { ok: true, ...(await step(command)) };
  } catch (e) {
    answer = { ok: false, error: String(e?.message ?? e), console: consoleLines.slice(-20) };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
}
await browser.close();
process.exit(0); // stdin may still be open: "quit" ends the driver all the same
