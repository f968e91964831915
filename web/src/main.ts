// The page: SayHello, a live GetStockPrice chart, and what cannot run from a browser.
// Settings come from the URL (?endpoint=…&format=text&deadline=5) or the form above.
import { GrpcWebFetchTransport } from "@protobuf-ts/grpcweb-transport";
import { GreeterClient } from "./gen/greeter.client";
import { Greeter } from "./gen/greeter";
import { PriceChart } from "./chart";
import { describe } from "./errors";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

const params = new URLSearchParams(location.search);
const endpoint = $<HTMLInputElement>("endpoint");
const format = $<HTMLSelectElement>("format");
const deadline = $<HTMLInputElement>("deadline");
endpoint.value = params.get("endpoint") ?? location.origin;
format.value = params.get("format") === "text" ? "text" : "binary";
deadline.value = params.get("deadline") ?? "10";

const deadlineSeconds = () => Math.max(0.1, Number(deadline.value) || 10);

function client(): GreeterClient {
  const transport = new GrpcWebFetchTransport({
    baseUrl: endpoint.value.replace(/\/$/, ""),
    format: format.value === "text" ? "text" : "binary",
    timeout: deadlineSeconds() * 1000,
  });
  return new GreeterClient(transport);
}

const error = $<HTMLParagraphElement>("error");
function showError(err: unknown): string {
  const words = describe(err, endpoint.value, deadlineSeconds());
  error.textContent = words;
  error.hidden = false;
  return words;
}
function clearError(): void {
  error.hidden = true;
  error.textContent = "";
}

// SayHello
const helloResult = $<HTMLParagraphElement>("hello-result");
$<HTMLFormElement>("hello-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  clearError();
  helloResult.textContent = "…";
  helloResult.dataset.state = "pending";
  try {
    const { response } = await client().sayHello({ name: $<HTMLInputElement>("name").value });
    helloResult.textContent = response.message;
    helloResult.dataset.state = "ok";
  } catch (err) {
    helloResult.textContent = "";
    helloResult.dataset.state = "error";
    showError(err);
  }
});

// GetStockPrice: each tick drawn as it arrives.
const TICKS_SHOWN = 5;
const chart = new PriceChart($<SVGSVGElement & HTMLElement>("chart"), TICKS_SHOWN);
const ticks = $<HTMLOListElement>("ticks");
const stockStatus = $<HTMLParagraphElement>("stock-status");
const subscribe = $<HTMLButtonElement>("subscribe");
const stop = $<HTMLButtonElement>("stop");
let running: AbortController | null = null;

$<HTMLFormElement>("stock-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  clearError();
  chart.clear();
  ticks.replaceChildren();
  const abort = new AbortController();
  running = abort;
  subscribe.disabled = true;
  stop.disabled = false;
  stockStatus.textContent = "subscribed, waiting for ticks…";
  stockStatus.dataset.state = "pending";
  const started = performance.now();
  try {
    const call = client().getStockPrice({ symbol: $<HTMLInputElement>("symbol").value }, { abort: abort.signal });
    for await (const tick of call.responses) {
      const row = document.createElement("li");
      const at = ((performance.now() - started) / 1000).toFixed(3);
      row.textContent = `${tick.symbol} ${tick.price.toFixed(2)} (+${at} s)`;
      ticks.append(row);
      chart.add(tick.price);
    }
    await call.status;
    stockStatus.textContent = `done: ${ticks.children.length} ticks`;
    stockStatus.dataset.state = "ok";
  } catch (err) {
    stockStatus.textContent = `ended after ${ticks.children.length} ticks`;
    stockStatus.dataset.state = "error";
    showError(err);
  } finally {
    running = null;
    subscribe.disabled = false;
    stop.disabled = true;
  }
});
stop.addEventListener("click", () => running?.abort());

// What the server offers, from the service's own description.
const rows = $<HTMLTableSectionElement>("methods").querySelector("tbody")!;
for (const m of Greeter.methods) {
  const pattern = m.clientStreaming
    ? m.serverStreaming ? "bidirectional streaming" : "client streaming"
    : m.serverStreaming ? "server streaming" : "unary";
  const row = document.createElement("tr");
  const usable = !m.clientStreaming;
  row.innerHTML = `<td><code>${m.name}</code></td><td>${pattern}</td>` +
    `<td class="${usable ? "yes" : "no"}">${usable ? "yes, above" : "no: needs request streaming"}</td>`;
  rows.append(row);
}

document.body.dataset.ready = "true";
