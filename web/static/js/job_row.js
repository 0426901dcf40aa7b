// One job as a row of the jobs table: its cells, kept up to date from the job's JSON
// (`job_to_dict`, plus `live` in WebSocket events), and its cancel / retry / open-parts
// buttons. Text from the API only ever goes in as text.
"use strict";
import {el} from "./shell.js";
import * as fmt from "./format.js";

/** Batches: a parent job whose parts are child jobs (`GET /api/jobs?parent_id=`). */
export const PARENT_KINDS = new Set(["thumbnails", "analyses", "deletes", "enrichments"]);
export const PART_KINDS = new Set(["thumbnail_chunk", "delete_chunk", "enrich_chunk"]);
export const FINISHED = new Set(["succeeded", "failed", "cancelled"]);

const KIND_NAMES = {
  download: "download", playlist_sync: "playlist sync", analyze: "analyze",
  artist_image: "artist image", thumbnails: "bulk thumbnails", analyses: "bulk analysis",
  deletes: "bulk delete", enrichments: "bulk enrichment", thumbnail_chunk: "part",
  delete_chunk: "part", enrich_chunk: "part",
};
const COLUMNS = ["Kind", "Title", "Stage", "Progress", "Speed", "ETA", "Attempts", "Status", "Age", ""];

function text(value) {
  return typeof value === "string" ? value : "";
}

function whole(value) {
  return Number.isSafeInteger(value) && value >= 0 ? value : null;
}

export function kindName(kind) {
  return KIND_NAMES[kind] || text(kind);
}

/** What the job is about: its title, else its URL, else what its parameters say. */
export function jobTitle(job) {
  const params = job.params && typeof job.params === "object" ? job.params : {};
  if (text(params.title)) return params.title;
  if (text(params.url)) return params.url;
  if (text(params.name)) return params.name;
  const items = Array.isArray(params.items) ? params.items.length : whole(params.items);
  if (items !== null) return `${items} ${items === 1 ? "item" : "items"}`;
  if (whole(params.playlist_id) !== null) return `playlist ${params.playlist_id}`;
  if (whole(params.video_id) !== null) return `video ${params.video_id}`;
  if (whole(params.artist_id) !== null) return `artist ${params.artist_id}`;
  return "";
}

/** "download: https://…" for a toast (the title shortened). */
export function jobLabel(job) {
  const title = jobTitle(job);
  const short = title.length > 60 ? title.slice(0, 59) + "…" : title;
  return short ? `${kindName(job.kind)} ${short}` : kindName(job.kind);
}

function stageText(job) {
  if (job.status === "failed" || job.status === "cancelled") {
    return job.error && text(job.error.message) ? job.error.message : job.status;
  }
  const stage = text(job.stage);
  const message = text(job.message);
  return stage && message && message !== stage ? `${stage}: ${message}` : stage || message;
}

export class JobRow {
  constructor(job, {isPart, admin, onCancel, onRetry, onToggle}) {
    this.isPart = isPart;
    this.admin = admin;
    this.onCancel = onCancel;
    this.onRetry = onRetry;
    this.isBatch = PARENT_KINDS.has(job.kind) && !isPart;
    this.state = null;  // what the actions cell was last built for
    this.tr = el("tr", {className: isPart ? "job part" : "job"});
    this.tr.dataset.jobId = job.id;
    if (isPart) this.tr.dataset.parentId = job.parent_id;
    const cells = COLUMNS.map((label) => el("td", label ? {dataset: {label}} : {}));
    [this.kindCell, this.titleCell, this.stageCell, this.progressCell, this.speedCell,
      this.etaCell, this.attemptsCell, this.statusCell, this.ageCell, this.actionsCell] = cells;
    this.kindCell.className = "kind";
    this.titleCell.className = "title";
    this.stageCell.className = "stage";
    this.progressCell.className = "progress";
    this.actionsCell.className = "actions";
    this.ageCell.className = "age";

    this.kindName = el("span", {className: "kind-name"});
    if (this.isBatch) {
      this.toggle = el("button", {type: "button", className: "expand", "aria-expanded": "false"});
      this.toggle.append(el("span", {className: "chevron", "aria-hidden": "true"}), this.kindName);
      this.toggle.addEventListener("click", () => onToggle(job.id));
      this.kindCell.append(this.toggle);
    } else {
      this.kindCell.append(this.kindName);
    }
    this.stageLine = el("span", {className: "stage-text"});
    this.partsLine = el("span", {className: "parts muted"});
    this.stageCell.append(this.stageLine, this.partsLine);
    this.bar = el("progress", {max: 1});
    this.percent = el("span", {className: "percent"});
    this.progressCell.append(this.bar, this.percent);
    this.statusBadge = el("span", {className: "status"});
    this.statusCell.append(this.statusBadge);
    this.time = el("time");
    this.ageCell.append(this.time);
    this.tr.append(...cells);
    this.fill(job);
  }

  fill(job) {
    this.job = job;
    this.tr.dataset.status = job.status;
    this.kindName.textContent = kindName(job.kind);
    this.fillTitle(job);
    this.stageLine.textContent = stageText(job);
    this.stageLine.classList.toggle("reason", job.status === "failed");
    this.fillProgress(job.progress, job.status);
    const live = job.status === "running" && job.live && typeof job.live === "object" ? job.live : {};
    this.speedCell.textContent = fmt.speed(live.speed);
    this.etaCell.textContent = fmt.duration(live.eta);
    const attempts = whole(job.attempts) ?? 0;
    this.attemptsCell.textContent = whole(job.max_attempts) ? `${attempts}/${job.max_attempts}` : String(attempts);
    this.statusBadge.textContent = text(job.status);
    this.statusBadge.className = "status status-" + text(job.status);
    this.time.dateTime = text(job.created_at);
    this.time.title = fmt.localTime(job.created_at);
    this.refreshAge(Date.now());
    if (this.state !== job.status) this.fillActions(job);
  }

  fillTitle(job) {
    const title = jobTitle(job) || "—";
    const videoId = job.result && typeof job.result === "object" ? whole(job.result.video_id) : null;
    const shown = this.titleCell.firstChild;
    if (videoId !== null) {
      if (!shown || shown.nodeName !== "A" || shown.dataset.videoId !== String(videoId)) {
        const link = el("a", {href: `/library/videos/${videoId}`, title: title}, title);
        link.dataset.videoId = String(videoId);
        this.titleCell.replaceChildren(link);
      } else {
        shown.textContent = title;
        shown.title = title;
      }
    } else {
      this.titleCell.textContent = title;
      this.titleCell.title = title;
    }
  }

  fillProgress(progress, status) {
    const known = typeof progress === "number" && Number.isFinite(progress);
    let value = known ? Math.min(1, Math.max(0, progress)) : null;
    if (status === "succeeded") value = 1;
    else if (value === null && status !== "running") value = 0;
    if (value === null) {
      // The size is not known (yet): an indeterminate bar.
      this.bar.removeAttribute("value");
      this.percent.textContent = "";
      this.bar.setAttribute("aria-label", "progress unknown");
    } else {
      this.bar.value = value;
      this.percent.textContent = fmt.percent(value);
      this.bar.setAttribute("aria-label", "progress " + fmt.percent(value));
    }
  }

  fillActions(job) {
    this.state = job.status;
    this.actionsCell.replaceChildren();
    if (!this.admin) return;
    if (job.status === "queued" || job.status === "running") {
      this.actionsCell.append(this.button("Cancel", "cancel", () => this.onCancel(job.id)));
    } else if ((job.status === "failed" || job.status === "cancelled") && !this.isBatch) {
      this.actionsCell.append(this.button("Retry", "retry", () => this.onRetry(job.id)));
    }
  }

  button(label, action, onClick) {
    const title = jobTitle(this.job);
    const button = el("button", {type: "button", className: "admin-only " + action,
      "aria-label": `${label} ${kindName(this.job.kind)} ${title}`.trim()}, label);
    button.dataset.action = action;
    button.addEventListener("click", onClick);
    return button;
  }

  /** An action was asked for: its button waits for the answer (or the job's change). */
  busy(action) {
    const button = this.actionsCell.querySelector(`button[data-action="${action}"]`);
    if (!button) return;
    button.disabled = true;
    button.textContent = action === "cancel" ? "Cancelling…" : "Retrying…";
  }

  idle() {
    this.fillActions(this.job);
  }

  /** An open batch shows its parts' counts, and their progress when its own is unknown. */
  setOpen(open, counts, partsProgress = null) {
    if (!this.toggle) return;
    this.toggle.setAttribute("aria-expanded", String(open));
    this.tr.classList.toggle("open", open);
    if (!open || !counts) {
      this.partsLine.textContent = "";
      return;
    }
    const figures = [];
    for (const status of ["succeeded", "running", "queued", "failed", "cancelled"]) {
      if (whole(counts[status])) figures.push(`${counts[status]} ${status}`);
    }
    this.partsLine.textContent = `Parts: ${figures.join(" · ") || "none"}`;
    if (typeof this.job.progress !== "number" && partsProgress !== null) {
      this.fillProgress(partsProgress, this.job.status);
    }
  }

  refreshAge(now) {
    this.time.textContent = fmt.age(this.job.created_at, now);
  }
}
