// Markdown for model replies: marked (GFM) → highlight.js for code → DOMPurify. Raw HTML in a reply is
// shown as text, never rendered: model output is untrusted input.
import DOMPurify from "../vendor/dompurify/purify.es.mjs";
import hljs from "../vendor/highlight/highlight.min.js";
import { Marked } from "../vendor/marked/marked.esm.js";

function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

// Highlighting is the slow part of a render; past this size a block is shown plain.
const HIGHLIGHT_LIMIT = 60000;

function highlight(code, lang) {
  const language = (lang || "").trim().split(/\s+/)[0].toLowerCase();
  if (code.length > HIGHLIGHT_LIMIT) return { html: escapeHtml(code), language };
  try {
    if (language && hljs.getLanguage(language)) {
      return { html: hljs.highlight(code, { language, ignoreIllegals: true }).value, language };
    }
    if (code.length < 5000) {
      const auto = hljs.highlightAuto(code);
      return { html: auto.value, language: auto.language || "" };
    }
  } catch { /* fall through to plain text */ }
  return { html: escapeHtml(code), language };
}

const marked = new Marked({
  gfm: true,
  breaks: false,
  renderer: {
    code({ text, lang }) {
      const { html, language } = highlight(text, lang);
      const label = language ? `<span class="code-lang">${escapeHtml(language)}</span>` : "";
      return `<div class="code-block"><div class="code-head">${label}<button type="button" class="button small code-copy">Copy</button></div>`
        + `<pre><code class="hljs${language ? ` language-${escapeHtml(language)}` : ""}">${html}</code></pre></div>`;
    },
    html({ text }) {
      return escapeHtml(text);
    },
  },
});

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A" && node.getAttribute("href")) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  }
});

const PURIFY = { USE_PROFILE: { html: true }, FORBID_TAGS: ["style", "form", "input", "textarea", "select"],
  FORBID_ATTR: ["style"] };

/** Sanitised HTML for a markdown text. */
export function renderMarkdown(text) {
  let html;
  try {
    html = marked.parse(text || "");
  } catch {
    html = `<p>${escapeHtml(text || "")}</p>`;
  }
  return DOMPurify.sanitize(html, PURIFY);
}

/** Highlighted, sanitised HTML for a code string (e.g. pretty JSON). */
export function renderCode(code, lang) {
  return DOMPurify.sanitize(`<pre><code class="hljs">${highlight(code, lang).html}</code></pre>`, PURIFY);
}

/** One listener per container for the "Copy" buttons of code blocks. */
export function wireCodeCopy(container, copy) {
  container.addEventListener("click", (event) => {
    const button = event.target.closest(".code-copy");
    if (!button) return;
    const code = button.closest(".code-block")?.querySelector("code");
    if (code) copy(code.textContent);
  });
}
