// Metrics: GET /metrics (Prometheus text) every 2 s, parsed here; rates and averages between two scrapes
// drawn as live charts (tokens/s, TTFT, queue depth, requests/s) plus a few totals.
import { request } from "../api.js";
import { LineChart, fmtValue } from "../chart.js";
import { clear, errorBox, fmtBytes, h } from "../dom.js";

const INTERVAL_MS = 2000;
// Rates need two scrapes: the second comes this soon after the first, so no chart starts empty.
const FIRST_GAP_MS = 400;
const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** Prometheus text exposition → Map(name → [{labels, value}]). */
export function parseMetrics(text) {
  const out = new Map();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = LINE.exec(line);
    if (!match) continue;
    const labels = {};
    for (const m of (match[2] || "").matchAll(LABEL)) labels[m[1]] = m[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    const value = Number(match[3]);
    if (!out.has(match[1])) out.set(match[1], []);
    out.get(match[1]).push({ labels, value });
  }
  return out;
}

function sum(metrics, name, keep = () => true) {
  return (metrics.get(name) || []).filter((s) => keep(s.labels)).reduce((a, s) => a + s.value, 0);
}

/** A quantile of a histogram summed over all its label sets (linear within a bucket). */
function quantile(metrics, name, q) {
  const buckets = new Map();
  for (const s of metrics.get(`${name}_bucket`) || []) {
    const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
    buckets.set(le, (buckets.get(le) || 0) + s.value);
  }
  const sorted = [...buckets.entries()].sort((a, b) => a[0] - b[0]);
  const total = sorted.length ? sorted[sorted.length - 1][1] : 0;
  if (!total) return null;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const [le, count] of sorted) {
    if (count >= rank) {
      if (le === Infinity) return prevLe;
      const within = count - prevCount;
      return prevLe + (within ? ((rank - prevCount) / within) * (le - prevLe) : 0);
    }
    prevLe = le;
    prevCount = count;
  }
  return prevLe;
}

export function mount(view) {
  let disposed = false;
  let previous = null; // {t, req, errors, tokens, ttftSum, ttftCount}
  let timer = null;

  const status = h("div", { "aria-live": "polite" });
  const tiles = h("div", { class: "tiles" });
  const models = h("div", { class: "table-wrap" });
  const defs = [
    { key: "tokens", title: "Generated tokens per second", unit: "tok/s", series: [{ name: "tokens/s", color: "--chart-1" }] },
    { key: "ttft", title: "Time to first token (average)", unit: "ms", series: [{ name: "TTFT", color: "--chart-2" }] },
    { key: "queue", title: "Queue depth", unit: "", series: [{ name: "queued", color: "--chart-4" }, { name: "running", color: "--chart-3" }] },
    { key: "requests", title: "Requests per second", unit: "req/s", series: [{ name: "all", color: "--chart-1" }, { name: "errors", color: "--chart-4" }] },
  ];
  const charts = {};
  const chartCards = defs.map((d) => {
    const canvas = h("canvas", { class: "chart", role: "img", "aria-label": d.title });
    const latest = h("span", { class: "chart-latest" });
    charts[d.key] = { chart: new LineChart(canvas, { series: d.series, unit: d.unit }), latest, def: d };
    return h("section", { class: "card chart-card", "aria-label": d.title },
      h("div", { class: "chart-head" }, h("h2", { text: d.title }), latest),
      h("div", { class: "legend small" }, d.series.map((s) => {
        const swatch = h("span", { class: "swatch" });
        swatch.style.background = `var(${s.color})`;
        return h("span", {}, swatch, s.name);
      })),
      canvas);
  });

  function tile(label, value) {
    return h("div", { class: "tile" }, h("div", { class: "tile-value", text: value }), h("div", { class: "tile-label muted small", text: label }));
  }

  async function poll() {
    let metrics;
    try {
      const response = await request("/metrics");
      metrics = parseMetrics(await response.text());
      clear(status);
    } catch (error) {
      if (!disposed) clear(status, errorBox(error));
      return;
    }
    if (disposed) return;
    const t = Date.now();
    // this page's own scrapes and the UI's static files are not traffic worth charting
    const notScrape = (l) => l.route !== "/metrics" && l.route !== "/ui" && !l.route?.startsWith("/ui/");
    const now = {
      t,
      req: sum(metrics, "deskml_requests_total", notScrape),
      errors: sum(metrics, "deskml_requests_total", (l) => notScrape(l) && Number(l.status) >= 400),
      tokens: sum(metrics, "deskml_tokens_total", (l) => l.kind === "completion"),
      ttftSum: sum(metrics, "deskml_time_to_first_token_seconds_sum"),
      ttftCount: sum(metrics, "deskml_time_to_first_token_seconds_count"),
    };
    const queued = sum(metrics, "deskml_queued_requests");
    const running = sum(metrics, "deskml_running_requests");
    // the average since the server started: what is known before (or between) requests
    const ttftAverage = now.ttftCount > 0 ? (now.ttftSum / now.ttftCount) * 1000 : null;
    if (previous) {
      const dt = (t - previous.t) / 1000;
      const dCount = now.ttftCount - previous.ttftCount;
      charts.tokens.chart.push(t, [Math.max(0, (now.tokens - previous.tokens) / dt)]);
      charts.ttft.chart.push(t, [dCount > 0 ? ((now.ttftSum - previous.ttftSum) / dCount) * 1000 : null]);
      charts.requests.chart.push(t, [Math.max(0, (now.req - previous.req) / dt), Math.max(0, (now.errors - previous.errors) / dt)]);
    }
    charts.queue.chart.push(t, [queued, running]);
    previous = now;
    for (const { chart, latest, def } of Object.values(charts)) {
      chart.draw();
      latest.textContent = def.series.map((s, i) => fmtValue(chart.latest(i), def.unit)).join(" / ");
    }
    if (charts.ttft.chart.latest(0) === null && ttftAverage !== null) {
      showTtftSinceStart(ttftAverage);
    }

    const hits = sum(metrics, "deskml_cache_requests_total", (l) => l.result === "hit");
    const misses = sum(metrics, "deskml_cache_requests_total", (l) => l.result === "miss");
    const p50 = quantile(metrics, "deskml_request_duration_seconds", 0.5);
    const p95 = quantile(metrics, "deskml_request_duration_seconds", 0.95);
    const ttft95 = quantile(metrics, "deskml_time_to_first_token_seconds", 0.95);
    clear(tiles,
      tile("models loaded", String(sum(metrics, "deskml_models_loaded"))),
      tile("requests in flight", String(sum(metrics, "deskml_requests_in_flight"))),
      tile("requests served", Math.round(now.req).toLocaleString()),
      tile("tokens generated", Math.round(now.tokens).toLocaleString()),
      tile("latency p50 / p95", p50 === null ? "–" : `${fmtValue(p50 * 1000, "")} / ${fmtValue(p95 * 1000, "ms")}`),
      tile("TTFT average / p95", ttft95 === null || ttftAverage === null ? "–"
        : `${fmtValue(ttftAverage, "")} / ${fmtValue(ttft95 * 1000, "ms")}`),
      tile("cache hit ratio", hits + misses ? `${Math.round((hits / (hits + misses)) * 100)}%` : "–"));

    const memory = metrics.get("deskml_model_memory_bytes") || [];
    const by = (name, model) => (metrics.get(name) || []).find((s) => s.labels.model === model)?.value;
    clear(models, memory.length ? h("table", {},
      h("thead", {}, h("tr", {}, ["Model", "Kind", "Memory", "Slots", "Running", "Queued"].map((x, i) => h("th", { text: x, class: i > 1 ? "num" : "" })))),
      h("tbody", {}, memory.map((s) => h("tr", {},
        h("td", { class: "mono", text: s.labels.model }), h("td", { text: s.labels.kind }),
        h("td", { class: "num", text: fmtBytes(s.value) }),
        h("td", { class: "num", text: by("deskml_slots", s.labels.model) ?? "" }),
        h("td", { class: "num", text: by("deskml_running_requests", s.labels.model) ?? "" }),
        h("td", { class: "num", text: by("deskml_queued_requests", s.labels.model) ?? "" })))))
      : h("p", { class: "muted", text: "No model is loaded." }));
  }

  clear(view,
    h("div", { class: "page-head" }, h("h1", { text: "Metrics" }),
      h("span", { class: "muted small", text: "Live from /metrics every 2 s; the charts show the last 5 minutes." })),
    status, tiles,
    h("div", { class: "grid charts" }, chartCards),
    h("section", { class: "card section-gap", "aria-label": "Loaded models" }, h("h2", { text: "Loaded models" }), models));
  function showTtftSinceStart(average) {
    charts.ttft.latest.textContent = `${fmtValue(average, "ms")} since start`;
  }

  poll().then(() => { if (!disposed) setTimeout(() => { if (!disposed) poll(); }, FIRST_GAP_MS); });
  timer = setInterval(() => { if (!document.hidden) poll(); }, INTERVAL_MS);

  return () => {
    disposed = true;
    clearInterval(timer);
    for (const { chart } of Object.values(charts)) chart.destroy();
  };
}
