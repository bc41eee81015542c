// Every call the UI makes goes through here, to deskml's public API: credentials, the server's own
// error text, NDJSON and SSE streams, and the "server is down" banner with its retry loop.

const ACCESS = "deskml.access";
const REFRESH = "deskml.refresh";
const USER = "deskml.user";
const SCOPES = "deskml.scopes";

/** UI-wide events: "auth-required" (a 401), "online" (the server answers again), "offline". */
export const events = new EventTarget();

/**
 * Who the UI acts as. Login tokens (JWTs) live in sessionStorage, so a reload keeps the session and
 * closing the tab ends it; an API key typed into the login page lives in memory only. Nothing is
 * ever written to localStorage.
 */
export const session = {
  access: sessionStorage.getItem(ACCESS),
  refresh: sessionStorage.getItem(REFRESH),
  user: sessionStorage.getItem(USER),
  scopes: JSON.parse(sessionStorage.getItem(SCOPES) || "null"),
  apiKey: null,

  setTokens(tokens, user) {
    this.access = tokens.access_token;
    this.refresh = tokens.refresh_token;
    this.scopes = tokens.scopes || null;
    if (user !== undefined) this.user = user;
    sessionStorage.setItem(ACCESS, this.access);
    sessionStorage.setItem(REFRESH, this.refresh);
    sessionStorage.setItem(SCOPES, JSON.stringify(this.scopes));
    if (this.user) sessionStorage.setItem(USER, this.user);
  },
  useKey(key) {
    this.clear();
    this.apiKey = key;
    this.user = "API key";
  },
  clear() {
    this.access = this.refresh = this.user = this.scopes = this.apiKey = null;
    for (const name of [ACCESS, REFRESH, USER, SCOPES]) sessionStorage.removeItem(name);
  },
  credential() {
    return this.access || this.apiKey;
  },
  signedIn() {
    return Boolean(this.credential());
  },
};

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
  }
}

/** The server's own words for a failed response, whichever dialect's error shape it used. */
export async function errorText(response) {
  let text = "";
  try { text = await response.text(); } catch { /* body unreadable */ }
  let message = text.trim();
  try {
    const body = JSON.parse(text);
    if (typeof body.error === "string") message = body.error;
    else if (body.error && typeof body.error.message === "string") message = body.error.message;
    else if (typeof body.detail === "string") message = body.detail;
    else if (Array.isArray(body.detail)) {
      message = body.detail.map((d) => `${(d.loc || []).filter((p) => p !== "body").join(".")}: ${d.msg}`).join("; ");
    }
  } catch { /* not JSON: keep the text */ }
  if (message.length > 2000) message = `${message.slice(0, 2000)}…`;
  return `${message || response.statusText || "request failed"} (HTTP ${response.status})`;
}

// connection: banner and retry --------------------------------------------------------------------
export const connection = {
  down: false,
  attempt: 0,
  timer: null,
  countdown: null,

  lost() {
    if (this.down) return;
    this.down = true;
    this.attempt = 0;
    events.dispatchEvent(new Event("offline"));
    this.schedule();
  },
  schedule() {
    clearTimeout(this.timer);
    clearInterval(this.countdown);
    let left = Math.min(10, 2 ** this.attempt);
    this.banner(left);
    this.countdown = setInterval(() => { left -= 1; if (left > 0) this.banner(left); }, 1000);
    this.timer = setTimeout(() => this.probe(), left * 1000);
  },
  banner(seconds) {
    const el = document.getElementById("banner");
    if (!el) return;
    el.hidden = false;
    el.replaceChildren(
      document.createTextNode(`The deskml server at ${location.host} is not responding. Retrying in ${seconds} s… `),
    );
    const button = document.createElement("button");
    button.type = "button";
    button.className = "button small";
    button.textContent = "Retry now";
    button.addEventListener("click", () => this.probe());
    el.append(button);
  },
  async probe() {
    clearTimeout(this.timer);
    clearInterval(this.countdown);
    try {
      const response = await fetch("/api/version", { cache: "no-store", headers: UI_HEADER });
      if (response.ok) { this.restore(); return; }
    } catch { /* still down */ }
    this.attempt += 1;
    this.schedule();
  },
  ok() {
    if (this.down) this.restore();
  },
  restore() {
    clearTimeout(this.timer);
    clearInterval(this.countdown);
    this.down = false;
    const el = document.getElementById("banner");
    if (el) { el.hidden = true; el.replaceChildren(); }
    events.dispatchEvent(new Event("online"));
  },
};

// requests ---------------------------------------------------------------------------------------
// Marks the UI's own requests: the History page hides them (GET /api/history?ui=false) unless asked.
const UI_HEADER = { "X-Deskml-Client": "ui" };
let refreshing = null;

async function refreshTokens() {
  if (!session.refresh) return false;
  refreshing ??= (async () => {
    try {
      const response = await fetch("/login/refresh", {
        method: "POST", headers: { "Content-Type": "application/json", ...UI_HEADER },
        body: JSON.stringify({ refresh_token: session.refresh }),
      });
      if (!response.ok) return false;
      session.setTokens(await response.json());
      return true;
    } catch {
      return false;
    } finally {
      setTimeout(() => { refreshing = null; }, 0);
    }
  })();
  return refreshing;
}

/**
 * fetch() with the session's credential. Resolves with the Response when it is 2xx; otherwise
 * throws ApiError carrying the server's message. Network failure shows the banner.
 */
export async function request(path, { method = "GET", json, body, headers = {}, signal, retry = true } = {}) {
  const hdrs = new Headers(headers);
  hdrs.set("X-Deskml-Client", "ui"); // the history hides the UI's own polling unless asked
  const credential = session.credential();
  if (credential) hdrs.set("Authorization", `Bearer ${credential}`);
  let payload = body;
  if (json !== undefined) {
    hdrs.set("Content-Type", "application/json");
    payload = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(path, { method, headers: hdrs, body: payload, signal, cache: "no-store" });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    connection.lost();
    throw new ApiError(0, `The deskml server is not reachable (${error.message}).`);
  }
  connection.ok();
  if (response.status === 401 && retry && session.access && session.refresh) {
    if (await refreshTokens()) return request(path, { method, json, body, headers, signal, retry: false });
  }
  if (!response.ok) {
    const message = await errorText(response);
    if (response.status === 401) events.dispatchEvent(new CustomEvent("auth-required", { detail: message }));
    throw new ApiError(response.status, message);
  }
  return response;
}

async function parsed(response) {
  if (response.status === 204) return null;
  const text = await response.text();
  if (!text) return null;
  try { return JSON.parse(text); } catch { return text; }
}

export const api = {
  get: async (path, opts = {}) => parsed(await request(path, opts)),
  post: async (path, json, opts = {}) => parsed(await request(path, { ...opts, method: "POST", json })),
  patch: async (path, json, opts = {}) => parsed(await request(path, { ...opts, method: "PATCH", json })),
  del: async (path, json, opts = {}) => parsed(await request(path, { ...opts, method: "DELETE", json })),
  form: async (path, formData, opts = {}) => parsed(await request(path, { ...opts, method: "POST", body: formData })),
};

export async function login(username, password) {
  const response = await request("/login", { method: "POST", json: { username, password }, retry: false });
  session.setTokens(await response.json(), username);
}

// streams ----------------------------------------------------------------------------------------
async function* chunks(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  try {
    for (;;) {
      let result;
      try {
        result = await reader.read();
      } catch (error) {
        if (error.name === "AbortError") throw error;
        connection.probe();
        throw new ApiError(0, `the connection to the server broke (${error.message})`);
      }
      if (result.done) break;
      yield decoder.decode(result.value, { stream: true });
    }
    const tail = decoder.decode();
    if (tail) yield tail;
  } finally {
    reader.cancel().catch(() => {});
  }
}

/** Objects of an NDJSON stream (Ollama's streaming replies), as they arrive. */
export async function* ndjson(response) {
  let buffer = "";
  for await (const text of chunks(response)) {
    buffer += text;
    let nl;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, nl).trim();
      buffer = buffer.slice(nl + 1);
      if (line) yield JSON.parse(line);
    }
  }
  if (buffer.trim()) yield JSON.parse(buffer);
}

/**
 * Server-sent events read with fetch (EventSource cannot send an Authorization header):
 * yields {event, data} with data parsed as JSON when it is JSON.
 */
export async function* sse(response) {
  let buffer = "";
  for await (const text of chunks(response)) {
    buffer += text.replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (!data.length) continue;
      const raw = data.join("\n");
      let value = raw;
      try { value = JSON.parse(raw); } catch { /* plain text */ }
      yield { event, data: value };
    }
  }
}

/** Read a File as base64 without blocking the page (FileReader works off the main thread). */
export function fileToDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}
