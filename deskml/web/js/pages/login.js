// Sign in: POST /login for a user (the JWTs go to sessionStorage), or an API key kept in memory only.
import { login, request, session } from "../api.js";
import { clear, errorBox, field, h } from "../dom.js";

export function mount(view, { onDone }) {
  const username = h("input", { type: "text", name: "username", autocomplete: "username", required: true,
    autocapitalize: "none", spellcheck: "false" });
  const password = h("input", { type: "password", name: "password", autocomplete: "current-password", required: true });
  const status = h("div", { class: "login-status", "aria-live": "polite" });
  const submit = h("button", { class: "primary", type: "submit", text: "Sign in" });

  const form = h("form", { class: "stack", novalidate: true },
    field("User name", username), field("Password", password), submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!username.value.trim() || !password.value) {
      clear(status, errorBox("Enter your user name and password."));
      return;
    }
    submit.disabled = true;
    clear(status, h("span", { class: "muted", text: "Signing in…" }));
    try {
      await login(username.value.trim(), password.value);
      password.value = "";
      onDone();
    } catch (error) {
      clear(status, errorBox(error));
      password.select();
    } finally {
      submit.disabled = false;
    }
  });

  const key = h("input", { type: "password", name: "api-key", autocomplete: "off", placeholder: "dk_…" });
  const keyStatus = h("div", { "aria-live": "polite" });
  const keyForm = h("form", { class: "stack" },
    field("API key", key, "Kept in this page's memory only: reloading the page forgets it."),
    h("button", { class: "button", type: "submit", text: "Use this key" }));
  keyForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!key.value.trim()) return;
    session.useKey(key.value.trim());
    key.value = "";
    try {
      await request("/api/ps", { retry: false });
      onDone();
    } catch (error) {
      session.clear();
      clear(keyStatus, errorBox(error));
    }
  });

  clear(view, h("section", { class: "login card", "aria-labelledby": "login-title" },
    h("h1", { id: "login-title", text: "Sign in to deskml" }),
    h("p", { class: "muted small", text: "This server asks who you are. Sign in with a deskml user " +
      "(created with `deskml users create`)." }),
    form, status,
    h("details", { class: "login-key" }, h("summary", { text: "Use an API key instead" }), keyForm, keyStatus)));
  username.focus();
  return () => {};
}
