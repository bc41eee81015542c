// Images: prompt → image with live denoising progress (Ollama /api/generate on an image model), and
// style transfer on an uploaded photo (/api/images/stylize).
import { api, ndjson, request } from "../api.js";
import { clear, errorBox, field, h, progressBar, select, setOptions, spinner } from "../dom.js";

function b64ToBlob(b64, type = "image/png") {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  return new Blob([bytes], { type });
}

export function mount(view) {
  let disposed = false;
  let controller = null;
  const urls = [];
  const keepUrl = (blob) => { const url = URL.createObjectURL(blob); urls.push(url); return url; };

  // generation -------------------------------------------------------------------------------------
  const model = select([], "", {});
  const prompt = h("textarea", { rows: 3, placeholder: "a watercolor painting of a lighthouse at dawn" });
  const negative = h("input", { type: "text", placeholder: "blurry, low quality" });
  const width = h("input", { type: "number", min: 64, max: 2048, step: 8, placeholder: "model default" });
  const height = h("input", { type: "number", min: 64, max: 2048, step: 8, placeholder: "model default" });
  const steps = h("input", { type: "number", min: 1, max: 150, step: 1, placeholder: "model default" });
  const seed = h("input", { type: "number", min: 0, step: 1, placeholder: "random" });
  const go = h("button", { type: "submit", class: "primary", text: "Generate" });
  const cancel = h("button", { type: "button", class: "button", text: "Cancel", hidden: true });
  const bar = progressBar("Image generation progress");
  const barLabel = h("span", { class: "progress-label" });
  const progressRow = h("div", { class: "row progress-row", hidden: true }, h("div", { class: "grow" }, bar.el), barLabel);
  const genStatus = h("div", { "aria-live": "polite" });
  const gallery = h("div", { class: "gallery", "aria-label": "Generated images" });
  const noModels = h("div", { class: "note-box", hidden: true },
    "No image generation models are installed. Put diffusers pipelines (folders written by save_pretrained) " +
    "into the data directory's image-models folder (or DESKML_IMAGE_MODELS_DIR) and restart deskml.");
  cancel.addEventListener("click", () => controller?.abort());

  const genForm = h("form", { class: "stack" },
    noModels, field("Model", model), field("Prompt", prompt), field("Negative prompt", negative),
    h("div", { class: "param-grid" }, field("Width", width), field("Height", height), field("Steps", steps), field("Seed", seed)),
    h("div", { class: "row" }, go, cancel), progressRow, genStatus);
  genForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!prompt.value.trim() || controller) return;
    const body = { model: model.value, prompt: prompt.value, stream: true };
    if (negative.value.trim()) body.negative_prompt = negative.value.trim();
    if (width.value) body.width = Number(width.value);
    if (height.value) body.height = Number(height.value);
    if (steps.value) body.steps = Number(steps.value);
    if (seed.value) body.options = { seed: Number(seed.value) };
    controller = new AbortController();
    go.disabled = true;
    cancel.hidden = false;
    progressRow.hidden = false;
    bar.set(0);
    barLabel.textContent = "starting…";
    clear(genStatus);
    const started = performance.now();
    try {
      const response = await request("/api/generate", { method: "POST", json: body, signal: controller.signal });
      for await (const line of ndjson(response)) {
        if (line.error) throw new Error(line.error);
        if (line.total) {
          bar.set(line.completed / line.total);
          barLabel.textContent = `step ${line.completed} / ${line.total}`;
        }
        if (line.done && line.image) {
          bar.set(1, "ok");
          const seconds = ((performance.now() - started) / 1000).toFixed(1);
          barLabel.textContent = `done in ${seconds} s`;
          const url = keepUrl(b64ToBlob(line.image));
          gallery.prepend(h("figure", { class: "shot" },
            h("img", { src: url, alt: prompt.value }),
            h("figcaption", { class: "small" }, h("span", { text: prompt.value }), " ",
              h("a", { href: url, download: "deskml-image.png", text: "Download" }))));
        }
      }
    } catch (error) {
      bar.set(0, "error");
      barLabel.textContent = "";
      clear(genStatus, errorBox(error.name === "AbortError" ? "Cancelled." : error));
    } finally {
      controller = null;
      go.disabled = false;
      cancel.hidden = true;
    }
  });

  // style transfer ---------------------------------------------------------------------------------
  const photo = h("input", { type: "file", accept: "image/*" });
  const styleImage = h("input", { type: "file", accept: "image/*" });
  const style = h("input", { type: "range", min: 0, max: 25, step: 1, value: "0", "aria-label": "Built-in style" });
  const styleLabel = h("span", { class: "muted small", text: "style 0" });
  style.addEventListener("input", () => { styleLabel.textContent = `style ${style.value}`; });
  const strength = h("input", { type: "range", min: 0, max: 1, step: 0.05, value: "1", "aria-label": "Strength" });
  const strengthLabel = h("span", { class: "muted small", text: "100%" });
  strength.addEventListener("input", () => { strengthLabel.textContent = `${Math.round(strength.value * 100)}%`; });
  const preserve = h("input", { type: "checkbox" });
  const styleGo = h("button", { type: "submit", class: "primary", text: "Stylize" });
  const styleOut = h("div", { class: "style-out", "aria-live": "polite" });
  const styleForm = h("form", { class: "stack" },
    field("Photo", photo),
    h("div", { class: "field" }, h("span", { class: "field-label", text: "Built-in style (0–25)" }),
      h("div", { class: "row" }, h("div", { class: "grow" }, style), styleLabel)),
    field("…or a picture as the style (optional)", styleImage),
    h("div", { class: "field" }, h("span", { class: "field-label", text: "Strength" }),
      h("div", { class: "row" }, h("div", { class: "grow" }, strength), strengthLabel)),
    h("label", { class: "check" }, preserve, h("span", { text: "Keep the photo's colours" })),
    h("div", {}, styleGo), styleOut);
  styleForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = photo.files[0];
    if (!file) { clear(styleOut, errorBox("Choose a photo first.")); return; }
    const data = new FormData();
    data.append("image", file, file.name || "photo");
    if (styleImage.files[0]) data.append("style_image", styleImage.files[0], styleImage.files[0].name || "style");
    else data.append("style", style.value);
    data.append("strength", strength.value);
    data.append("preserve_color", preserve.checked ? "true" : "false");
    styleGo.disabled = true;
    clear(styleOut, spinner("Stylizing"), " Stylizing…");
    try {
      const result = await api.form("/api/images/stylize", data);
      if (disposed) return;
      const out = keepUrl(b64ToBlob(result.image, `image/${result.format}`));
      clear(styleOut, h("div", { class: "before-after" },
        h("figure", { class: "shot" }, h("img", { src: keepUrl(file), alt: "The photo" }), h("figcaption", { class: "small", text: "Before" })),
        h("figure", { class: "shot" }, h("img", { src: out, alt: "The stylized photo" }),
          h("figcaption", { class: "small" }, `After · ${result.time} s `, h("a", { href: out, download: `stylized.${result.format}`, text: "Download" })))));
    } catch (error) {
      clear(styleOut, errorBox(error));
    } finally {
      styleGo.disabled = false;
    }
  });

  api.get("/health").then((health) => {
    const names = (health.models?.image || []).filter((m) => m.available).map((m) => m.name);
    setOptions(model, names);
    noModels.hidden = names.length > 0;
    go.disabled = names.length === 0;
  }).catch(() => {});

  clear(view,
    h("div", { class: "page-head" }, h("h1", { text: "Images" })),
    h("div", { class: "grid" },
      h("section", { class: "card", "aria-labelledby": "i-gen" }, h("h2", { id: "i-gen", text: "Generate" }), genForm, gallery),
      h("section", { class: "card", "aria-labelledby": "i-style" }, h("h2", { id: "i-style", text: "Style transfer" }), styleForm)));

  return () => {
    disposed = true;
    controller?.abort();
    urls.forEach((u) => URL.revokeObjectURL(u));
  };
}
