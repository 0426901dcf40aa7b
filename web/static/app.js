// The page's script, a file of its own: the Content-Security-Policy allows no inline script.
"use strict";
const rows = new Map();
let lastEventId = null;
let socket = null;

function show(id) {
  for (const s of ["login", "main"]) document.getElementById(s).hidden = s !== id;
}

function render(job) {
  let row = rows.get(job.id);
  if (!row) {
    row = document.createElement("tr");
    row.dataset.jobId = job.id;
    row.innerHTML = "<td class=id></td><td class=url></td><td class=state></td>" +
      "<td><progress max=1></progress></td><td class=stage></td>";
    document.getElementById("jobs").prepend(row);
    rows.set(job.id, row);
  }
  row.querySelector(".id").textContent = job.id.slice(0, 8);
  row.querySelector(".url").textContent = (job.params && job.params.url) || job.kind;
  const state = row.querySelector(".state");
  state.textContent = job.status;
  state.className = "state " + job.status;
  const bar = row.querySelector("progress");
  if (job.progress === null || job.progress === undefined) bar.removeAttribute("value");
  else bar.value = job.progress;
  row.querySelector(".stage").textContent =
    job.error ? job.error.message : (job.stage || "");
}

async function loadJobs() {
  const response = await fetch("/api/jobs?limit=100");
  if (response.status === 401) { show("login"); return false; }
  if (!response.ok) {
    // A store the server needs is down (503) or something else failed: say so, keep
    // the page, and try again shortly.
    const body = await response.json().catch(() => ({}));
    const reason = (body.error && body.error.message) || `the server answered ${response.status}`;
    document.getElementById("status").textContent = `${reason}; retrying…`;
    setTimeout(loadJobs, 3000);
    return true;
  }
  const page = await response.json();
  for (const job of page.items.reverse()) render(job);
  return true;
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  socket = new WebSocket(scheme + "//" + location.host + "/ws");
  const status = document.getElementById("status");
  socket.onopen = () => {
    status.textContent = "live";
    socket.send(JSON.stringify({action: "subscribe", jobs: ["*"], since: lastEventId}));
  };
  socket.onmessage = (message) => {
    const data = JSON.parse(message.data);
    for (const event of Array.isArray(data) ? data : [data]) {
      if (event.type === "job") { lastEventId = event.id; render(event.job); }
      else if (event.type === "resync") { loadJobs(); }
    }
  };
  socket.onclose = () => {
    status.textContent = "reconnecting…";
    setTimeout(connect, 1000);
  };
}

async function signIn(token) {
  const response = await fetch("/api/session", {
    method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({token}),
  });
  return response.ok;
}

document.getElementById("login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  if (!(await signIn(document.getElementById("token").value))) {
    document.getElementById("login-error").textContent = "That token was not accepted.";
    return;
  }
  start();
});

document.getElementById("download-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const error = document.getElementById("download-error");
  error.textContent = "";
  const response = await fetch("/api/videos/download", {
    method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({url: document.getElementById("url").value}),
  });
  const body = await response.json();
  if (!response.ok) { error.textContent = body.error.message; return; }
  render(body);
  document.getElementById("url").value = "";
});

async function start() {
  if (await loadJobs()) { show("main"); connect(); }
}

// `make run` prints a link with the token in the fragment (never sent to the server):
// trade it for the session cookie and drop it from the address bar and history.
(async () => {
  const match = location.hash.match(/^#token=(.+)$/);
  if (match) {
    history.replaceState(null, "", location.pathname);
    await signIn(decodeURIComponent(match[1]));
  }
  start();
})();
