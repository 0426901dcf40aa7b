// The add form of the jobs page (admins only): a video URL (POST /api/videos/download)
// or a playlist or channel to follow (POST /api/playlists), with quality and priority.
// The server checks everything; its error goes next to the field it names.
"use strict";
import {api} from "./api.js";
import {toast, el} from "./shell.js";

const FIELDS = ["url", "quality", "priority"];

function clearErrors(form) {
  for (const name of FIELDS) {
    const input = form.querySelector(`#add-${name}`);
    input.removeAttribute("aria-invalid");
    document.getElementById(`add-${name}-error`).replaceChildren();
  }
  document.getElementById("add-error").replaceChildren();
}

/** The error next to its field (or under the form), with a link to the video when the
 * URL is already in the library. */
function showError(form, error) {
  const field = FIELDS.includes(error.field) ? error.field : null;
  const place = document.getElementById(field ? `add-${field}-error` : "add-error");
  place.append(error.message);
  const videoId = error.details.video_id;
  if (error.code === "already_in_library" && Number.isSafeInteger(videoId) && videoId > 0) {
    place.append(" ", el("a", {href: `/library/videos/${videoId}`, className: "library-link"},
      "Open it in the library"));
  }
  if (field) {
    const input = form.querySelector(`#add-${field}`);
    input.setAttribute("aria-invalid", "true");
    input.focus();
  }
}

function showKind(form) {
  const kind = form.querySelector("#add-kind").value;
  for (const part of form.querySelectorAll("[data-for-kind]")) part.hidden = part.dataset.forKind !== kind;
}

/** Wire the form. `known(id)`: whether the page already shows that job (so an answer
 * with an existing job says "already queued"); `onJob(job)`: show a job. */
export function setUpAddForm({known, onJob}) {
  const form = document.getElementById("add-form");
  const submit = document.getElementById("add-submit");
  form.querySelector("#add-kind").addEventListener("change", () => showKind(form));
  showKind(form);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const url = form.querySelector("#add-url").value.trim();
    const quality = form.querySelector("#add-quality").value;
    submit.disabled = true;
    try {
      if (form.querySelector("#add-kind").value === "playlist") {
        const playlist = await api("/api/playlists", {method: "POST", body: {
          url, quality, auto_download: form.querySelector("#add-auto").checked,
        }});
        toast(`Following ${playlist.name || url}: its first sync is queued`, "info");
        if (playlist.sync_job) onJob(playlist.sync_job);
      } else {
        const priority = form.querySelector("#add-priority").value;
        const job = await api("/api/videos/download", {method: "POST", body: {url, quality, priority}});
        toast(known(job.id) ? "That URL is already being downloaded" : "Download queued", "info");
        onJob(job);
      }
      form.querySelector("#add-url").value = "";
    } catch (error) {
      showError(form, error);
    } finally {
      submit.disabled = false;
    }
  });
}
