// The live job feed every page that shows jobs uses: the `/ws` WebSocket (same origin,
// the session cookie), resumed from the last event id after a drop, with polling of
// the API while the socket cannot connect, and the connection indicator kept true.
//
// The page gives three callbacks: `onJob(job)` for each job event, in order;
// `reload()` to load its list afresh (after a `resync`, and after a connect that could
// not resume, since events may have been missed); `poll()` to refresh what it shows
// while the socket is down (throws when the server cannot be reached).
"use strict";
import {setConnection} from "./shell.js";

const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 10_000;
const POLL_MS = 2_000;
// A socket that stays open this long (or delivers an event) was a real connection:
// the backoff starts over. A server that accepts and closes at once keeps backing off.
const STABLE_MS = 5_000;

/** Full jitter: a random delay up to the exponential bound (so many pages dropped by
 * one restart do not all come back in the same instant). */
export function backoffDelay(attempt) {
  const bound = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** attempt);
  return Math.random() * bound;
}

export class LiveJobs {
  constructor({onJob, reload, poll}) {
    this.onJob = onJob;
    this.reload = reload;
    this.poll = poll;
    this.lastId = null;  // the newest stream id seen: where a resume starts
    this.attempt = 0;
    this.socket = null;
    this.retryTimer = null;
    this.pollTimer = null;
    this.stableTimer = null;
    this.polling = false;
  }

  start() {
    setConnection("connecting");
    this.connect();
  }

  connect() {
    this.retryTimer = null;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    let socket;
    try {
      socket = new WebSocket(`${scheme}//${location.host}/ws`);
    } catch {
      this.dropped();
      return;
    }
    this.socket = socket;
    socket.addEventListener("open", () => this.opened(socket));
    socket.addEventListener("message", (message) => this.received(message));
    socket.addEventListener("close", () => { if (socket === this.socket) this.dropped(); });
    // An error is always followed by a close, which does the work.
    socket.addEventListener("error", () => {});
  }

  opened(socket) {
    const resuming = this.lastId !== null;
    socket.send(JSON.stringify({action: "subscribe", jobs: ["*"], since: this.lastId}));
    this.stopPolling();
    setConnection("live");
    this.stableTimer = setTimeout(() => { this.attempt = 0; }, STABLE_MS);
    // With no event id to resume from, whatever happened before this subscription is
    // only in the API: read the list again (events arriving meanwhile are applied too;
    // the page keeps the newer of the two).
    if (!resuming) this.safeReload();
  }

  received(message) {
    let data;
    try { data = JSON.parse(message.data); } catch { return; }
    this.attempt = 0;
    for (const event of Array.isArray(data) ? data : [data]) {
      if (!event || typeof event !== "object") continue;
      if (event.type === "job" && event.job) {
        this.lastId = event.id;
        this.onJob(event.job);
      } else if (event.type === "resync") {
        this.safeReload();
      }
    }
  }

  dropped() {
    clearTimeout(this.stableTimer);
    this.socket = null;
    const delay = backoffDelay(this.attempt);
    this.attempt += 1;
    this.retryTimer = setTimeout(() => this.connect(), delay);
    this.startPolling();
  }

  startPolling() {
    if (this.polling) return;
    this.polling = true;
    setConnection("connecting", "live updates: reconnecting");
    const tick = async () => {
      if (!this.polling) return;
      try {
        await this.poll();
        if (this.polling) setConnection("polling", "live updates: polling every 2 s while reconnecting");
      } catch {
        if (this.polling) setConnection("offline", "the server cannot be reached; retrying");
      }
      if (this.polling) this.pollTimer = setTimeout(tick, POLL_MS);
    };
    tick();
  }

  stopPolling() {
    this.polling = false;
    clearTimeout(this.pollTimer);
    this.pollTimer = null;
  }

  async safeReload() {
    try { await this.reload(); } catch { /* the next poll or resync reloads */ }
  }
}
