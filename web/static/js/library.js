// The library page: the video grid with a search (debounced; `?q=` in the page's
// address, so a search can be bookmarked and survives a reload) and an order (`?sort=`).
"use strict";
import {startPage} from "./shell.js";
import {VideoGrid} from "./video-grid.js";

const SORTS = new Set(["newest", "oldest", "title", "artist", "duration"]);
const DEBOUNCE_MS = 300;
const MAX_SEARCH = 200;

const search = document.getElementById("search");
const sort = document.getElementById("sort");
const grid = new VideoGrid({
  list: document.getElementById("videos"),
  more: document.getElementById("more"),
  status: document.getElementById("library-status"),
});

/** The search and order the page's address names (anything unknown: the defaults). */
function fromAddress() {
  const params = new URLSearchParams(location.search);
  const q = (params.get("q") || "").trim().slice(0, MAX_SEARCH);
  const order = SORTS.has(params.get("sort")) ? params.get("sort") : "newest";
  return {q, sort: order};
}

function toAddress({q, sort: order}) {
  const params = new URLSearchParams();
  if (q) params.set("q", q);
  if (order !== "newest") params.set("sort", order);
  const query = params.toString();
  history.replaceState(null, "", location.pathname + (query ? "?" + query : ""));
}

function show() {
  const asked = {q: search.value.trim(), sort: sort.value};
  toAddress(asked);
  const params = {sort: asked.sort};
  if (asked.q) params.q = asked.q;
  const empty = asked.q
    ? `Nothing in the library matches “${asked.q}”.`
    : "The library is empty: paste a video URL on the Jobs page to download one.";
  return grid.show(params, empty);
}

let timer = null;
search.addEventListener("input", () => {
  clearTimeout(timer);
  timer = setTimeout(show, DEBOUNCE_MS);
});
sort.addEventListener("change", show);
document.getElementById("library-controls").addEventListener("submit", (event) => {
  event.preventDefault();  // Enter searches at once
  clearTimeout(timer);
  show();
});

(async () => {
  await startPage("/library");
  const asked = fromAddress();
  search.value = asked.q;
  sort.value = asked.sort;
  await show();
})();
