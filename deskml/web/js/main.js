// The shell: navigation, hash routing, theme, sign-in gate and the server-down banner.
import { ApiError, connection, events, request, session } from "./api.js";
import { clear, errorBox, h, toast } from "./dom.js";
import * as audio from "./pages/audio.js";
import * as chat from "./pages/chat.js";
import * as history from "./pages/history.js";
import * as images from "./pages/images.js";
import * as jobs from "./pages/jobs.js";
import * as keys from "./pages/keys.js";
import * as loginPage from "./pages/login.js";
import * as metrics from "./pages/metrics.js";
import * as models from "./pages/models.js";
import * as vision from "./pages/vision.js";

const PAGES = [
  { path: "chat", title: "Chat", page: chat },
  { path: "vision", title: "Vision", page: vision },
  { path: "audio", title: "Audio", page: audio },
  { path: "images", title: "Images", page: images },
  { path: "models", title: "Models", page: models },
  { path: "jobs", title: "Jobs", page: jobs },
  { path: "history", title: "History", page: history },
  { path: "metrics", title: "Metrics", page: metrics },
  { path: "keys", title: "Keys & pairing", page: keys },
];

const view = document.getElementById("view");
const nav = document.getElementById("nav");
let current = null; // {entry, cleanup}
let needLogin = false;
let renders = 0;

// theme ------------------------------------------------------------------------------------------
const THEME = "deskml.theme"; // a display preference, the only thing the UI keeps in localStorage

function applyTheme(theme) {
  if (theme === "light" || theme === "dark") document.documentElement.dataset.theme = theme;
  else delete document.documentElement.dataset.theme;
}

function effectiveTheme() {
  const set = document.documentElement.dataset.theme;
  if (set) return set;
  return matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

applyTheme(localStorage.getItem(THEME));
document.getElementById("theme-toggle").addEventListener("click", () => {
  const next = effectiveTheme() === "dark" ? "light" : "dark";
  localStorage.setItem(THEME, next);
  applyTheme(next);
  document.dispatchEvent(new Event("themechange"));
});

// navigation -------------------------------------------------------------------------------------
function buildNav() {
  clear(nav, PAGES.map((p) => h("a", { href: `#/${p.path}`, dataset: { path: p.path }, text: p.title })));
}

const menuToggle = document.getElementById("menu-toggle");
menuToggle.addEventListener("click", () => {
  const open = !nav.classList.contains("open");
  nav.classList.toggle("open", open);
  menuToggle.setAttribute("aria-expanded", String(open));
});
nav.addEventListener("click", (event) => {
  if (event.target.closest("a")) {
    nav.classList.remove("open");
    menuToggle.setAttribute("aria-expanded", "false");
  }
});

function routeName() {
  const name = location.hash.replace(/^#\/?/, "").split(/[/?]/)[0];
  return name || "chat";
}

function updateWho() {
  const who = document.getElementById("who");
  const logout = document.getElementById("logout");
  who.textContent = session.user ? `Signed in: ${session.user}` : "";
  logout.hidden = !session.signedIn();
}

async function render() {
  if (current?.cleanup) {
    try { current.cleanup(); } catch (error) { console.error(error); }
  }
  current = null;
  const name = routeName();
  const loginShown = needLogin || name === "login";
  for (const link of nav.querySelectorAll("a")) {
    if (link.dataset.path === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  nav.hidden = loginShown;
  view.classList.remove("full");
  updateWho();
  if (loginShown) {
    document.title = "Sign in · deskml";
    const cleanup = loginPage.mount(view, { onDone: signedIn });
    current = { entry: null, cleanup };
    return;
  }
  const entry = PAGES.find((p) => p.path === name);
  if (!entry) {
    clear(view, h("h1", { text: "Not found" }), h("p", {}, "No page here. ", h("a", { href: "#/chat", text: "Go to chat" })));
    return;
  }
  document.title = `${entry.title} · deskml`;
  clear(view);
  const seq = ++renders;
  try {
    const cleanup = await entry.page.mount(view, { full: (on) => view.classList.toggle("full", on) });
    if (seq !== renders) { cleanup?.(); return; } // navigated away while the page was loading
    current = { entry, cleanup };
  } catch (error) {
    console.error(error);
    clear(view, h("h1", { text: entry.title }), errorBox(error));
  }
}

function signedIn() {
  needLogin = false;
  const next = sessionStorage.getItem("deskml.next") || "#/chat";
  sessionStorage.removeItem("deskml.next");
  if (location.hash === next) render();
  else location.hash = next;
}

events.addEventListener("auth-required", () => {
  if (needLogin) return;
  needLogin = true;
  if (routeName() !== "login") sessionStorage.setItem("deskml.next", location.hash || "#/chat");
  session.clear();
  render();
});

events.addEventListener("online", () => {
  toast("The server is back", "ok");
  if (current?.cleanup?.refresh) current.cleanup.refresh();
  else if (!needLogin) render();
});

document.getElementById("logout").addEventListener("click", () => {
  session.clear();
  needLogin = true;
  render();
});

window.addEventListener("hashchange", render);

// start: find out whether this server wants credentials before showing a page ---------------------
async function start() {
  buildNav();
  try {
    await request("/api/ps");
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) needLogin = true;
    else if (error instanceof ApiError && error.status === 0) connection.lost();
  }
  render();
}

start();
