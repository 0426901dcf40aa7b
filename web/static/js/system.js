// The system page (`/system`), the fleet at a glance: queue depths with a live chart,
// workers and their jobs, dead letters (requeue / purge for admins), streams,
// schedules, the media-server refresh hooks (admins) and storage. Each panel reads
// its own endpoint on its own clock and, when that endpoint is missing or failing,
// says "not available" while the others go on.
"use strict";
import {api} from "./api.js";
import {startPage, setConnection, toast, el} from "./shell.js";
import {Panel, cells, count, items, row, syncRows, text} from "./panel.js";
import {LineChart} from "./chart.js";
import * as fmt from "./format.js";

const QUEUES_MS = 2_000;
const PURGE_CONFIRM_MS = 5_000;

/** The jobs a worker runs, each with its stage and a bar. */
function jobsList(jobs) {
  const list = el("ul", {className: "worker-jobs"});
  for (const job of jobs) {
    if (!job || typeof job !== "object") continue;
    const bar = el("progress", {max: 1});
    if (typeof job.progress === "number") bar.value = job.progress;
    bar.setAttribute("aria-label", "progress");
    list.append(el("li", {},
      el("span", {className: "kind"}, text(job.kind)), " ",
      el("span", {className: "title"}, text(job.title) || text(job.id)), " ",
      el("span", {className: "muted"}, text(job.stage)), " ", bar));
  }
  if (!list.childElementCount) list.append(el("li", {className: "muted"}, "idle"));
  return list;
}

// --- dead letters: the actions an admin may take

function summarise(action, answer) {
  const done = items(answer);
  if (!done.length) return `${action}: done`;
  const outcomes = new Map();
  for (const item of done) {
    const outcome = text(item && (item.outcome || item.result || item.action || item.status)) || "done";
    outcomes.set(outcome, (outcomes.get(outcome) || 0) + 1);
  }
  return `${action}: ` + [...outcomes].map(([outcome, n]) => `${n} ${outcome}`).join(", ");
}

/** A button that asks for a second click within a few seconds before it acts. */
function confirmingButton(label, confirmLabel, act) {
  const button = el("button", {type: "button", className: "admin-only"}, label);
  let armed = null;
  button.addEventListener("click", async () => {
    if (!armed) {
      button.textContent = confirmLabel;
      button.classList.add("armed");
      armed = setTimeout(() => { armed = null; button.textContent = label; button.classList.remove("armed"); }, PURGE_CONFIRM_MS);
      return;
    }
    clearTimeout(armed);
    armed = null;
    button.textContent = label;
    button.classList.remove("armed");
    await act(button);
  });
  return button;
}

function actionButton(label, act) {
  const button = el("button", {type: "button", className: "admin-only"}, label);
  button.addEventListener("click", () => act(button));
  return button;
}

async function deadLetterAction(button, action, body, after) {
  button.disabled = true;
  try {
    const answer = await api(`/api/system/dead-letters/${action}`, {method: "POST", body});
    toast(summarise(action === "requeue" ? "Requeued" : "Purged", answer), "ok");
  } catch (error) {
    toast(error.message, "error");
  } finally {
    button.disabled = false;
    await after();
  }
}

async function main() {
  const session = await startPage("/system");
  const admin = session.role === "admin";
  setConnection("connecting");

  const chart = new LineChart(document.getElementById("queue-chart"));
  const legend = document.getElementById("queue-legend");
  const refreshDeadThings = async () => { await queues.refresh(); await deadLetters.refresh(); };

  const queues = new Panel("queues", {
    path: "/api/system/queues", every: QUEUES_MS,
    show(data) {
      const list = items(data).filter((item) => item && typeof item.queue === "string");
      const at = Date.parse(data.at);
      chart.add(Number.isNaN(at) ? Date.now() : at,
        Object.fromEntries(list.map((item) => [item.queue, count(item.ready) ?? NaN])));
      syncRows(legend, list, (item) => item.queue, (item) => {
        const swatch = el("span", {className: "swatch", "aria-hidden": "true"});
        swatch.style.backgroundColor = chart.colour(item.queue);
        return el("li", {}, swatch, el("span"));
      }, (li, item) => { li.lastChild.textContent = item.queue; });
      syncRows(document.getElementById("queue-rows"), list, (item) => item.queue,
        () => row(6, ["Queue", "Ready", "Delayed", "Dead", "Oldest ready", ""]),
        (tr, item) => {
          const dead = count(item.dead);
          cells(tr, [item.queue, count(item.ready) ?? "?", count(item.delayed) ?? "?", dead ?? "?",
            fmt.duration(item.oldest_ready_age_s)]);
          tr.classList.toggle("has-dead", Boolean(dead));
          const actions = tr.children[5];
          actions.className = "actions admin-only";
          if (!admin) return;
          if (dead && !actions.childElementCount) {
            const body = {queue: item.queue, all: true};
            actions.append(
              actionButton("Requeue dead", (b) => deadLetterAction(b, "requeue", body, refreshDeadThings)),
              confirmingButton("Purge dead", "Confirm purge", (b) => deadLetterAction(b, "purge", body, refreshDeadThings)),
            );
            for (const [index, button] of [...actions.children].entries()) {
              button.setAttribute("aria-label", `${index ? "Purge" : "Requeue"} the dead letters of ${item.queue}`);
            }
          } else if (!dead) {
            actions.replaceChildren();
          }
        });
    },
  });

  const workers = new Panel("workers", {
    path: "/api/system/workers", every: 5_000,
    show(data) {
      const list = items(data).filter((item) => item && item.id !== undefined);
      const box = document.getElementById("worker-list");
      syncRows(box, list, (item) => item.id, () => el("li", {className: "worker"}), (li, worker) => {
        const name = [text(worker.host), worker.pid !== undefined && worker.pid !== null ? `pid ${text(worker.pid)}` : ""]
          .filter(Boolean).join(" · ") || text(worker.id);
        const badge = el("span", {className: "badge " + (worker.alive ? "alive" : "dead")},
          worker.alive ? "alive" : "not responding");
        const head = el("div", {className: "worker-head"}, el("strong", {}, name), badge,
          el("span", {className: "muted"}, worker.last_seen ? `seen ${fmt.age(worker.last_seen)} ago` : ""));
        const jobList = jobsList(Array.isArray(worker.jobs) ? worker.jobs : []);
        li.replaceChildren(head, jobList);
      });
      // Running jobs whose message no live worker holds (its worker just died, or the
      // job is between two attempts): the lifeline will requeue or fail them.
      const unassigned = data && Array.isArray(data.unassigned) ? data.unassigned : [];
      if (unassigned.length) {
        const orphans = el("li", {className: "worker orphans"},
          el("div", {className: "worker-head"}, el("strong", {}, "Held by no live worker")));
        orphans.dataset.key = "";
        orphans.append(jobsList(unassigned));
        box.append(orphans);
      }
      if (!box.childElementCount) box.replaceChildren(el("li", {className: "muted"}, "No worker is running."));
    },
  });

  const deadLetters = new Panel("dead-letters", {
    path: "/api/system/dead-letters?limit=50", every: 10_000,
    show(data) {
      const list = items(data).filter((item) => item && item.message_id !== undefined);
      const tbody = document.getElementById("dead-rows");
      syncRows(tbody, list, (item) => item.message_id,
        (item) => {
          const tr = row(6, ["Died", "Queue", "Actor", "Job", "Reason", ""]);
          const actions = tr.children[5];
          actions.className = "actions admin-only";
          if (admin) {
            const body = {queue: text(item.queue), message_ids: [text(item.message_id)]};
            actions.append(
              actionButton("Requeue", (b) => deadLetterAction(b, "requeue", body, refreshDeadThings)),
              confirmingButton("Purge", "Confirm purge", (b) => deadLetterAction(b, "purge", body, refreshDeadThings)),
            );
          }
          return tr;
        },
        (tr, item) => cells(tr, [fmt.age(item.dead_at) ? fmt.age(item.dead_at) + " ago" : "", item.queue,
          item.actor, text(item.job_id).slice(0, 8), item.reason]));
      const total = count(data.total);
      document.getElementById("dead-letters").querySelector(".panel-state").textContent =
        !list.length ? "No dead letters." : total !== null && total > list.length ? `The newest ${list.length} of ${total}.` : "";
    },
  });

  const streams = new Panel("streams", {
    path: "/api/system/streams", every: 5_000,
    show(data) {
      const list = (data && Array.isArray(data.streams) ? data.streams : []).filter((item) => item && item.id !== undefined);
      const limit = count(data && data.limit);
      document.getElementById("streams-summary").textContent =
        `${list.length} playing` + (limit !== null ? ` (at most ${limit} remux or transcode at once)` : "");
      document.querySelector("#streams .table-wrap").hidden = !list.length;
      syncRows(document.getElementById("stream-rows"), list, (item) => item.id,
        () => row(7, ["Video", "Mode", "Quality", "Client", "Sent", "Started", "First byte"]),
        (tr, stream) => {
          const videoId = count(stream.video_id);
          const video = videoId !== null ? el("a", {href: `/library/videos/${videoId}`}, `video ${videoId}`) : "";
          cells(tr, [video, stream.mode, [stream.quality, stream.format].map(text).filter(Boolean).join(" "),
            stream.client, fmt.bytes(stream.bytes_sent), stream.started ? fmt.age(stream.started) + " ago" : "",
            Number.isFinite(stream.ttfb_ms) ? `${Math.round(stream.ttfb_ms)} ms` : ""]);
        });
    },
  });

  const schedules = new Panel("schedules", {
    path: "/api/system/schedules", every: 30_000,
    show(data) {
      const list = items(data).filter((item) => item && typeof item.name === "string");
      syncRows(document.getElementById("schedule-rows"), list, (item) => item.name,
        () => row(5, ["Schedule", "Cron", "Does", "Last run", "Next run"]),
        (tr, schedule) => {
          const last = schedule.last_run && typeof schedule.last_run === "object" ? schedule.last_run : null;
          let lastRun = el("span", {className: "muted"}, "never");
          if (last) {
            const outcome = text(last.outcome);
            lastRun = el("span", {}, el("span", {className: "badge outcome-" + outcome}, outcome), " ",
              last.started_at ? fmt.age(last.started_at) + " ago" : "",
              last.error && last.error.message ? el("span", {className: "reason"}, " " + text(last.error.message)) : "");
          }
          const name = el("span", {}, text(schedule.name), el("span", {className: "muted queue-name"}, " " + text(schedule.queue)));
          cells(tr, [name, el("code", {}, text(schedule.cron)), schedule.does, lastRun,
            schedule.next_run ? fmt.localTime(schedule.next_run) : "never"]);
        });
    },
  });

  const storage = new Panel("storage", {
    path: "/api/system/storage", every: 30_000,
    show(data) {
      const reserve = count(data.reserve_bytes) ?? 0;
      const list = document.getElementById("storage-list");
      list.replaceChildren();
      for (const [key, label] of [["work", "Work folder"], ["library", "Library"]]) {
        const place = data[key];
        list.append(el("dt", {}, label));
        if (!place || !count(place.total_bytes)) {
          list.append(el("dd", {className: "reason"}, "could not be read"));
          continue;
        }
        const used = place.total_bytes - place.free_bytes;
        const meter = el("meter", {min: 0, max: place.total_bytes, value: used,
          high: Math.max(0, place.total_bytes - reserve), optimum: 0});
        meter.setAttribute("aria-label", `${label} used`);
        const low = place.free_bytes < reserve;
        list.append(el("dd", {}, meter,
          el("span", {className: low ? "reason" : ""}, ` ${fmt.bytes(place.free_bytes)} free of ${fmt.bytes(place.total_bytes)}`)));
      }
      list.append(el("dt", {}, "Kept free"), el("dd", {}, fmt.bytes(reserve)));
      if (data.degraded) list.append(el("dd", {className: "reason degraded"}, "Below the reserve: downloads will fail as disk_full."));
    },
  });

  const hookNames = {jellyfin: "Jellyfin", plex: "Plex", webhook: "Webhook"};
  const hooks = new Panel("hooks", {
    path: "/api/system/hooks", every: 10_000,
    show(data) {
      const list = items(data).filter((item) => item && typeof item.target === "string");
      const delay = Number.isFinite(data.delay_s) ? data.delay_s : null;
      const spacing = Number.isFinite(data.min_interval_s) ? data.min_interval_s : null;
      document.getElementById("hooks-summary").textContent = delay === null ? "" :
        `Changes are sent ${delay} s after the first of a batch` +
        (spacing ? `, at least ${spacing} s between two calls to one target.` : ".");
      syncRows(document.getElementById("hook-rows"), list, (item) => item.target,
        () => row(6, ["Target", "URL", "Last call", "Outcome", "Pending", "Failures in a row"]),
        (tr, hook) => {
          const name = hookNames[hook.target] || text(hook.target);
          if (!hook.configured) {
            cells(tr, [name, el("span", {className: "muted"}, "not configured"), "", "", "", ""]);
            return;
          }
          const outcome = text(hook.last_outcome);
          const badge = outcome ? el("span", {className: "badge outcome-" + (outcome === "ok" ? "ok" : "failed")}, outcome)
            : el("span", {className: "muted"}, "no call yet");
          const url = el("span", {}, el("code", {}, text(hook.url)),
            hook.token ? el("span", {className: "muted"}, ` ${hook.target === "webhook" ? "secret" : "token"} ${text(hook.token)}`) : "");
          cells(tr, [name, url, hook.last_attempt ? fmt.age(hook.last_attempt) + " ago" : "", badge,
            count(hook.pending) ?? "?", count(hook.failures) ?? "?"]);
        });
    },
  });

  for (const panel of [queues, workers, deadLetters, streams, schedules, hooks, storage]) panel.start();
}

main();
