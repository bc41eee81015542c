// Vision: one photo (dropped, chosen, or taken) → classification bars, OCR text and detection boxes,
// each from its own route of the ML-backend API.
import { api } from "../api.js";
import { clear, errorBox, field, h, select, setOptions, showMissing, spinner } from "../dom.js";

const COLORS = ["#2563eb", "#d97706", "#16a34a", "#db2777", "#7c3aed", "#0891b2", "#dc2626", "#65a30d"];

export function mount(view) {
  let disposed = false;
  let objectUrl = null;
  let stream = null; // camera MediaStream
  let lastFile = null;

  const fileInput = h("input", { type: "file", accept: "image/*", class: "visually-hidden", id: "vision-file" });
  const cameraInput = h("input", { type: "file", accept: "image/*", capture: "environment", class: "visually-hidden",
    id: "vision-capture" });
  const drop = h("div", { class: "drop-zone", tabindex: "0", role: "button",
    "aria-label": "Drop a photo here or press Enter to choose one" },
  h("strong", { text: "Drop a photo here" }), h("span", { class: "muted", text: "or" }),
  h("div", { class: "row drop-buttons" },
    h("label", { class: "button", for: "vision-file", text: "Choose a photo" }),
    h("label", { class: "button phone-only", for: "vision-capture", text: "Take a photo" })),
  fileInput, cameraInput);
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); fileInput.click(); }
  });
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = event.dataTransfer?.files?.[0];
    if (file) analyse(file);
  });
  for (const input of [fileInput, cameraInput]) {
    input.addEventListener("change", () => { if (input.files[0]) analyse(input.files[0]); input.value = ""; });
  }

  // a live camera where the browser allows it (https or localhost)
  const video = h("video", { class: "camera", autoplay: true, playsinline: true, muted: true, hidden: true });
  const snap = h("button", { type: "button", class: "primary", text: "Capture", hidden: true });
  const cameraButton = h("button", { type: "button", class: "button", text: "Use the camera" });
  const cameraError = h("div", { "aria-live": "polite" });
  cameraButton.hidden = !navigator.mediaDevices?.getUserMedia;
  cameraButton.addEventListener("click", async () => {
    if (stream) { stopCamera(); return; }
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
      video.srcObject = stream;
      video.hidden = snap.hidden = false;
      cameraButton.textContent = "Close the camera";
      clear(cameraError);
    } catch (error) {
      clear(cameraError, errorBox(`The camera is not available: ${error.message}`));
    }
  });
  snap.addEventListener("click", () => {
    const canvas = h("canvas", { width: video.videoWidth, height: video.videoHeight });
    canvas.getContext("2d").drawImage(video, 0, 0);
    canvas.toBlob((blob) => { if (blob) analyse(new File([blob], "camera.jpg", { type: "image/jpeg" })); }, "image/jpeg", 0.92);
  });
  function stopCamera() {
    stream?.getTracks().forEach((t) => t.stop());
    stream = null;
    video.hidden = snap.hidden = true;
    cameraButton.textContent = "Use the camera";
  }

  // models and options
  const classifyModel = select([], "", {});
  const detectModel = select([], "", {});
  const threshold = h("input", { type: "range", min: 0.05, max: 0.95, step: 0.05, value: "0.25" });
  const thresholdLabel = h("span", { class: "muted small", text: "0.25" });
  threshold.addEventListener("input", () => { thresholdLabel.textContent = threshold.value; });
  threshold.addEventListener("change", () => { if (lastFile) runDetect(lastFile); });
  // What cannot run here and the command that adds it (the vision extra missing, say), as the Images page does.
  const missingNote = h("div", { class: "note-box stack", hidden: true, "data-missing": "vision" });
  api.get("/api/ui/config").then(({ kinds }) => {
    if (disposed) return;
    setOptions(classifyModel, kinds.classify?.available || []);
    setOptions(detectModel, kinds.detect?.available || []);
    showMissing(missingNote, [kinds.classify, kinds.detect, kinds.ocr]);
  }).catch(() => {});

  // results
  const preview = h("div", { class: "vision-preview" });
  const classes = h("div", { class: "vision-classes", "aria-live": "polite" });
  const ocrOut = h("div", { class: "vision-ocr", "aria-live": "polite" });
  const detectOut = h("div", { class: "vision-detect", "aria-live": "polite" });
  let detections = null;
  let image = null;

  function analyse(file) {
    lastFile = file;
    if (objectUrl) URL.revokeObjectURL(objectUrl);
    objectUrl = URL.createObjectURL(file);
    image = new Image();
    detections = null;
    const canvas = h("canvas", { class: "vision-canvas", "aria-label": "The photo with detected objects" });
    clear(preview, canvas, h("p", { class: "muted small", text: `${file.name || "photo"} · ${(file.size / 1024).toFixed(0)} KB` }));
    image.onload = () => draw(canvas);
    image.onerror = () => clear(preview, h("p", { class: "muted", text: "The browser cannot show this file as a picture; the server's answer is below." }));
    image.src = objectUrl;
    preview.dataset.canvas = "1";
    runClassify(file);
    runOcr(file);
    runDetect(file);
  }

  function form(file, extra = {}) {
    const data = new FormData();
    data.append("image", file, file.name || "photo");
    for (const [k, v] of Object.entries(extra)) if (v !== "" && v !== undefined && v !== null) data.append(k, v);
    return data;
  }

  async function runClassify(file) {
    clear(classes, spinner("Classifying"), " Classifying…");
    try {
      const result = await api.form("/api/vision/classify", form(file, { model: classifyModel.value, top_k: 5 }));
      if (disposed || file !== lastFile) return;
      clear(classes, h("ol", { class: "bars", "aria-label": "Top classes" }, result.predictions.map((p) => {
        const pct = Math.round(p.score * 1000) / 10;
        const fill = h("span", { class: "bar-fill" });
        fill.style.width = `${Math.max(1, pct)}%`;
        return h("li", { class: "bar-row" },
          h("span", { class: "bar-label", text: p.label }),
          h("span", { class: "bar", role: "img", "aria-label": `${pct}%` }, fill),
          h("span", { class: "bar-value", text: `${pct.toFixed(1)}%` }));
      })), h("p", { class: "muted small", text: `${result.model} · ${result.time} s` }));
    } catch (error) {
      if (file === lastFile) clear(classes, errorBox(error));
    }
  }

  async function runOcr(file) {
    clear(ocrOut, spinner("Reading text"), " Reading text…");
    try {
      const result = await api.form("/api/vision/ocr", form(file));
      if (disposed || file !== lastFile) return;
      clear(ocrOut, result.lines.length
        ? h("ul", { class: "ocr-lines" }, result.lines.map((line) => h("li", {},
          h("span", { text: line.text }), " ", h("span", { class: "muted small", text: `${Math.round(line.confidence * 100)}%` }))))
        : h("p", { class: "muted", text: "No text found." }),
      h("p", { class: "muted small", text: `${result.model} · ${result.time} s` }));
    } catch (error) {
      if (file === lastFile) clear(ocrOut, errorBox(error));
    }
  }

  async function runDetect(file) {
    clear(detectOut, spinner("Detecting"), " Detecting objects…");
    try {
      const result = await api.form("/api/vision/detect", form(file, { model: detectModel.value, threshold: threshold.value }));
      if (disposed || file !== lastFile) return;
      detections = result;
      const canvas = preview.querySelector("canvas");
      if (canvas && image?.complete) draw(canvas);
      clear(detectOut, result.detections.length
        ? h("ul", { class: "detections" }, result.detections.map((d, i) => {
          const swatch = h("span", { class: "swatch" });
          swatch.style.background = COLORS[i % COLORS.length];
          return h("li", {}, swatch, h("span", { text: d.label }), " ",
            h("span", { class: "muted small", text: `${Math.round(d.score * 100)}%` }));
        }))
        : h("p", { class: "muted", text: "No objects found." }),
      h("p", { class: "muted small", text: `${result.model} · ${result.time} s` }));
    } catch (error) {
      if (file === lastFile) clear(detectOut, errorBox(error));
    }
  }

  function draw(canvas) {
    if (!image?.naturalWidth) return;
    const scale = Math.min(1, 1600 / Math.max(image.naturalWidth, image.naturalHeight));
    canvas.width = Math.round(image.naturalWidth * scale);
    canvas.height = Math.round(image.naturalHeight * scale);
    const ctx = canvas.getContext("2d");
    ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
    if (!detections) return;
    // boxes are in the pixels of the image the server decoded
    const sx = canvas.width / (detections.width || image.naturalWidth);
    const sy = canvas.height / (detections.height || image.naturalHeight);
    const line = Math.max(2, Math.round(canvas.width / 300));
    ctx.font = `${Math.max(12, Math.round(canvas.width / 45))}px system-ui, sans-serif`;
    detections.detections.forEach((d, i) => {
      const [x1, y1, x2, y2] = d.box;
      const color = COLORS[i % COLORS.length];
      ctx.strokeStyle = color;
      ctx.lineWidth = line;
      ctx.strokeRect(x1 * sx, y1 * sy, (x2 - x1) * sx, (y2 - y1) * sy);
      const label = `${d.label} ${Math.round(d.score * 100)}%`;
      const w = ctx.measureText(label).width + 8;
      const fh = parseInt(ctx.font, 10) + 6;
      const ty = Math.max(0, y1 * sy - fh);
      ctx.fillStyle = color;
      ctx.fillRect(x1 * sx, ty, w, fh);
      ctx.fillStyle = "#fff";
      ctx.fillText(label, x1 * sx + 4, ty + fh - 6);
    });
  }

  clear(view,
    h("div", { class: "page-head" }, h("h1", { text: "Vision" })),
    h("div", { class: "grid vision-grid" },
      h("section", { class: "card", "aria-label": "Photo" }, missingNote, drop,
        h("div", { class: "row camera-row" }, cameraButton, snap), video, cameraError,
        h("div", { class: "row" },
          h("div", { class: "grow" }, field("Classifier", classifyModel)),
          h("div", { class: "grow" }, field("Detector", detectModel))),
        h("div", { class: "field" }, h("span", { class: "field-label", text: "Detection threshold" }),
          h("div", { class: "row" }, h("div", { class: "grow" }, threshold), thresholdLabel)),
        preview),
      h("div", { class: "stack" },
        h("section", { class: "card", "aria-labelledby": "v-classes" }, h("h2", { id: "v-classes", text: "Top 5 classes" }),
          classes),
        h("section", { class: "card", "aria-labelledby": "v-detect" }, h("h2", { id: "v-detect", text: "Objects" }), detectOut),
        h("section", { class: "card", "aria-labelledby": "v-ocr" }, h("h2", { id: "v-ocr", text: "Text (OCR)" }), ocrOut))));
  threshold.setAttribute("aria-label", "Detection threshold");
  for (const out of [classes, detectOut, ocrOut]) out.append(h("p", { class: "muted", text: "Choose a photo to see results." }));

  return () => {
    disposed = true;
    stopCamera();
    if (objectUrl) URL.revokeObjectURL(objectUrl);
  };
}
