// History: the request history (GET /api/history, admin scope), filterable and paged; one request's
// input, output and timings on demand.
import { api } from "../api.js";
import { clear, errorBox, field, fmtNs, fmtTime, h, pretty, select, spinner } from "../dom.js";
import { renderCode } from "../markdown.js";

const STATUS = [
  { value: "", label: "any" }, { value: "ok", label: "ok (2xx/3xx)" }, { value: "error", label: "errors" },
  { value: "2xx", label: "2xx" }, { value: "4xx", label: "4xx" }, { value: "5xx", label: "5xx" }, { value: "499", label: "499 (client left)" },
];
const SINCE = [
  { value: "", label: "all time" }, { value: "15m", label: "15 minutes" }, { value: "1h", label: "1 hour" },
  { value: "24h", label: "24 hours" }, { value: "7d", label: "7 days" },
];

function statusBadge(status) {
  const kind = status >= 500 ? "error" : status >= 400 ? "warn" : "ok";
  return h("span", { class: `badge ${kind}`, text: String(status) });
}

export function mount(view) {
  let disposed = false;
  let cursor = null;
  let selected = null;

  const model = h("input", { type: "text", placeholder: "any", autocapitalize: "none" });
  const user = h("input", { type: "text", placeholder: "key id or user", autocapitalize: "none" });
  const status = select(STATUS, "");
  const since = select(SINCE, "");
  const withContent = h("input", { type: "checkbox", checked: true });
  // the UI's own polling (/api/ps, /api/tags, /metrics…) and its page would bury real requests
  const showUi = h("input", { type: "checkbox", name: "show-ui" });
  const filters = h("form", { class: "row filters" },
    h("div", { class: "grow" }, field("Model", model)), h("div", { class: "grow" }, field("User", user)),
    h("div", { class: "grow" }, field("Status", status)), h("div", { class: "grow" }, field("Since", since)),
    h("label", { class: "check" }, showUi, h("span", { text: "Show the web UI's own requests" })),
    h("button", { type: "submit", class: "primary", text: "Filter" }));
  filters.addEventListener("submit", (event) => { event.preventDefault(); load(true); });
  for (const el of [status, since, showUi]) el.addEventListener("change", () => load(true));

  const body = h("tbody", {});
  const table = h("div", { class: "table-wrap" }, h("table", { class: "history-table" },
    h("thead", {}, h("tr", {}, ["Time", "Request", "Status", "Model", "Node", "User", "Duration", "TTFT", "Tokens"].map((t, i) =>
      h("th", { text: t, class: i >= 6 ? "num" : i >= 4 ? "hide-phone" : "" })))), body));
  const more = h("button", { type: "button", class: "button", text: "Load older", hidden: true, onclick: () => load(false) });
  const state = h("div", { "aria-live": "polite" });
  const detail = h("section", { class: "card history-detail", hidden: true, "aria-label": "Request details", tabindex: "-1" });

  function params(reset) {
    const q = new URLSearchParams({ limit: "50", content: "false" });
    if (model.value.trim()) q.set("model", model.value.trim());
    if (user.value.trim()) q.set("user", user.value.trim());
    if (status.value) q.set("status", status.value);
    if (since.value) q.set("since", since.value);
    if (!showUi.checked) q.set("ui", "false");
    if (!reset && cursor) q.set("cursor", cursor);
    return q;
  }

  async function load(reset) {
    if (reset) { cursor = null; clear(body); }
    clear(state, spinner("Loading"));
    try {
      const page = await api.get(`/api/history?${params(reset)}`);
      if (disposed) return;
      clear(state);
      if (reset && !page.items.length) clear(state, h("p", { class: "muted", text: "No requests match." }));
      for (const item of page.items) body.append(row(item));
      cursor = page.next_cursor;
      more.hidden = !cursor;
    } catch (error) {
      clear(state, errorBox(error));
    }
  }

  function row(item) {
    const tr = h("tr", { class: "clickable", tabindex: "0", dataset: { id: item.id } },
      h("td", { class: "nowrap small", text: fmtTime(item.created_at) }),
      h("td", { class: "mono small" }, h("span", { class: "muted", text: `${item.method} ` }), item.path),
      h("td", {}, statusBadge(item.status)),
      h("td", { class: "mono small", text: item.model || "" }),
      h("td", { class: "small hide-phone", text: item.node || "" }),
      h("td", { class: "small hide-phone", text: item.principal_id || "" }),
      h("td", { class: "num small nowrap", text: fmtNs(item.duration_ns) }),
      h("td", { class: "num small nowrap", text: item.ttft_ns ? fmtNs(item.ttft_ns) : "" }),
      h("td", { class: "num small", text: item.prompt_tokens || item.completion_tokens ? `${item.prompt_tokens} / ${item.completion_tokens}` : "" }));
    const open = () => show(item, tr);
    tr.addEventListener("click", open);
    tr.addEventListener("keydown", (e) => { if (e.key === "Enter") open(); });
    return tr;
  }

  async function show(item, tr) {
    selected?.classList.remove("selected");
    selected = tr;
    tr.classList.add("selected");
    detail.hidden = false;
    clear(detail, spinner("Loading the request"));
    let full = item;
    try {
      // the list leaves content out; fetch this one row with it
      const q = new URLSearchParams({ limit: "1", id: String(item.id), content: withContent.checked ? "true" : "false" });
      const page = await api.get(`/api/history?${q}`);
      if (page.items[0]?.id === item.id) full = page.items[0];
    } catch (error) {
      clear(detail, errorBox(error));
      return;
    }
    const timings = [["Total", full.duration_ns], ["Queue", full.queue_ns], ["Load", full.load_ns],
      ["Prompt eval", full.prompt_eval_ns], ["Generation", full.eval_ns], ["First token", full.ttft_ns]];
    const tps = full.eval_ns && full.completion_tokens ? (full.completion_tokens / (full.eval_ns / 1e9)).toFixed(1) : null;
    clear(detail,
      h("div", { class: "page-head" }, h("h2", { text: `${full.method} ${full.path}` }),
        h("button", { type: "button", class: "icon-button", "aria-label": "Close", text: "✕",
          onclick: () => { detail.hidden = true; tr.classList.remove("selected"); tr.focus(); } })),
      h("dl", { class: "facts" },
        fact("Request id", full.request_id), fact("Time", fmtTime(full.created_at)), fact("Status", String(full.status)),
        fact("Model", full.model || "–"), fact("Dialect", full.dialect), fact("Caller", `${full.principal_kind || ""} ${full.principal_id || "anonymous"}`),
        fact("Client", full.client || ""), fact("Cache", full.cache || "–"),
        fact("Node", `${full.node || "–"} · ${full.backend || "–"}`),
        // a router's word for its own caller: data, not who authenticated
        full.extra?.via_principal ? fact("On behalf of", `${full.extra.via_principal} (as the caller above claims)`) : null,
        fact("Tokens", `${full.prompt_tokens} prompt · ${full.completion_tokens} completion${tps ? ` · ${tps} tok/s` : ""}`)),
      h("h3", { text: "Timings" }),
      h("dl", { class: "facts" }, timings.map(([k, v]) => fact(k, v ? fmtNs(v) : "–"))),
      full.error ? [h("h3", { text: "Error" }), errorBox(full.error)] : null,
      h("h3", { text: "Input" }), content(full.input),
      h("h3", { text: "Output" }), content(full.output));
    detail.focus();
  }

  function fact(name, value) {
    return [h("dt", { text: name }), h("dd", { text: value })];
  }

  function content(value) {
    if (value === null || value === undefined) return h("p", { class: "muted small", text: "not kept (DESKML_HISTORY_CONTENT=false or no body)" });
    const text = pretty(value);
    const div = h("div", { class: "json-view" });
    div.innerHTML = renderCode(text.length > 200000 ? `${text.slice(0, 200000)}\n…` : text, "json");
    return div;
  }

  clear(view,
    h("div", { class: "page-head" }, h("h1", { text: "History" }),
      h("label", { class: "check" }, withContent, h("span", { text: "Show input and output" }))),
    h("section", { class: "card" }, filters),
    h("div", { class: "history-layout" },
      h("section", { class: "card history-list", "aria-label": "Requests" }, table, state, more), detail));
  load(true);

  const cleanup = () => { disposed = true; };
  cleanup.refresh = () => load(true);
  return cleanup;
}
