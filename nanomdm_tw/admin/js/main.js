// The hash router: #/<page>[/<argument>][?query] picks a module of js/pages/, whose
// render(context) returns the page's nodes.  <main id="page"> says which page it
// shows (data-page) and how far it got (data-state: loading, ready, error).

import { ApiError, forgetKey, storedKey } from "./api.js";
import { el, fill } from "./dom.js";
import * as command from "./pages/command.js";
import * as devices from "./pages/devices.js";
import * as enrollment from "./pages/enrollment.js";
import * as key from "./pages/key.js";
import * as overview from "./pages/overview.js";
import * as profile from "./pages/profile.js";
import * as pushcerts from "./pages/pushcerts.js";

const PAGES = { key, overview, devices, enrollment, command, pushcerts, profile };
// The nav link that stands for a page without one of its own.
const NAV_OF = { enrollment: "devices", command: "devices" };

const main = document.getElementById("page");
const message = document.getElementById("message");
const notice = document.getElementById("notice");

let generation = 0; // which render is the latest; older ones drop their results
let carried = { message: null, notice: null }; // texts for the next page shown

function parseRoute(hash) {
  const raw = hash.startsWith("#/") ? hash.slice(2) : "";
  const at = raw.indexOf("?");
  const path = at < 0 ? raw : raw.slice(0, at);
  const params = new URLSearchParams(at < 0 ? "" : raw.slice(at + 1));
  const slash = path.indexOf("/");
  const name = slash < 0 ? path : path.slice(0, slash);
  let arg = slash < 0 ? "" : path.slice(slash + 1);
  try {
    arg = decodeURIComponent(arg);
  } catch {
    // a hand-typed, badly escaped ID: take it as it is
  }
  return { name: name || "overview", arg, params };
}

function markNav(name) {
  const current = `#/${NAV_OF[name] || name}`;
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.getAttribute("href") === current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function setState(state) {
  main.dataset.state = state;
  if (state === "loading") main.setAttribute("aria-busy", "true");
  else main.removeAttribute("aria-busy");
}

function clearMessages() {
  fill(message);
  fill(notice);
}

function showError(error) {
  fill(message, error instanceof Error ? error.message : String(error));
}

function errorView(page, error) {
  return [
    el("h1", { tabindex: -1 }, page.title),
    el("p", { class: "failed" }, "This page could not be loaded (the message above says why)."),
    el(
      "p",
      {},
      el("button", { type: "button", id: "retry", on: { click: () => show() } }, "Try again"),
    ),
  ];
}

/** Render the page of the current hash; `reload` keeps what is shown until the new data is in. */
async function show({ reload = false, focus = false } = {}) {
  const route = parseRoute(location.hash);
  if (!PAGES[route.name]) {
    location.replace("#/overview");
    return;
  }
  // Without a key every page is the key page; the wanted page comes after it.
  const name = storedKey() ? route.name : "key";
  const page = PAGES[name];
  const token = ++generation;
  const context = {
    arg: route.arg,
    params: route.params,
    setState: (state) => token === generation && setState(state),
    notify: (...nodes) => {
      fill(message);
      fill(notice, ...nodes);
    },
    fail: (error) => {
      fill(notice);
      showError(error);
    },
    clearMessages,
    reload: () => show({ reload: true }),
    keyAccepted: () => {
      if (route.name === "key") location.hash = "#/overview";
      else show({ focus: true });
    },
  };
  main.dataset.page = name;
  setState("loading");
  markNav(name);
  document.title = `${page.title} · nanomdm-tw admin`;
  if (!reload) {
    fill(message, carried.message);
    fill(notice, carried.notice);
    carried = { message: null, notice: null };
    fill(main, el("p", { class: "loading" }, `Loading ${page.title.toLowerCase()}…`));
  }
  let nodes;
  try {
    nodes = await page.render(context);
  } catch (error) {
    if (token !== generation) return;
    if (error instanceof ApiError && error.status === 401 && name !== "key") {
      // The stored key no longer works: ask for it again, then come back here.
      forgetKey();
      carried.message = error.message;
      show({ focus: true });
      return;
    }
    showError(error);
    fill(main, errorView(page, error));
    setState("error");
    return;
  }
  if (token !== generation) return;
  // A reload after an action replaces the control that had focus (or a disabled button
  // dropped it): keyboard users go on from what the action said, or else the heading.
  const active = document.activeElement;
  const focusLost = reload && (!active || active === document.body || main.contains(active));
  fill(main, nodes);
  setState("ready");
  if (focusLost && notice.textContent) notice.focus();
  else if (focus || focusLost) main.querySelector("h1")?.focus();
}

document.getElementById("forget-key").addEventListener("click", () => {
  forgetKey();
  carried.notice = "The API key was forgotten: this tab no longer holds it.";
  if (location.hash === "#/key") show({ focus: true });
  else location.hash = "#/key";
});
window.addEventListener("hashchange", () => show({ focus: true }));
if (!location.hash.startsWith("#/")) location.replace("#/overview");
show();
