// Keys & pairing (admin scope): API keys (created keys are shown once, never stored by the page),
// users, and pairing a phone with a QR code (POST /api/admin/pair).
import { api } from "../api.js";
import { checkbox, clear, copyText, errorBox, field, fmtTime, h, spinner, toast } from "../dom.js";

const SCOPES = ["inference", "models", "admin"];

function scopePicker(defaults) {
  const boxes = SCOPES.map((s) => checkbox(s, defaults.includes(s), { value: s }));
  return {
    el: h("fieldset", { class: "scopes" }, h("legend", { class: "field-label", text: "Scopes" }),
      h("div", { class: "row" }, boxes.map((b) => b.label))),
    value: () => boxes.filter((b) => b.input.checked).map((b) => b.input.value),
  };
}

/** The secret, once: a read-only field with a copy button, gone when dismissed or the page is left. */
function shownOnce(title, secret, extra) {
  const input = h("input", { type: "text", readonly: true, value: secret, class: "mono", "aria-label": title });
  const box = h("div", { class: "secret-box", role: "status" },
    h("strong", { text: title }),
    h("p", { class: "small", text: "Shown only now: deskml keeps only its hash. Copy it into the app that needs it." }),
    h("div", { class: "row" }, h("div", { class: "grow" }, input),
      h("button", { type: "button", class: "button", text: "Copy", onclick: () => copyText(secret, input) }),
      h("button", { type: "button", class: "button", text: "Done", onclick: () => box.remove() })),
    extra || null);
  return box;
}

export function mount(view) {
  let disposed = false;

  // keys -------------------------------------------------------------------------------------------
  const keysBody = h("div", { class: "table-wrap" }, spinner("Loading keys"));
  const showRevoked = checkbox("Show revoked");
  showRevoked.input.addEventListener("change", () => loadKeys());
  const keyName = h("input", { type: "text", placeholder: "phone, ci, …", autocapitalize: "none" });
  const keyScopes = scopePicker(["inference", "models"]);
  const keyOut = h("div", { "aria-live": "polite" });
  const keyForm = h("form", { class: "stack" }, field("Name", keyName), keyScopes.el,
    h("div", {}, h("button", { type: "submit", class: "primary", text: "Create key" })), keyOut);
  keyForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!keyName.value.trim()) { clear(keyOut, errorBox("Give the key a name.")); return; }
    try {
      const created = await api.post("/api/keys", { name: keyName.value.trim(), scopes: keyScopes.value() });
      keyName.value = "";
      clear(keyOut, shownOnce(`Key “${created.name}”`, created.key));
      loadKeys();
    } catch (error) {
      clear(keyOut, errorBox(error));
    }
  });

  async function loadKeys() {
    try {
      const { keys } = await api.get(`/api/keys${showRevoked.input.checked ? "?revoked=true" : ""}`);
      if (disposed) return;
      clear(keysBody, keys.length ? h("table", {},
        h("thead", {}, h("tr", {}, ["Id", "Name", "Scopes", "Created", "Last used", ""].map((t, i) =>
          h("th", { text: t, class: i === 3 || i === 4 ? "hide-phone" : "" })))),
        h("tbody", {}, keys.map((k) => h("tr", { dataset: { key: k.id } },
          h("td", { class: "mono small", text: k.id }), h("td", { text: k.name }),
          h("td", { class: "small", text: k.scopes.join(", ") }),
          h("td", { class: "small hide-phone", text: fmtTime(k.created_at) }),
          h("td", { class: "small hide-phone", text: k.last_used_at ? fmtTime(k.last_used_at) : "never" }),
          h("td", {}, k.revoked_at ? h("span", { class: "badge warn", text: "revoked" })
            : h("button", { type: "button", class: "danger small", text: "Revoke", "aria-label": `Revoke key ${k.name}`,
              onclick: () => revoke(k) }))))))
        : h("p", { class: "muted", text: "No API keys yet." }));
    } catch (error) {
      clear(keysBody, errorBox(error));
    }
  }

  async function revoke(k) {
    if (!confirm(`Revoke the key “${k.name}” (${k.id})? Apps using it stop working at once.`)) return;
    try {
      await api.del(`/api/keys/${encodeURIComponent(k.id)}`);
      toast(`Key ${k.name} revoked`, "ok");
      loadKeys();
    } catch (error) { toast(error.message, "error"); }
  }

  // users ------------------------------------------------------------------------------------------
  const usersBody = h("div", { class: "table-wrap" }, spinner("Loading users"));
  const userName = h("input", { type: "text", autocomplete: "off", autocapitalize: "none" });
  const userPassword = h("input", { type: "password", autocomplete: "new-password", minlength: 8 });
  const userScopes = scopePicker(["inference", "models"]);
  const userOut = h("div", { "aria-live": "polite" });
  const userForm = h("form", { class: "stack" }, h("div", { class: "row" },
    h("div", { class: "grow" }, field("User name", userName)), h("div", { class: "grow" }, field("Password (8+ characters)", userPassword))),
  userScopes.el, h("div", {}, h("button", { type: "submit", class: "primary", text: "Create user" })), userOut);
  userForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api.post("/api/users", { username: userName.value.trim(), password: userPassword.value, scopes: userScopes.value() });
      clear(userOut, h("span", { class: "badge ok", text: "created" }), ` ${userName.value.trim()} can now sign in.`);
      userName.value = userPassword.value = "";
      loadUsers();
    } catch (error) {
      clear(userOut, errorBox(error));
    }
  });

  async function loadUsers() {
    try {
      const { users } = await api.get("/api/users");
      if (disposed) return;
      clear(usersBody, users.length ? h("table", {},
        h("thead", {}, h("tr", {}, ["User", "Scopes", "Last sign-in", ""].map((t) => h("th", { text: t })))),
        h("tbody", {}, users.map((u) => h("tr", {},
          h("td", { text: u.username }), h("td", { class: "small", text: u.scopes.join(", ") }),
          h("td", { class: "small", text: u.last_login_at ? fmtTime(u.last_login_at) : "never" }),
          h("td", {}, h("button", { type: "button", class: "danger small", text: "Delete", "aria-label": `Delete user ${u.username}`,
            onclick: async () => {
              if (!confirm(`Delete the user ${u.username}?`)) return;
              try { await api.del(`/api/users/${encodeURIComponent(u.username)}`); loadUsers(); } catch (error) { toast(error.message, "error"); }
            } }))))))
        : h("p", { class: "muted", text: "No users yet." }));
    } catch (error) {
      clear(usersBody, errorBox(error));
    }
  }

  // pairing ----------------------------------------------------------------------------------------
  const device = h("input", { type: "text", placeholder: "pixel-8", autocapitalize: "none" });
  const pairScopes = scopePicker(["inference"]);
  const extraUrl = h("input", { type: "text", placeholder: "https://deskml.lan:11434 (optional)", autocapitalize: "none" });
  const pairOut = h("div", { "aria-live": "polite" });
  const pairForm = h("form", { class: "stack" }, field("Device name", device), pairScopes.el,
    field("Extra URL to offer first", extraUrl),
    h("div", {}, h("button", { type: "submit", class: "primary", text: "Show pairing QR code" })), pairOut);
  pairForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!device.value.trim()) { clear(pairOut, errorBox("Name the device first.")); return; }
    clear(pairOut, spinner("Pairing"));
    try {
      const body = { name: device.value.trim(), scopes: pairScopes.value() };
      if (extraUrl.value.trim()) body.urls = [extraUrl.value.trim()];
      const paired = await api.post("/api/admin/pair", body);
      const qr = h("figure", { class: "qr" }, h("img", { src: paired.png, alt: "Pairing QR code", width: 280, height: 280 }),
        h("figcaption", { class: "small muted", text: "Scan it with the app. It carries the server's addresses" +
          (paired.key_id ? " and a new API key." : ".") }));
      const urls = h("ul", { class: "small mono" }, (paired.payload.urls || []).map((u) => h("li", { text: u })));
      const key = paired.payload.key;
      clear(pairOut, qr, urls, key ? shownOnce(`Key for ${device.value.trim()}`, key) : null,
        h("details", {}, h("summary", { class: "small", text: "What the QR code says" }), h("pre", { class: "json", text: paired.text })));
      if (paired.key_id) loadKeys();
    } catch (error) {
      clear(pairOut, errorBox(error));
    }
  });

  clear(view,
    h("div", { class: "page-head" }, h("h1", { text: "Keys & pairing" })),
    h("div", { class: "grid" },
      h("section", { class: "card", "aria-labelledby": "k-pair" }, h("h2", { id: "k-pair", text: "Pair a phone" }), pairForm),
      h("section", { class: "card", "aria-labelledby": "k-new" }, h("h2", { id: "k-new", text: "New API key" }), keyForm)),
    h("section", { class: "card section-gap", "aria-labelledby": "k-keys" },
      h("div", { class: "page-head" }, h("h2", { id: "k-keys", text: "API keys" }), showRevoked.label), keysBody),
    h("section", { class: "card", "aria-labelledby": "k-users" }, h("h2", { id: "k-users", text: "Users" }), usersBody, userForm));
  loadKeys();
  loadUsers();

  const cleanup = () => { disposed = true; };
  cleanup.refresh = () => { loadKeys(); loadUsers(); };
  return cleanup;
}
