// Audio: record (MediaRecorder) or upload → transcript with timestamps (/v1/audio/transcriptions,
// verbose_json segments); text → speech (/v1/audio/speech) in a player, with voice and speed.
import { api, request } from "../api.js";
import { clear, download, errorBox, field, fmtClock, h, select, setOptions, showMissing, spinner } from "../dom.js";

export function mount(view) {
  let disposed = false;
  let recorder = null;
  let recordTimer = null;
  const urls = [];
  const keepUrl = (blob) => { const url = URL.createObjectURL(blob); urls.push(url); return url; };

  // speech to text ---------------------------------------------------------------------------------
  const asrModel = select([], "", {});
  const language = h("input", { type: "text", placeholder: "auto (e.g. en, ru)", autocapitalize: "none" });
  const task = select([{ value: "transcribe", label: "Transcribe" }, { value: "translate", label: "Translate to English" }], "transcribe");
  const fileInput = h("input", { type: "file", accept: "audio/*,video/*,.wav,.mp3,.m4a,.ogg,.opus,.webm,.flac", id: "audio-file",
    class: "visually-hidden" });
  const record = h("button", { type: "button", class: "primary", text: "● Record" });
  const recordState = h("span", { class: "muted small", "aria-live": "polite" });
  const player = h("audio", { controls: true, class: "player", hidden: true });
  const transcript = h("div", { class: "transcript", "aria-live": "polite" },
    h("p", { class: "muted", text: "Record or upload audio to see its transcript." }));

  const canRecord = Boolean(navigator.mediaDevices?.getUserMedia && window.MediaRecorder);
  if (!canRecord) {
    record.disabled = true;
    recordState.textContent = "Recording needs a browser with MediaRecorder on https or localhost; upload a file instead.";
  }
  record.addEventListener("click", async () => {
    if (recorder) { recorder.stop(); return; }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (error) {
      recordState.textContent = `The microphone is not available: ${error.message}`;
      return;
    }
    const parts = [];
    recorder = new MediaRecorder(stream);
    recorder.ondataavailable = (event) => { if (event.data.size) parts.push(event.data); };
    recorder.onstop = () => {
      stream.getTracks().forEach((t) => t.stop());
      clearInterval(recordTimer);
      recorder = null;
      record.textContent = "● Record";
      record.classList.remove("recording");
      const type = parts[0]?.type || "audio/webm";
      const ext = type.includes("ogg") ? "ogg" : type.includes("mp4") ? "m4a" : "webm";
      transcribe(new File(parts, `recording.${ext}`, { type }));
    };
    recorder.start(250);
    const started = Date.now();
    record.textContent = "■ Stop recording";
    record.classList.add("recording");
    recordTimer = setInterval(() => { recordState.textContent = `Recording ${fmtClock((Date.now() - started) / 1000)}`; }, 200);
  });
  fileInput.addEventListener("change", () => { if (fileInput.files[0]) transcribe(fileInput.files[0]); fileInput.value = ""; });

  async function transcribe(file) {
    player.src = keepUrl(file);
    player.hidden = false;
    recordState.textContent = `${file.name} · ${(file.size / 1024).toFixed(0)} KB`;
    clear(transcript, spinner("Transcribing"), " Transcribing…");
    const data = new FormData();
    data.append("file", file, file.name || "audio");
    data.append("model", asrModel.value || "whisper-1");
    data.append("response_format", "verbose_json");
    data.append("timestamp_granularities[]", "segment");
    if (language.value.trim()) data.append("language", language.value.trim());
    const path = task.value === "translate" ? "/v1/audio/translations" : "/v1/audio/transcriptions";
    const started = performance.now();
    try {
      const result = await api.form(path, data);
      if (disposed) return;
      const seconds = ((performance.now() - started) / 1000).toFixed(2);
      const rows = (result.segments || []).map((s) => {
        const row = h("tr", { class: "clickable", tabindex: "0", title: "Play from here" },
          h("td", { class: "nowrap mono small", text: `${fmtClock(s.start)} → ${fmtClock(s.end)}` }),
          h("td", { text: s.text.trim() }));
        const seek = () => { player.currentTime = s.start; player.play().catch(() => {}); };
        row.addEventListener("click", seek);
        row.addEventListener("keydown", (e) => { if (e.key === "Enter") seek(); });
        return row;
      });
      clear(transcript,
        h("p", { class: "transcript-text", text: result.text || "(no speech found)" }),
        rows.length ? h("div", { class: "table-wrap" }, h("table", { class: "segments" },
          h("thead", {}, h("tr", {}, h("th", { text: "Time" }), h("th", { text: "Text" }))), h("tbody", {}, rows))) : null,
        h("p", { class: "muted small", text: `${result.language || ""} · ${result.duration?.toFixed?.(1) ?? "?"} s of audio · ` +
          `transcribed in ${seconds} s` }));
    } catch (error) {
      clear(transcript, errorBox(error));
    }
  }

  // text to speech ---------------------------------------------------------------------------------
  const ttsModel = select([], "", {});
  const voice = select([], "", {});
  const speed = h("input", { type: "range", min: 0.25, max: 4, step: 0.05, value: "1", "aria-label": "Speed" });
  const speedLabel = h("span", { class: "muted small", text: "1.00×" });
  speed.addEventListener("input", () => { speedLabel.textContent = `${Number(speed.value).toFixed(2)}×`; });
  const text = h("textarea", { rows: 4, value: "Hello! This voice is speaking from your own machine." });
  const speak = h("button", { type: "submit", class: "primary", text: "Speak" });
  const speechOut = h("div", { "aria-live": "polite" });
  let voicesByModel = {};
  ttsModel.addEventListener("change", () => setOptions(voice, voicesByModel[ttsModel.value] || []));
  const ttsForm = h("form", { class: "stack" },
    field("Text", text),
    h("div", { class: "row" }, h("div", { class: "grow" }, field("Model", ttsModel)), h("div", { class: "grow" }, field("Voice", voice))),
    h("div", { class: "field" }, h("span", { class: "field-label", text: "Speed" }),
      h("div", { class: "row" }, h("div", { class: "grow" }, speed), speedLabel)),
    h("div", {}, speak), speechOut);
  ttsForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!text.value.trim()) return;
    speak.disabled = true;
    clear(speechOut, spinner("Speaking"), " Synthesising…");
    try {
      const response = await request("/v1/audio/speech", { method: "POST", json: {
        model: ttsModel.value || "tts-1", input: text.value, voice: voice.value || "alloy",
        speed: Number(speed.value), response_format: "wav" } });
      const blob = await response.blob();
      if (disposed) return;
      const duration = response.headers.get("X-Audio-Duration");
      const audio = h("audio", { controls: true, class: "player", src: keepUrl(blob) });
      const save = h("button", { type: "button", class: "button small", text: "Download WAV",
        onclick: () => download(blob, "speech.wav") });
      clear(speechOut, audio, h("div", { class: "row" }, save,
        h("span", { class: "muted small", text: duration ? `${Number(duration).toFixed(2)} s of audio` : "" })));
      audio.play().catch(() => {});
    } catch (error) {
      clear(speechOut, errorBox(error));
    } finally {
      speak.disabled = false;
    }
  });

  // What cannot run here and the command that adds it (the audio extra missing, say), as the Images page does.
  const asrMissing = h("div", { class: "note-box stack", hidden: true, "data-missing": "asr" });
  const ttsMissing = h("div", { class: "note-box stack", hidden: true, "data-missing": "tts" });
  api.get("/api/ui/config").then(({ kinds }) => {
    if (disposed) return;
    setOptions(asrModel, kinds.asr?.available || []);
    showMissing(asrMissing, [kinds.asr]);
    showMissing(ttsMissing, [kinds.tts]);
    if (!kinds.asr?.available?.length) record.disabled = true;
    if (!kinds.tts?.available?.length) speak.disabled = true;
  }).catch(() => {});
  api.get("/api/audio/voices").then(({ models }) => {
    voicesByModel = Object.fromEntries(models.map((m) => [m.name, m.voices]));
    setOptions(ttsModel, models.map((m) => m.name));
    setOptions(voice, voicesByModel[ttsModel.value] || []);
  }).catch((error) => clear(speechOut, errorBox(error)));

  clear(view,
    h("div", { class: "page-head" }, h("h1", { text: "Audio" })),
    h("div", { class: "grid" },
      h("section", { class: "card", "aria-labelledby": "a-stt" },
        h("h2", { id: "a-stt", text: "Speech to text" }), asrMissing,
        h("div", { class: "row" }, record, h("label", { class: "button", for: "audio-file", text: "Upload audio" }), fileInput),
        h("p", {}, recordState),
        h("div", { class: "row" }, h("div", { class: "grow" }, field("Model", asrModel)),
          h("div", { class: "grow" }, field("Language", language)), h("div", { class: "grow" }, field("Task", task))),
        player, transcript),
      h("section", { class: "card", "aria-labelledby": "a-tts" }, h("h2", { id: "a-tts", text: "Text to speech" }), ttsMissing, ttsForm)));

  return () => {
    disposed = true;
    if (recorder) { recorder.onstop = null; recorder.stop(); recorder.stream.getTracks().forEach((t) => t.stop()); }
    clearInterval(recordTimer);
    urls.forEach((u) => URL.revokeObjectURL(u));
  };
}
