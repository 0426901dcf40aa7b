// The jobs page (`/`): the job history as a live table (the WebSocket feed of live.js,
// polling while it is down), filters and a server-side search reflected in the URL,
// cancel and retry, batches that open onto their parts, a toast when a job ends.
"use strict";
import {api} from "./api.js";
import {startPage, toast, el} from "./shell.js";
import {LiveJobs} from "./live.js";
import {setUpAddForm} from "./add.js";
import {JobRow, PARENT_KINDS, PART_KINDS, FINISHED, jobLabel} from "./job_row.js";

const PAGE_SIZE = 50;
const MAX_LIMIT = 200;
const PARTS_SHOWN = 200;
const SEARCH_DEBOUNCE_MS = 300;
const AGE_REFRESH_MS = 10_000;
// Pages read in a row when parts (shown under their batch) fill a page of the history.
const FOLLOW_PAGES = 4;
const BATCH_REFRESH_MS = 1_000;
const FIRST_LOAD_RETRY_MS = 3_000;
const FEW_ROWS = 10;
// Jobs not shown whose last status is kept, so their end can still be announced.
const REMEMBERED = 2_000;

function time(iso) {
  const value = Date.parse(iso);
  return Number.isNaN(value) ? 0 : value;
}

/** Whether `incoming` is at least as new as `current` (events and list reads race). */
function isNewer(current, incoming) {
  if (!current) return true;
  if ((incoming.attempts ?? 0) !== (current.attempts ?? 0)) {
    return (incoming.attempts ?? 0) > (current.attempts ?? 0);
  }
  return time(incoming.updated_at) >= time(current.updated_at);
}

function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) if (value) search.set(key, String(value));
  return search.toString();
}

class JobsPage {
  constructor(admin) {
    this.admin = admin;
    this.body = document.getElementById("job-rows");
    this.note = document.getElementById("jobs-note");
    this.moreButton = document.getElementById("more");
    this.rows = new Map();      // job id -> JobRow on the page
    this.batches = new Map();   // batch id -> {timer, readAt} of an open batch
    this.statuses = new Map();  // job id -> last status of a top-level job not shown
    this.next = null;           // the history's cursor past the rows shown
    this.loaded = false;
    this.generation = 0;        // a newer load makes an older one's answer moot
    this.filters = this.readFilters();
  }

  // --- filters, and the page's URL that reflects them

  readFilters() {
    const params = new URLSearchParams(location.search);
    const filters = {status: params.get("status") || "", kind: params.get("kind") || "",
      q: (params.get("q") || "").slice(0, 200)};
    document.getElementById("filter-status").value = filters.status;
    const kind = document.getElementById("filter-kind");
    if (filters.kind && ![...kind.options].some((option) => option.value === filters.kind)) {
      kind.append(el("option", {value: filters.kind}, filters.kind));
    }
    kind.value = filters.kind;
    document.getElementById("filter-q").value = filters.q;
    return filters;
  }

  watchFilters() {
    const form = document.getElementById("filters");
    const apply = () => {
      this.filters = {
        status: document.getElementById("filter-status").value,
        kind: document.getElementById("filter-kind").value,
        q: document.getElementById("filter-q").value.trim(),
      };
      const search = query(this.filters);
      history.replaceState(null, "", location.pathname + (search ? "?" + search : ""));
      this.reload({announce: false}).catch((error) => this.showLoadError(error));
    };
    let debounce = null;
    form.addEventListener("change", (event) => { if (event.target.id !== "filter-q") apply(); });
    document.getElementById("filter-q").addEventListener("input", () => {
      clearTimeout(debounce);
      debounce = setTimeout(apply, SEARCH_DEBOUNCE_MS);
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      clearTimeout(debounce);
      apply();
    });
  }

  listPath(extra) {
    return "/api/jobs?" + query({...this.filters, ...extra});
  }

  /** What the history shows: top-level jobs (parts go under their batch) that pass the
   * filters; the search is the server's, so a live job is held to a plain substring. */
  wanted(job) {
    if (job.parent_id && !PART_KINDS.has(this.filters.kind)) return false;
    if (this.filters.status && job.status !== this.filters.status) return false;
    if (this.filters.kind && job.kind !== this.filters.kind) return false;
    if (this.filters.q) {
      const needle = this.filters.q.toLowerCase();
      const params = job.params || {};
      const haystack = [params.url, params.title, job.error && job.error.message]
        .filter((text) => typeof text === "string").join("\n").toLowerCase();
      if (!haystack.includes(needle)) return false;
    }
    if (this.next) {  // older than the last row shown: it belongs to a later page
      const last = this.lastTopRow();
      if (last && time(job.created_at) < time(last.job.created_at)) return false;
    }
    return true;
  }

  // --- loading

  async reload({announce = true} = {}) {
    const generation = ++this.generation;
    document.getElementById("filter-q-error").textContent = "";
    let page = await api(this.listPath({limit: PAGE_SIZE}));
    if (generation !== this.generation) return;
    const previous = this.rows;
    const open = [...this.batches.keys()];
    this.body.replaceChildren();
    this.rows = new Map();
    this.batches = new Map();
    this.next = page.next;
    for (let followed = 0; ; followed += 1) {
      for (const job of page.items) {
        const known = previous.get(job.id);
        const fresh = known && !isNewer(known.job, job) ? known.job : job;
        if (announce && known) this.announceEnd(known.job.status, fresh);
        this.place(fresh, {append: true});
      }
      if (!this.next || this.topRowCount() >= FEW_ROWS || followed >= FOLLOW_PAGES) break;
      page = await api(this.listPath({limit: PAGE_SIZE, cursor: this.next}));
      if (generation !== this.generation) return;
      this.next = page.next;
    }
    this.loaded = true;
    this.showState();
    for (const id of open) if (this.rows.has(id)) await this.openBatch(id);
  }

  async more() {
    if (!this.next) return;
    const generation = this.generation;
    this.moreButton.disabled = true;
    try {
      const before = this.topRowCount();
      for (let followed = 0; this.next && followed <= FOLLOW_PAGES; followed += 1) {
        const page = await api(this.listPath({limit: PAGE_SIZE, cursor: this.next}));
        if (generation !== this.generation) return;
        this.next = page.next;
        for (const job of page.items) this.place(job, {append: true});
        if (this.topRowCount() - before >= FEW_ROWS) break;
      }
    } catch (error) {
      toast(error.message, "error");
    } finally {
      this.moreButton.disabled = false;
      this.showState();
    }
  }

  /** While the socket is down: read again what the page shows. */
  async poll() {
    if (!this.loaded) return this.reload();
    const limit = Math.min(MAX_LIMIT, Math.max(PAGE_SIZE, this.topRowCount()));
    const page = await api(this.listPath({limit}));
    for (const job of page.items) this.update(job);
    for (const id of this.batches.keys()) await this.loadParts(id);
  }

  showLoadError(error) {
    if (error.status === 401) {  // the session ended (signed out elsewhere, expired)
      location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search));
    } else if (error.field === "q") {
      document.getElementById("filter-q-error").textContent = error.message;
    } else {
      toast(error.message, "error");
    }
  }

  showState() {
    const shown = this.topRowCount();
    const filtered = this.filters.status || this.filters.kind || this.filters.q;
    this.note.textContent = shown ? "" : filtered ? "No job matches." : "No jobs yet.";
    this.moreButton.hidden = !this.next;
  }

  // --- rows

  /** The top-level rows in the page's order (newest first). */
  topRows() {
    return [...this.body.children].filter((tr) => !tr.dataset.parentId)
      .map((tr) => this.rows.get(tr.dataset.jobId)).filter(Boolean);
  }

  topRowCount() {
    return this.topRows().length;
  }

  lastTopRow() {
    return this.topRows().at(-1) || null;
  }

  /** A job from any source (an event, a poll, an answer to an action). */
  update(job) {
    const row = this.rows.get(job.id);
    if (row) {
      if (!isNewer(row.job, job)) return;
      if (!("live" in job) && job.status === "running" && row.job.live) job = {...job, live: row.job.live};
      this.announceEnd(row.job.status, job);
      row.fill(job);
    } else {
      if (!job.parent_id) this.announceEnd(this.statuses.get(job.id), job);
      this.place(job);
    }
    if (job.parent_id && this.batches.has(job.parent_id)) this.refreshBatch(job.parent_id);
    else if (this.batches.has(job.id)) this.refreshBatch(job.id);
    this.showState();
  }

  /** Put a job the page has no row for where it belongs, if it belongs anywhere;
   * `append`: it comes from a page of the history, in order, filtered by the server. */
  place(job, {append = false} = {}) {
    if (this.rows.has(job.id)) {
      this.update(job);
      return;
    }
    if (job.parent_id && this.batches.has(job.parent_id)) {
      this.insertPart(job);
      return;
    }
    const topLevel = !job.parent_id || PART_KINDS.has(this.filters.kind);
    if (!topLevel || (!append && !this.wanted(job))) {
      this.remember(job);
      return;
    }
    const row = this.makeRow(job, false);
    this.statuses.delete(job.id);
    if (append) {
      this.body.append(row.tr);
    } else {
      // Newest first: before the first top-level row created before it.
      const created = time(job.created_at);
      const next = this.topRows().find((other) => time(other.job.created_at) < created);
      this.body.insertBefore(row.tr, next ? next.tr : null);
    }
  }

  remember(job) {
    if (job.parent_id) return;
    this.statuses.delete(job.id);
    this.statuses.set(job.id, job.status);
    if (this.statuses.size > REMEMBERED) this.statuses.delete(this.statuses.keys().next().value);
  }

  makeRow(job, isPart) {
    const row = new JobRow(job, {
      isPart,
      admin: this.admin,
      onCancel: (id) => this.act(id, "cancel"),
      onRetry: (id) => this.act(id, "retry"),
      onToggle: (id) => this.toggleBatch(id),
    });
    this.rows.set(job.id, row);
    return row;
  }

  announceEnd(before, job) {
    if (job.parent_id || !before || FINISHED.has(before) || before === job.status) return;
    if (job.status === "succeeded") toast(`${jobLabel(job)}: succeeded`, "ok");
    else if (job.status === "failed") {
      const reason = job.error && job.error.message ? job.error.message : "no reason given";
      toast(`${jobLabel(job)}: failed: ${reason}`, "error");
    }
  }

  // --- actions

  async act(id, action) {
    const row = this.rows.get(id);
    if (row) row.busy(action);
    try {
      const job = await api(`/api/jobs/${encodeURIComponent(id)}/${action}`, {method: "POST"});
      if (action === "retry") {
        toast(`${jobLabel(job)}: retry queued`, "info");
        if (row) row.idle();
      }
      this.update(job);
    } catch (error) {
      if (row) row.idle();
      toast(error.message, "error");
    }
  }

  // --- batches and their parts

  async toggleBatch(id) {
    const row = this.rows.get(id);
    if (!row) return;
    if (this.batches.has(id)) {
      clearTimeout(this.batches.get(id).timer);
      this.batches.delete(id);
      for (const [partId, part] of [...this.rows]) {
        if (part.isPart && part.job.parent_id === id) { part.tr.remove(); this.rows.delete(partId); }
      }
      row.setOpen(false, null);
      return;
    }
    await this.openBatch(id).catch((error) => toast(error.message, "error"));
  }

  async openBatch(id) {
    const row = this.rows.get(id);
    if (!row) return;
    this.batches.set(id, {timer: null, readAt: 0});
    row.setOpen(true, null);
    await this.loadParts(id);
  }

  async loadParts(id) {
    const page = await api(this.listPath({parent_id: id, limit: PARTS_SHOWN, status: "", kind: "", q: ""}));
    if (!this.batches.has(id)) return;
    for (const job of page.items) this.update(job);
    this.refreshBatch(id);
  }

  insertPart(job) {
    const parent = this.rows.get(job.parent_id);
    if (!parent) return;
    const row = this.makeRow(job, true);
    let after = parent.tr;
    while (after.nextElementSibling && after.nextElementSibling.dataset.parentId === job.parent_id) {
      after = after.nextElementSibling;
    }
    after.after(row.tr);
  }

  /** The batch's counts by status (`GET /api/jobs/{id}`): one read at a time, at most
   * about one a second however fast its parts change. */
  refreshBatch(id) {
    const batch = this.batches.get(id);
    if (!batch || batch.timer) return;
    const wait = Math.max(0, (batch.readAt || 0) + BATCH_REFRESH_MS - Date.now());
    batch.timer = setTimeout(async () => {
      try {
        const job = await api(`/api/jobs/${encodeURIComponent(id)}`);
        const row = this.rows.get(id);
        if (this.batches.get(id) !== batch || !row) return;
        row.setOpen(true, job.children || {total: 0}, this.partsProgress(id));
      } catch {
        /* the next event or poll asks again */
      } finally {
        batch.readAt = Date.now();
        batch.timer = null;
      }
    }, wait);
  }

  /** The parts' progress taken together, for a batch whose own progress is unknown. */
  partsProgress(id) {
    let sum = 0;
    let count = 0;
    for (const row of this.rows.values()) {
      if (!row.isPart || row.job.parent_id !== id) continue;
      count += 1;
      sum += FINISHED.has(row.job.status) ? 1 : (typeof row.job.progress === "number" ? row.job.progress : 0);
    }
    return count ? sum / count : null;
  }

  refreshAges() {
    const now = Date.now();
    for (const row of this.rows.values()) row.refreshAge(now);
  }
}

async function main() {
  const session = await startPage("/");
  const admin = session.role === "admin";
  if (!admin) document.getElementById("add").remove();
  const page = new JobsPage(admin);
  page.watchFilters();
  page.moreButton.addEventListener("click", () => page.more());
  if (admin) {
    setUpAddForm({
      known: (id) => page.rows.has(id),
      onJob: (job) => page.update(job),
    });
  }
  setInterval(() => page.refreshAges(), AGE_REFRESH_MS);
  // The list at once, without waiting for the socket (which reads it again once it
  // has subscribed, so nothing between the two is missed); again shortly if the
  // server could not answer (a store down: 503).
  let failures = 0;
  const firstLoad = () => page.reload().catch((error) => {
    if (failures++ === 0 || error.status === 401) page.showLoadError(error);
    if (!page.loaded) setTimeout(firstLoad, FIRST_LOAD_RETRY_MS);
  });
  firstLoad();
  new LiveJobs({
    onJob: (job) => page.update(job),
    reload: () => page.reload().catch((error) => { page.showLoadError(error); throw error; }),
    poll: () => page.poll().catch((error) => {
      if (error.status === 401) page.showLoadError(error);
      throw error;
    }),
  }).start();
}

main();
