// A video's page: its facts (as the download and the analysis found them), the
// player, and, for an admin, deleting it from the library.
"use strict";
import {api} from "./api.js";
import {el, startPage, toast} from "./shell.js";
import {Player} from "./player.js";
import {showChapters} from "./chapters.js";
import {formatDuration, qualityBadge} from "./video-grid.js";

function videoId() {
  const match = location.pathname.match(/^\/library\/videos\/([0-9]+)$/);
  return match ? Number(match[1]) : null;
}

function size(bytes) {
  if (typeof bytes !== "number" || !Number.isFinite(bytes)) return null;
  const units = ["bytes", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) { value /= 1000; unit += 1; }
  return `${unit ? value.toFixed(1) : value} ${units[unit]}`;
}

/** The source URL as a link, only when it is http(s): never a `javascript:` one. */
function sourceLink(url) {
  let parsed;
  try { parsed = new URL(url); } catch { return null; }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") return url;
  return el("a", {href: parsed.href, rel: "noreferrer noopener", target: "_blank", className: "source-url"}, url);
}

function fact(list, term, value) {
  if (value === null || value === undefined || value === "") return;
  list.append(el("dt", {}, term), el("dd", {}, value));
}

function showFacts(video) {
  const facts = document.getElementById("video-facts");
  fact(facts, "Duration", formatDuration(video.duration));
  if (video.width && video.height) fact(facts, "Resolution", `${Number(video.width)} × ${Number(video.height)}`);
  const codecs = [video.vcodec, video.acodec].filter((codec) => typeof codec === "string").join(" / ");
  fact(facts, "Codecs", codecs);
  fact(facts, "Container", video.container);
  fact(facts, "Size", size(video.size));
  const quality = video.quality;
  if (quality && typeof quality.label === "string") {
    const score = Number.isFinite(quality.score) ? ` ${Math.round(quality.score)} / 100` : "";
    const lines = typeof quality.resolution_class === "string" ? ` · ${quality.resolution_class}` : "";
    const better = quality.better_version ? " · a better version may exist" : "";
    fact(facts, "Quality", el("span", {}, qualityBadge(video), score + lines + better));
  } else {
    fact(facts, "Quality", "not analysed yet");
  }
  fact(facts, "Added", video.created_at ? new Date(video.created_at).toLocaleString() : null);
  fact(facts, "Source", video.source_url ? sourceLink(video.source_url) : null);
}

async function remove(video, button) {
  if (!confirm(`Delete “${video.title}” from the library? Its file is removed.`)) return;
  button.disabled = true;
  try {
    const job = await api(`/api/videos/${Number(video.id)}`, {method: "DELETE"});
    toast("Deleting the video…");
    const deadline = Date.now() + 30000;
    let state = job;
    while (!["succeeded", "failed", "cancelled"].includes(state.status) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 500));  // the job's own pace
      state = await api(`/api/jobs/${encodeURIComponent(job.id)}`);
    }
    if (state.status === "succeeded" && state.result && !state.result.failed_count) {
      location.assign("/library");
      return;
    }
    const reason = state.result && state.result.failed && state.result.failed[0];
    toast(reason ? `Not deleted: ${reason.reason}` : "The deletion has not finished yet; see the Jobs page.", "error");
  } catch (error) {
    toast(error.status === 404 ? "This video is not in the library any more." : error.message, "error");
  }
  button.disabled = false;
}

(async () => {
  const session = await startPage("/library");
  const id = videoId();
  const status = document.getElementById("video-status");
  let video;
  try {
    video = await api(`/api/videos/${id}`);
  } catch (error) {
    status.classList.add("error");
    status.textContent = error.status === 404 && error.code === "not_found"
      ? "There is no such video in the library."
      : [404, 501, 503].includes(error.status) ? "The library is not available right now." : error.message;
    document.getElementById("player").hidden = true;
    return;
  }
  document.title = `${video.title} · vidfleet`;
  document.getElementById("video-title").textContent = video.title;
  const artist = document.getElementById("video-artist");
  if (video.artist_id) artist.append(el("a", {href: `/library/artists/${Number(video.artist_id)}`}, video.artist || ""));
  else artist.append(el("span", {className: "muted"}, "unknown artist"));
  showFacts(video);
  const player = new Player(document.getElementById("player"), video);
  showChapters(document.getElementById("player"), video, player);
  if (session.role === "admin") {
    const button = document.getElementById("delete-video");
    button.hidden = false;
    button.addEventListener("click", () => remove(video, button));
  }
})();
