// Chat: conversations kept server-side (/api/conversations), model and parameters, streamed replies.
import { api } from "../api.js";
import { checkbox, clear, copyText, errorBox, field, fmtRelative, h, select, setOptions, toast } from "../dom.js";
import { wireCodeCopy } from "../markdown.js";
import { chatMessages, messageView, streamReply } from "./chat_messages.js";

const DEFAULT_TOOLS = JSON.stringify([{
  type: "function",
  function: {
    name: "get_weather",
    description: "The current weather in a city",
    parameters: { type: "object", properties: { city: { type: "string", description: "City name" } }, required: ["city"] },
  },
}], null, 2);

const PARAMS = [
  // [option, label, attrs]
  ["temperature", "Temperature", { min: 0, max: 2, step: 0.05, placeholder: "0.8" }],
  ["top_p", "Top p", { min: 0, max: 1, step: 0.05, placeholder: "0.9" }],
  ["num_predict", "Max tokens", { min: 1, step: 1, placeholder: "unlimited" }],
  ["num_ctx", "Context", { min: 256, step: 256, placeholder: "server default" }],
  ["seed", "Seed", { min: 0, step: 1, placeholder: "random" }],
];

// Only language models can chat: /api/tags says each model's kind (embedding, speech, ... cannot).
function isChatModel(model) {
  if (model.kind) return model.kind === "llm";
  const format = model.details?.format || "";
  return format === "gguf" || format.startsWith("upstream:");
}

function titleFrom(text) {
  const line = (text || "").trim().split("\n")[0];
  return line.length > 60 ? `${line.slice(0, 57)}…` : line || "New chat";
}

export function mount(view, { full }) {
  full(true);
  let conv = { id: null, title: "New chat", model: "", system: "", options: {}, messages: [] };
  let controller = null; // the running reply's AbortController
  let disposed = false;

  // settings ---------------------------------------------------------------------------------------
  const modelSelect = select([], "", { "aria-label": "Model", class: "model-select" });
  const system = h("textarea", { rows: 3, placeholder: "You are a helpful assistant." });
  const paramInputs = Object.fromEntries(PARAMS.map(([name, , attrs]) => [name, h("input", { type: "number", ...attrs })]));
  const json = checkbox("JSON mode (format)");
  const schema = h("textarea", { rows: 4, class: "mono", placeholder: '{"type": "object", "properties": {…}} (optional)' });
  const tools = checkbox("Tools");
  const toolsText = h("textarea", { rows: 8, class: "mono", value: DEFAULT_TOOLS });
  const settingsError = h("div", { "aria-live": "polite" });
  const schemaField = field("JSON schema", schema, "Empty: any JSON object.");
  const toolsField = field("Tool definitions (Ollama/OpenAI format)", toolsText);
  const settings = h("section", { class: "chat-settings card", id: "chat-settings", hidden: true, "aria-label": "Chat settings" },
    field("System prompt", system),
    h("div", { class: "param-grid" }, PARAMS.map(([name, label]) => field(label, paramInputs[name]))),
    json.label, schemaField, tools.label, toolsField, settingsError);
  const syncToggles = () => { schemaField.hidden = !json.input.checked; toolsField.hidden = !tools.input.checked; };
  json.input.addEventListener("change", syncToggles);
  tools.input.addEventListener("change", syncToggles);
  syncToggles();

  const settingsButton = h("button", { type: "button", class: "button small", "aria-expanded": "false",
    "aria-controls": "chat-settings", text: "Settings" });
  settingsButton.addEventListener("click", () => {
    settings.hidden = !settings.hidden;
    settingsButton.setAttribute("aria-expanded", String(!settings.hidden));
  });

  // conversations ----------------------------------------------------------------------------------
  const convList = h("ul", { class: "conv-list", "aria-label": "Conversations" });
  const side = h("aside", { class: "chat-side", id: "chat-side", "aria-label": "Conversations" },
    h("button", { type: "button", class: "primary new-chat", text: "+ New chat", onclick: () => { newChat(); closeSide(); } }),
    convList);
  const sideButton = h("button", { type: "button", class: "button small side-toggle", "aria-controls": "chat-side",
    "aria-expanded": "false", text: "Chats" });
  const closeSide = () => { side.classList.remove("open"); sideButton.setAttribute("aria-expanded", "false"); };
  sideButton.addEventListener("click", () => {
    const open = !side.classList.contains("open");
    side.classList.toggle("open", open);
    sideButton.setAttribute("aria-expanded", String(open));
  });

  async function loadConversations() {
    try {
      const { conversations } = await api.get("/api/conversations");
      if (disposed) return;
      clear(convList, conversations.length ? conversations.map((c) => {
        const open = h("button", { type: "button", class: "conv-open", "aria-current": c.id === conv.id ? "true" : null },
          h("span", { class: "conv-title", text: c.title }),
          h("span", { class: "conv-meta muted small", text: `${c.message_count} msgs · ${fmtRelative(c.updated_at)}` }));
        open.addEventListener("click", () => { openConversation(c.id); closeSide(); });
        const remove = h("button", { type: "button", class: "icon-button conv-delete", text: "✕",
          "aria-label": `Delete conversation ${c.title}`, title: "Delete" });
        remove.addEventListener("click", () => deleteConversation(c));
        return h("li", { class: c.id === conv.id ? "active" : "" }, open, remove);
      }) : h("li", { class: "muted small empty", text: "No conversations yet." }));
    } catch (error) {
      clear(convList, h("li", {}, errorBox(error)));
    }
  }

  async function openConversation(id) {
    if (controller) return;
    try {
      const loaded = await api.get(`/api/conversations/${encodeURIComponent(id)}`);
      conv = { ...loaded, options: loaded.options || {}, system: loaded.system || "" };
      applySettings();
      drawMessages();
      loadConversations();
      input.focus();
    } catch (error) {
      toast(error.message, "error");
    }
  }

  async function deleteConversation(c) {
    if (!confirm(`Delete the conversation “${c.title}”?`)) return;
    try {
      await api.del(`/api/conversations/${encodeURIComponent(c.id)}`);
      if (c.id === conv.id) newChat();
      loadConversations();
    } catch (error) {
      toast(error.message, "error");
    }
  }

  function newChat() {
    if (controller) return;
    const keep = { model: modelSelect.value, system: system.value, options: collectOptions() };
    conv = { id: null, title: "New chat", messages: [], ...keep };
    drawMessages();
    loadConversations();
    input.focus();
  }

  function applySettings() {
    if (conv.model) setOptions(modelSelect, [...modelSelect.options].map((o) => o.value), conv.model);
    system.value = conv.system || "";
    const o = conv.options || {};
    for (const [name] of PARAMS) paramInputs[name].value = o[name] ?? "";
    json.input.checked = Boolean(o.json_mode);
    schema.value = o.schema || "";
    tools.input.checked = Boolean(o.tools_on);
    toolsText.value = o.tools || DEFAULT_TOOLS;
    syncToggles();
  }

  function collectOptions() {
    const o = {};
    for (const [name] of PARAMS) {
      const value = paramInputs[name].value.trim();
      if (value !== "") o[name] = Number(value);
    }
    if (json.input.checked) o.json_mode = true;
    if (schema.value.trim()) o.schema = schema.value;
    if (tools.input.checked) o.tools_on = true;
    if (toolsText.value.trim() && toolsText.value !== DEFAULT_TOOLS) o.tools = toolsText.value;
    return o;
  }

  // messages ---------------------------------------------------------------------------------------
  const log = h("div", { class: "messages", role: "log", "aria-live": "polite", "aria-label": "Messages" });
  wireCodeCopy(log, (text) => copyText(text));
  const empty = () => h("div", { class: "chat-empty muted" },
    h("p", { text: "Ask anything. Replies stream token by token from the model on this machine." }),
    h("p", { class: "small", text: "Enter sends, Shift+Enter starts a new line, Esc stops a reply." }));

  function drawMessages() {
    clear(log, conv.messages.length ? conv.messages.map((m) => messageView(m).el) : empty());
    log.scrollTop = log.scrollHeight;
  }

  // composer ---------------------------------------------------------------------------------------
  const input = h("textarea", { class: "composer-input", rows: 1, placeholder: "Message", "aria-label": "Message",
    enterkeyhint: "send" });
  const counter = h("span", { class: "composer-count muted small", "aria-live": "off" });
  const send = h("button", { type: "submit", class: "primary send", text: "Send" });
  const stop = h("button", { type: "button", class: "danger stop", text: "Stop", hidden: true });
  const composer = h("form", { class: "composer" }, input, h("div", { class: "composer-actions" }, counter, send, stop));

  function grow() {
    const n = input.value.length;
    counter.textContent = n > 2000 ? `${n.toLocaleString()} characters` : "";
    if (n > 20000) { input.style.height = "40vh"; return; } // measuring megabytes of text on every key is slow
    input.style.height = "auto";
    input.style.height = `${Math.min(input.scrollHeight + 2, window.innerHeight * 0.4)}px`;
  }
  input.addEventListener("input", grow);
  const coarse = matchMedia("(pointer: coarse)").matches;
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && !coarse) {
      event.preventDefault();
      composer.requestSubmit();
    }
  });
  view.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && controller) controller.abort();
  });
  stop.addEventListener("click", () => controller?.abort());
  composer.addEventListener("submit", (event) => {
    event.preventDefault();
    sendMessage();
  });

  function requestBody() {
    const options = collectOptions();
    const body = { model: modelSelect.value, messages: chatMessages(system.value, conv.messages), options: {} };
    for (const [name] of PARAMS) if (options[name] !== undefined) body.options[name] = options[name];
    if (json.input.checked) {
      if (schema.value.trim()) {
        try { body.format = JSON.parse(schema.value); } catch (error) {
          throw new Error(`The JSON schema is not valid JSON: ${error.message}`);
        }
      } else {
        body.format = "json";
      }
    }
    if (tools.input.checked) {
      try { body.tools = JSON.parse(toolsText.value); } catch (error) {
        throw new Error(`The tool definitions are not valid JSON: ${error.message}`);
      }
      if (!Array.isArray(body.tools)) throw new Error("The tool definitions must be a JSON array.");
    }
    return body;
  }

  async function sendMessage() {
    const text = input.value;
    if (!text.trim() || controller) return;
    if (!modelSelect.value) { toast("Pick a model first (pull one on the Models page).", "error"); return; }
    clear(settingsError);
    const user = { role: "user", content: text };
    conv.messages.push(user);
    let body;
    try {
      body = requestBody();
    } catch (error) {
      conv.messages.pop();
      settings.hidden = false;
      settingsButton.setAttribute("aria-expanded", "true");
      clear(settingsError, errorBox(error));
      return;
    }
    input.value = "";
    grow();
    if (log.querySelector(".chat-empty")) clear(log);
    log.append(messageView(user).el);
    const pending = messageView({ role: "assistant", content: "" });
    pending.update({ role: "assistant", content: "" }, { streaming: true });
    log.append(pending.el);
    log.setAttribute("aria-busy", "true");
    log.scrollTop = log.scrollHeight;
    controller = new AbortController();
    send.hidden = true;
    stop.hidden = false;
    const follow = () => log.scrollHeight - log.scrollTop - log.clientHeight < 80;
    const reply = await streamReply(body, controller.signal, (partial) => {
      const stick = follow();
      pending.update(partial, { streaming: true });
      if (stick) log.scrollTop = log.scrollHeight;
    });
    controller = null;
    send.hidden = false;
    stop.hidden = true;
    log.removeAttribute("aria-busy");
    pending.update(reply);
    log.scrollTop = log.scrollHeight;
    conv.messages.push(reply);
    if (!disposed) input.focus();
    await save();
  }

  async function save() {
    const payload = { title: conv.title, model: modelSelect.value, system: system.value || null,
      options: collectOptions(), messages: conv.messages };
    try {
      if (!conv.id) {
        payload.title = titleFrom(conv.messages.find((m) => m.role === "user")?.content);
        const created = await api.post("/api/conversations", payload);
        conv.id = created.id;
        conv.title = created.title;
      } else {
        await api.patch(`/api/conversations/${encodeURIComponent(conv.id)}`, payload);
      }
      if (!disposed) loadConversations();
    } catch (error) {
      toast(`The conversation was not saved: ${error.message}`, "error");
    }
  }

  // models -----------------------------------------------------------------------------------------
  const modelNote = h("span", { class: "muted small" });
  async function loadModels() {
    try {
      const [{ models }, config] = await Promise.all([api.get("/api/tags"),
        api.get("/api/ui/config").catch(() => ({}))]);
      const names = models.filter(isChatModel).map((m) => m.name);
      // the conversation's model, else the one chosen, else the server's DESKML_DEFAULT_MODEL
      const wanted = [conv.model, modelSelect.value, config.default_model].find((n) => n && names.includes(n));
      setOptions(modelSelect, names, wanted || names[0]);
      modelNote.textContent = names.length ? "" : "No chat models here: pull one on the Models page.";
    } catch (error) {
      modelNote.textContent = error.message;
    }
  }

  const toolbar = h("div", { class: "chat-toolbar" }, sideButton,
    h("label", { class: "visually-hidden", for: "chat-model", text: "Model" }), modelSelect, settingsButton, modelNote);
  modelSelect.id = "chat-model";
  const main = h("section", { class: "chat-main", "aria-label": "Chat" }, toolbar, settings, log, composer);
  clear(view, h("div", { class: "chat" }, side, main));
  drawMessages();
  loadModels();
  loadConversations();
  input.focus();

  const cleanup = () => {
    disposed = true;
    controller?.abort();
    full(false);
  };
  cleanup.refresh = () => { loadModels(); loadConversations(); };
  return cleanup;
}
