// Chat messages: how each one is drawn, and one streamed reply from POST /api/chat (Ollama NDJSON).
import { ApiError, ndjson, request } from "../api.js";
import { copyText, fmtMs, h } from "../dom.js";
import { renderMarkdown } from "../markdown.js";

// A user message longer than this is shown cut, with a button for the rest: laying out megabytes of
// pasted text at once is what freezes a page.
const SHOW_CHARS = 4000;

function userBody(message) {
  const text = message.content || "";
  if (text.length <= SHOW_CHARS) return h("div", { class: "msg-text plain", text });
  const body = h("div", { class: "msg-text plain", text: text.slice(0, SHOW_CHARS) });
  const more = h("button", { type: "button", class: "button small",
    text: `Show all ${text.length.toLocaleString()} characters` });
  more.addEventListener("click", () => {
    body.textContent = text;
    more.remove();
  });
  return h("div", {}, body, more);
}

function toolCallsBlock(calls) {
  if (!calls?.length) return null;
  return h("div", { class: "tool-calls" }, calls.map((call) => {
    const fn = call.function || call;
    const args = typeof fn.arguments === "string" ? fn.arguments : JSON.stringify(fn.arguments ?? {});
    return h("div", { class: "tool-call" }, h("span", { class: "badge info", text: "tool call" }), " ",
      h("code", { text: `${fn.name}(${args})` }));
  }));
}

export function statsLine(stats) {
  if (!stats) return "";
  const parts = [];
  if (stats.ttft_ms !== undefined && stats.ttft_ms !== null) parts.push(`TTFT ${fmtMs(stats.ttft_ms)}`);
  if (stats.tokens_per_second) parts.push(`${stats.tokens_per_second.toFixed(1)} tok/s`);
  if (stats.tokens) parts.push(`${stats.tokens} tokens`);
  if (stats.total_ms) parts.push(fmtMs(stats.total_ms));
  if (stats.stopped) parts.push("stopped");
  return parts.join(" · ");
}

/** The element of one message; `update(message)` redraws it (the reply while it streams). */
export function messageView(message) {
  const role = message.role === "user" ? "You" : message.role === "assistant" ? "Assistant" : message.role;
  const body = h("div", { class: "msg-body" });
  const footer = h("div", { class: "msg-stats muted small" });
  const copy = h("button", { type: "button", class: "button small msg-copy", "aria-label": "Copy this message",
    text: "Copy" });
  const el = h("article", { class: `msg ${message.role}` },
    h("div", { class: "msg-head" }, h("span", { class: "msg-role", text: role }), copy), body, footer);
  let current = message;
  copy.addEventListener("click", () => copyText(current.content || ""));

  function update(msg, { streaming = false } = {}) {
    current = msg;
    const parts = [];
    if (msg.thinking) {
      parts.push(h("details", { class: "thinking", open: streaming && !msg.content },
        h("summary", { text: "Thinking" }), h("div", { class: "msg-text plain", text: msg.thinking })));
    }
    if (msg.role === "assistant") {
      const html = renderMarkdown(msg.content || "");
      if (msg.content || !streaming) parts.push(h("div", { class: "msg-text markdown", html }));
      if (streaming && !msg.content && !msg.thinking) parts.push(h("span", { class: "typing", "aria-label": "Waiting for the reply" }, "●●●"));
    } else {
      parts.push(userBody(msg));
    }
    const calls = toolCallsBlock(msg.tool_calls);
    if (calls) parts.push(calls);
    if (msg.stats?.error) parts.push(h("div", { class: "error-box", role: "alert", text: msg.stats.error }));
    body.replaceChildren(...parts);
    footer.textContent = statsLine(msg.stats);
    el.classList.toggle("streaming", streaming);
  }

  update(message);
  return { el, update };
}

/** Messages as /api/chat takes them: the system prompt first, failed replies left out. */
export function chatMessages(system, messages) {
  const out = [];
  if (system && system.trim()) out.push({ role: "system", content: system });
  for (const m of messages) {
    if (m.role === "assistant" && m.stats?.error && !m.content) continue;
    const item = { role: m.role, content: m.content || "" };
    if (m.tool_calls?.length) item.tool_calls = m.tool_calls;
    out.push(item);
  }
  return out;
}

/**
 * Stream one reply. `onUpdate(reply)` is called (at most once per animation frame) while tokens
 * arrive. Aborting `signal` closes the connection, which makes the server cancel the generation and
 * free its slot. Resolves with the finished reply message (stats included); never throws.
 */
export async function streamReply(body, signal, onUpdate) {
  const reply = { role: "assistant", content: "", stats: {} };
  const started = performance.now();
  let firstAt = null;
  let chunks = 0;
  let frame = 0;
  const schedule = () => {
    if (frame) return;
    frame = requestAnimationFrame(() => { frame = 0; onUpdate(reply); });
  };
  try {
    const response = await request("/api/chat", { method: "POST", json: { ...body, stream: true }, signal });
    for await (const line of ndjson(response)) {
      if (line.error) throw new ApiError(200, line.error);
      const msg = line.message || {};
      if (msg.content || msg.thinking) {
        if (firstAt === null) firstAt = performance.now();
        chunks += 1;
      }
      if (msg.content) reply.content += msg.content;
      if (msg.thinking) reply.thinking = (reply.thinking || "") + msg.thinking;
      if (msg.tool_calls?.length) {
        if (firstAt === null) firstAt = performance.now();
        reply.tool_calls = [...(reply.tool_calls || []), ...msg.tool_calls];
      }
      if (line.done) {
        const evalNs = line.eval_duration || 0;
        reply.stats = {
          tokens: line.eval_count ?? chunks,
          tokens_per_second: evalNs > 0 ? (line.eval_count || 0) / (evalNs / 1e9) : null,
          prompt_tokens: line.prompt_eval_count ?? null,
          done_reason: line.done_reason || null,
        };
      }
      schedule();
    }
  } catch (error) {
    if (error.name === "AbortError") {
      const seconds = firstAt === null ? 0 : (performance.now() - firstAt) / 1000;
      reply.stats = { tokens: chunks, tokens_per_second: seconds > 0 && chunks > 1 ? (chunks - 1) / seconds : null,
        stopped: true };
    } else {
      reply.stats = { ...reply.stats, error: error.message || String(error) };
    }
  }
  cancelAnimationFrame(frame);
  reply.stats.ttft_ms = firstAt === null ? null : Math.round(firstAt - started);
  reply.stats.total_ms = Math.round(performance.now() - started);
  return reply;
}
