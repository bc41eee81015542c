// Small DOM and formatting helpers shared by the pages. No framework: pages build elements with h().

/**
 * Create an element. attrs: plain attributes, plus `class`, `text`, `html` (trusted, already
 * sanitised), `on<event>` handlers, `dataset` and `style` objects. Children: nodes, strings, arrays.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  let initial;
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "value") initial = value; // a property, set once the children (options) exist
    else if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "html") el.innerHTML = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "style") Object.assign(el.style, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key in el && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  if (initial !== undefined) el.value = initial;
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let uid = 0;
/** A unique id for label/aria wiring. */
export function nextId(prefix = "f") {
  uid += 1;
  return `${prefix}-${uid}`;
}

/** A labelled form field: <label class="field"><span>Label</span>control</label>. */
export function field(label, control, hint) {
  if (!control.id) control.id = nextId();
  return h("div", { class: "field" },
    h("label", { class: "field-label", for: control.id, text: label }),
    control,
    hint ? h("span", { class: "muted small", text: hint }) : null);
}

export function checkbox(label, checked = false, attrs = {}) {
  const input = h("input", { type: "checkbox", checked, ...attrs });
  return { input, label: h("label", { class: "check" }, input, h("span", { text: label })) };
}

export function select(options, value, attrs = {}) {
  const el = h("select", attrs);
  setOptions(el, options, value);
  return el;
}

/** options: strings or {value, label}. Keeps the current value when it is still offered. */
export function setOptions(el, options, value) {
  const keep = value ?? el.value;
  el.replaceChildren(...options.map((o) => {
    const opt = typeof o === "string" ? { value: o, label: o } : o;
    return h("option", { value: opt.value, text: opt.label ?? opt.value });
  }));
  if (options.some((o) => (typeof o === "string" ? o : o.value) === keep)) el.value = keep;
}

/** Fill `box` with why some kinds of model cannot run here and the command that adds them (from
 * /api/ui/config's `kinds`); hidden when every kind given has a model. */
export function showMissing(box, kinds) {
  const seen = new Set();
  const lines = [];
  for (const k of kinds) {
    if (!k || k.available?.length || !k.install) continue;
    const what = k.missing?.length ? `${k.missing.join(", ")} ${k.missing.length > 1 ? "are" : "is"} not installed` : "its weights are not installed";
    const key = `${what}|${k.install}`;
    if (seen.has(key)) { lines.find((l) => l.key === key).labels.push(k.label); continue; }
    seen.add(key);
    lines.push({ key, labels: [k.label], what, install: k.install, where: k.where });
  }
  box.replaceChildren(...lines.map((l) => h("p", {},
    `No ${l.labels.join(", ")} model can run here: ${l.what}. Add ${l.labels.length > 1 ? "them" : "it"}${l.where ? ` (in ${l.where})` : ""} with `,
    h("code", { class: "mono", text: l.install }), ", then restart deskml.")));
  box.hidden = lines.length === 0;
}

export function progressBar(label = "Progress") {
  const fill = h("div", { class: "fill" });
  const bar = h("div", { class: "progress", role: "progressbar", "aria-label": label, "aria-valuemin": "0",
    "aria-valuemax": "100", "aria-valuenow": "0" }, fill);
  return {
    el: bar,
    set(fraction, state) {
      const pct = Math.max(0, Math.min(100, Math.round(fraction * 1000) / 10));
      fill.style.width = `${pct}%`;
      bar.setAttribute("aria-valuenow", String(Math.floor(pct)));
      bar.classList.toggle("ok", state === "ok");
      bar.classList.toggle("error", state === "error");
    },
  };
}

export function errorBox(error) {
  return h("div", { class: "error-box", role: "alert", text: errorMessage(error) });
}

export function errorMessage(error) {
  if (!error) return "";
  if (typeof error === "string") return error;
  return error.message || String(error);
}

export function toast(message, kind = "") {
  const host = document.getElementById("toasts");
  if (!host) return;
  const el = h("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status", text: message });
  host.append(el);
  setTimeout(() => el.remove(), kind === "error" ? 8000 : 4000);
}

export function spinner(label = "Working") {
  return h("span", { class: "spinner", role: "status", "aria-label": label });
}

// formatting -------------------------------------------------------------------------------------
export function fmtBytes(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return "";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  let v = Number(n);
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i += 1; }
  return `${v >= 100 || i === 0 ? v.toFixed(0) : v.toFixed(1)} ${units[i]}`;
}

export function fmtMs(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "–";
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
  const m = Math.floor(ms / 60000);
  return `${m} min ${Math.round((ms % 60000) / 1000)} s`;
}

export function fmtNs(ns) {
  return ns === null || ns === undefined ? "–" : fmtMs(ns / 1e6);
}

export function fmtTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const today = new Date();
  const sameDay = d.toDateString() === today.toDateString();
  return sameDay ? d.toLocaleTimeString() : d.toLocaleString();
}

export function fmtRelative(iso) {
  if (!iso) return "";
  const delta = (new Date(iso).getTime() - Date.now()) / 1000;
  const abs = Math.abs(delta);
  const text = abs < 60 ? `${Math.round(abs)} s` : abs < 3600 ? `${Math.round(abs / 60)} min`
    : abs < 86400 * 2 ? `${Math.round(abs / 3600)} h` : `${Math.round(abs / 86400)} days`;
  return delta >= 0 ? `in ${text}` : `${text} ago`;
}

export function fmtClock(seconds) {
  const s = Math.max(0, seconds);
  const m = Math.floor(s / 60);
  return `${String(m).padStart(2, "0")}:${(s - m * 60).toFixed(1).padStart(4, "0")}`;
}

export function pretty(value) {
  if (typeof value === "string") {
    try { return JSON.stringify(JSON.parse(value), null, 2); } catch { return value; }
  }
  return JSON.stringify(value, null, 2);
}

/** Copy text to the clipboard; falls back to selecting it where the Clipboard API is unavailable (plain http). */
export async function copyText(text, fallbackInput) {
  try {
    await navigator.clipboard.writeText(text);
    toast("Copied", "ok");
  } catch {
    if (fallbackInput) { fallbackInput.focus(); fallbackInput.select(); }
    toast("Select the text and copy it (the clipboard needs https or localhost)");
  }
}

/** Download a Blob under a name. */
export function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
