// The sign-in page: a user name and password, or a token; then back to where the
// browser was going (only a path on this site: never an open redirect).
"use strict";
import {currentSession, signIn} from "./api.js";

function next() {
  const target = new URLSearchParams(location.search).get("next") || "/";
  return target.startsWith("/") && !target.startsWith("//") && !target.startsWith("/\\") ? target : "/";
}

function explain(error) {
  if (error.status === 429) return error.message;
  if (error.status === 401) return "That user name and password (or token) was not accepted.";
  return error.message;
}

async function submit(event, credentials) {
  event.preventDefault();
  const message = document.getElementById("login-error");
  message.textContent = "";
  try {
    await signIn(credentials());
    location.replace(next());
  } catch (error) {
    message.textContent = explain(error);
  }
}

document.getElementById("login-form").addEventListener("submit", (event) => submit(event, () => ({
  username: document.getElementById("username").value,
  password: document.getElementById("password").value,
})));
document.getElementById("token-form").addEventListener("submit", (event) => submit(event, () => ({
  token: document.getElementById("token").value,
})));

(async () => {
  const match = location.hash.match(/^#token=(.+)$/);
  if (match) {
    history.replaceState(null, "", location.pathname + location.search);
    try { await signIn({token: decodeURIComponent(match[1])}); } catch { /* shown below */ }
  }
  if (await currentSession().catch(() => null)) location.replace(next());
  else document.getElementById("username").focus();
})();
