// Jobs: training and batch jobs (/api/jobs) with live progress from each job's server-sent events,
// results, cancel; new training jobs (/api/files + /api/train) and batches (/v1/files + /v1/batches).
import { api, request, sse } from "../api.js";
import { clear, download, errorBox, field, fmtMs, fmtTime, h, pretty, progressBar, select, spinner, toast } from "../dom.js";

const ACTIVE = new Set(["PENDING", "PROGRESS"]);
const BADGE = { SUCCESS: "ok", FAILURE: "error", CANCELLED: "warn", PROGRESS: "info", PENDING: "" };

export function mount(view) {
  let disposed = false;
  const watchers = new Map(); // job id -> AbortController of its event stream
  const rows = new Map(); // job id -> {update}
  let timer = null;

  const list = h("div", { class: "jobs-list" }, spinner("Loading jobs"));
  const stateFilter = select(["all", "PENDING", "PROGRESS", "SUCCESS", "FAILURE", "CANCELLED"], "all", { "aria-label": "State" });
  stateFilter.addEventListener("change", () => load());

  function jobRow(job) {
    const bar = progressBar(`Progress of job ${job.id}`);
    const state = h("span", { class: "badge" });
    const message = h("span", { class: "muted small job-message" });
    const pct = h("span", { class: "progress-label" });
    const details = h("div", { class: "job-details", hidden: true });
    const toggle = h("button", { type: "button", class: "button small", text: "Details", "aria-expanded": "false" });
    const cancel = h("button", { type: "button", class: "danger small", text: "Cancel", "aria-label": `Cancel job ${job.id}` });
    const el = h("article", { class: "job card", dataset: { job: job.id } },
      h("div", { class: "job-head" },
        h("span", { class: "mono small", text: job.id }), h("span", { class: "badge info", text: job.kind }), state,
        h("span", { class: "muted small", text: fmtTime(job.created_at) }),
        h("span", { class: "job-actions" }, toggle, " ", cancel)),
      h("div", { class: "row job-progress" }, h("div", { class: "grow" }, bar.el), pct),
      message, details);
    toggle.addEventListener("click", () => {
      details.hidden = !details.hidden;
      toggle.setAttribute("aria-expanded", String(!details.hidden));
    });
    cancel.addEventListener("click", async () => {
      try {
        update(await api.del(`/api/jobs/${encodeURIComponent(job.id)}`));
      } catch (error) { toast(error.message, "error"); }
    });

    function update(j) {
      state.textContent = j.state;
      state.className = `badge ${BADGE[j.state] || ""}`;
      bar.set(j.progress, j.state === "SUCCESS" ? "ok" : j.state === "FAILURE" ? "error" : "");
      pct.textContent = `${Math.floor(j.progress * 100)}%` + (j.total ? ` · ${j.current}/${j.total}` : "");
      message.textContent = j.error || j.message || "";
      cancel.hidden = !ACTIVE.has(j.state);
      const took = j.started_at && j.finished_at ? fmtMs(new Date(j.finished_at) - new Date(j.started_at)) : "";
      clear(details,
        took ? h("p", { class: "small", text: `Ran for ${took} on ${j.executor}${j.worker ? ` (${j.worker})` : ""}` }) : null,
        resultView(j),
        h("details", {}, h("summary", { class: "small", text: "Parameters" }), h("pre", { class: "json", text: pretty(j.params) })));
    }
    update(job);
    return { el, update };
  }

  function resultView(job) {
    if (!job.result) return job.error ? errorBox(job.error) : null;
    const parts = [h("h3", { text: "Result" }), h("pre", { class: "json", text: pretty(job.result) })];
    const outputId = job.result.output_file_id;
    if (outputId) {
      parts.push(h("button", { type: "button", class: "button small", text: "Download output", onclick: async () => {
        try {
          const response = await request(`/v1/files/${encodeURIComponent(outputId)}/content`);
          download(await response.blob(), `${job.id}-output.jsonl`);
        } catch (error) { toast(error.message, "error"); }
      } }));
    }
    const modelName = job.kind.startsWith("train") && job.state === "SUCCESS" ? job.result.model : null;
    if (modelName) parts.push(tryClassifier(modelName));
    return h("div", {}, parts);
  }

  function tryClassifier(modelName) {
    const input = h("input", { type: "text", placeholder: "Some text to classify" });
    const out = h("div", { "aria-live": "polite" });
    const form = h("form", { class: "row" }, h("div", { class: "grow" }, field(`Try ${modelName}`, input)),
      h("button", { type: "submit", class: "button", text: "Classify" }));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (!input.value.trim()) return;
      try {
        const result = await api.post("/api/classify", { model: modelName, input: input.value, top_k: 3 });
        clear(out, h("ul", {}, result.results[0].labels.map((l) => h("li", { text: `${l.label}: ${(l.score * 100).toFixed(1)}%` }))));
      } catch (error) { clear(out, errorBox(error)); }
    });
    return h("div", { class: "try" }, form, out);
  }

  async function watch(id) {
    if (watchers.has(id)) return;
    const controller = new AbortController();
    watchers.set(id, controller);
    try {
      const response = await request(`/api/jobs/${encodeURIComponent(id)}/events`, { signal: controller.signal });
      for await (const { event, data } of sse(response)) {
        if (event === "progress") rows.get(id)?.update(data);
        if (event === "error") toast(data.error || "job events failed", "error");
        if (event === "end") break;
      }
    } catch (error) {
      if (error.name !== "AbortError" && !disposed) toast(`Job ${id}: ${error.message}`, "error");
    } finally {
      watchers.delete(id);
    }
  }

  async function load() {
    try {
      const query = stateFilter.value === "all" ? "" : `&state=${stateFilter.value}`;
      const { jobs } = await api.get(`/api/jobs?limit=50${query}`);
      if (disposed) return;
      rows.clear();
      clear(list, jobs.length ? jobs.map((job) => {
        const row = jobRow(job);
        rows.set(job.id, row);
        if (ACTIVE.has(job.state)) watch(job.id);
        return row.el;
      }) : h("p", { class: "muted", text: "No jobs yet. Start one below." }));
    } catch (error) {
      clear(list, errorBox(error));
    }
  }

  // new jobs ---------------------------------------------------------------------------------------
  const dataset = h("input", { type: "file", accept: ".csv,.jsonl,.json,.zip,text/csv,application/zip" });
  const trainName = h("input", { type: "text", placeholder: "intent-classifier", autocapitalize: "none" });
  const trainKind = select([{ value: "", label: "from the dataset" }, { value: "text", label: "text" }, { value: "image", label: "image" }], "");
  const trainStatus = h("div", { "aria-live": "polite" });
  const trainGo = h("button", { type: "submit", class: "primary", text: "Upload and train" });
  const trainForm = h("form", { class: "stack" },
    field("Dataset", dataset, "CSV or JSONL with text,label; or a zip with one folder of pictures per label."),
    h("div", { class: "row" }, h("div", { class: "grow" }, field("Model name", trainName)), h("div", { class: "grow" }, field("Kind", trainKind))),
    h("div", {}, trainGo), trainStatus);
  trainForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = dataset.files[0];
    if (!file) { clear(trainStatus, errorBox("Choose a dataset file.")); return; }
    trainGo.disabled = true;
    clear(trainStatus, spinner("Uploading"), " Uploading…");
    try {
      const data = new FormData();
      data.append("file", file, file.name);
      data.append("purpose", "train");
      const uploaded = await api.form("/api/files", data);
      const config = {};
      if (trainName.value.trim()) config.name = trainName.value.trim();
      if (trainKind.value) config.kind = trainKind.value;
      const started = await api.post("/api/train", { dataset: uploaded.id, config });
      clear(trainStatus, h("span", { class: "badge ok", text: "started" }), ` job ${started.task_id}`);
      await load();
    } catch (error) {
      clear(trainStatus, errorBox(error));
    } finally {
      trainGo.disabled = false;
    }
  });

  const batchFile = h("input", { type: "file", accept: ".jsonl,application/jsonl,application/x-ndjson" });
  const endpoint = select(["/v1/chat/completions", "/v1/embeddings", "/v1/completions"], "/v1/chat/completions");
  const batchStatus = h("div", { "aria-live": "polite" });
  const batchGo = h("button", { type: "submit", class: "primary", text: "Upload and run" });
  const batchForm = h("form", { class: "stack" },
    field("Batch input (JSONL)", batchFile, "One OpenAI batch request per line: custom_id, method, url, body."),
    field("Endpoint", endpoint), h("div", {}, batchGo), batchStatus);
  batchForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = batchFile.files[0];
    if (!file) { clear(batchStatus, errorBox("Choose a JSONL file.")); return; }
    batchGo.disabled = true;
    clear(batchStatus, spinner("Uploading"), " Uploading…");
    try {
      const data = new FormData();
      data.append("file", file, file.name);
      data.append("purpose", "batch");
      const uploaded = await api.form("/v1/files", data);
      const batch = await api.post("/v1/batches", { input_file_id: uploaded.id, endpoint: endpoint.value, completion_window: "24h" });
      clear(batchStatus, h("span", { class: "badge ok", text: "started" }), ` batch ${batch.id}`);
      await load();
    } catch (error) {
      clear(batchStatus, errorBox(error));
    } finally {
      batchGo.disabled = false;
    }
  });

  clear(view,
    h("div", { class: "page-head" }, h("h1", { text: "Jobs" }), stateFilter,
      h("button", { type: "button", class: "button small", text: "Refresh", onclick: () => load() })),
    list,
    h("div", { class: "grid section-gap" },
      h("section", { class: "card", "aria-labelledby": "j-train" }, h("h2", { id: "j-train", text: "Train a classifier" }), trainForm),
      h("section", { class: "card", "aria-labelledby": "j-batch" }, h("h2", { id: "j-batch", text: "Run a batch" }), batchForm)));
  load();
  // new jobs from other clients show up without a reload
  timer = setInterval(() => { if (!document.hidden && !watchers.size) load(); }, 10000);

  const cleanup = () => {
    disposed = true;
    clearInterval(timer);
    for (const controller of watchers.values()) controller.abort();
  };
  cleanup.refresh = load;
  return cleanup;
}
