// What every signed-in page shares: the session check (to /login when there is none),
// the navigation bar with the user and sign-out, the connection indicator's place, and
// the role on <body> so that a viewer's page shows no mutating controls (.admin-only).
"use strict";
import {currentSession, signIn, signOut} from "./api.js";

const LINKS = [["/", "Jobs"], ["/library", "Library"], ["/system", "System"]];

/** `make run` prints a link with the admin token in the fragment (never sent to the
 * server): trade it for the session cookie and drop it from the address bar and history. */
async function tradeFragmentToken() {
  const match = location.hash.match(/^#token=(.+)$/);
  if (!match) return;
  history.replaceState(null, "", location.pathname + location.search);
  try { await signIn({token: decodeURIComponent(match[1])}); } catch { /* the login page says why */ }
}

function nav(active, session) {
  const bar = document.createElement("nav");
  bar.className = "topbar";
  bar.setAttribute("aria-label", "main");
  const brand = document.createElement("a");
  brand.href = "/";
  brand.className = "brand";
  brand.textContent = "vidfleet";
  bar.append(brand);
  const list = document.createElement("ul");
  for (const [href, label] of LINKS) {
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.href = href;
    link.textContent = label;
    if (href === active) link.setAttribute("aria-current", "page");
    item.append(link);
    list.append(item);
  }
  bar.append(list);
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = (session.user ? session.user.name : "token") + " · " + session.role;
  const connection = document.createElement("span");
  connection.id = "connection";
  connection.dataset.state = "offline";
  connection.setAttribute("role", "status");
  connection.title = "live updates";
  const out = document.createElement("button");
  out.type = "button";
  out.id = "sign-out";
  out.textContent = "Sign out";
  out.addEventListener("click", async () => {
    await signOut().catch(() => {});
    location.assign("/login");
  });
  bar.append(connection, who, out);
  return bar;
}

/** Start a signed-in page: resolves to the session, or sends the browser to /login. */
export async function startPage(active) {
  await tradeFragmentToken();
  const session = await currentSession();
  if (!session) {
    location.replace("/login?next=" + encodeURIComponent(location.pathname + location.search));
    return new Promise(() => {});  // the page is going away
  }
  document.body.dataset.role = session.role;
  document.body.prepend(nav(active, session));
  return session;
}

/** Set the connection indicator: "live", "connecting", "polling" or "offline". */
export function setConnection(state, detail = "") {
  const indicator = document.getElementById("connection");
  if (!indicator) return;
  indicator.dataset.state = state;
  indicator.textContent = state;
  indicator.title = detail || "live updates: " + state;
}

/** A short message in the corner; `kind` is "info", "ok" or "error". */
export function toast(text, kind = "info") {
  let box = document.getElementById("toasts");
  if (!box) {
    box = document.createElement("div");
    box.id = "toasts";
    box.setAttribute("aria-live", "polite");
    document.body.append(box);
  }
  const note = document.createElement("div");
  note.className = "toast " + kind;
  note.textContent = text;
  box.append(note);
  setTimeout(() => note.remove(), 6000);
}

/** Element helper: el("td", {className: "x"}, "text", child...). */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("aria-") || key === "role") node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}
