// The grid of video cards the library and artist pages share: a page of
// `GET /api/videos` at a time (its `next` cursor behind a "More" button), each card a
// thumbnail (a neutral placeholder until the analysis made one), the title, the
// artist, the duration and the quality label. Text from the API goes in as text only.
"use strict";
import {api} from "./api.js";
import {el} from "./shell.js";

const PAGE = 24;
// The widths the thumbnail set may have (web/thumbnails.py); a card is at most about
// 22rem wide, or the whole width of a phone.
const SIZES = "(max-width: 40rem) calc(100vw - 1.2rem), 22rem";

/** "3:07" or "1:02:03"; "" when the duration is unknown. */
export function formatDuration(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds) || seconds < 0) return "";
  const whole = Math.round(seconds);
  const hours = Math.floor(whole / 3600);
  const minutes = Math.floor((whole % 3600) / 60);
  const rest = String(whole % 60).padStart(2, "0");
  return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${rest}` : `${minutes}:${rest}`;
}

/** The quality label as a small badge (its class colours it), or null before analysis. */
export function qualityBadge(video) {
  const quality = video.quality;
  if (!quality || typeof quality.label !== "string") return null;
  const label = quality.label.replace(/[^a-z]/g, "");
  const score = Number.isFinite(quality.score) ? `quality score ${Math.round(quality.score)} / 100` : "quality";
  return el("span", {className: "quality-label quality-" + label, title: score}, label);
}

/** The card's picture: the thumbnail set as a srcset, or a placeholder. */
export function thumbnail(video) {
  const widths = (video.thumbnail_widths || []).filter((width) => Number.isInteger(width) && width > 0);
  if (!widths.length) return el("span", {className: "thumb-placeholder", "aria-hidden": "true"});
  const id = Number(video.id);
  const sorted = [...widths].sort((a, b) => a - b);
  const fallback = sorted.find((width) => width >= 320) || sorted[sorted.length - 1];
  const img = el("img", {
    src: `/thumbnails/${id}/${fallback}.webp`,
    srcset: sorted.map((width) => `/thumbnails/${id}/${width}.webp ${width}w`).join(", "),
    sizes: SIZES,
    alt: "",
    loading: "lazy",
    decoding: "async",
    width: 320,
    height: 180,
  });
  // The files can be gone while the row still names them (a new analysis is writing):
  // show the placeholder rather than a broken image.
  img.addEventListener("error", () => img.replaceWith(el("span", {className: "thumb-placeholder", "aria-hidden": "true"})), {once: true});
  return img;
}

function card(video) {
  const href = `/library/videos/${Number(video.id)}`;
  const artist = video.artist_id
    ? el("a", {className: "artist", href: `/library/artists/${Number(video.artist_id)}`}, video.artist || "")
    : el("span", {className: "artist muted"}, "unknown artist");
  const facts = el("p", {className: "facts"});
  const duration = formatDuration(video.duration);
  if (duration) facts.append(el("span", {className: "duration"}, duration));
  const badge = qualityBadge(video);
  if (badge) facts.append(badge);
  return el("li", {className: "video-card", dataset: {videoId: String(Number(video.id))}},
    el("a", {className: "thumb", href, tabIndex: -1, "aria-hidden": "true"}, thumbnail(video)),
    el("div", {className: "card-text"},
      el("a", {className: "title", href}, video.title || "untitled"),
      artist,
      facts));
}

/** A grid filled from `GET /api/videos` with `params` (sort, q, artist_id).
 *
 * `list` is the <ul>, `more` the "More" button, `status` where to say "empty",
 * "not available" or an error; `empty` is the text for a library with nothing to show. */
export class VideoGrid {
  constructor({list, more, status}) {
    this.list = list;
    this.more = more;
    this.status = status;
    this.next = null;
    this.generation = 0;
    this.controller = null;
    more.addEventListener("click", () => this.loadMore());
  }

  /** Start again with new parameters; resolves to the number of videos shown. */
  async show(params, empty) {
    this.params = params;
    this.emptyText = empty;
    this.next = null;
    this.list.replaceChildren();
    this.list.setAttribute("aria-busy", "true");
    return this.fetchPage(true);
  }

  async loadMore() {
    if (this.next) await this.fetchPage(false);
  }

  async fetchPage(first) {
    // A newer search replaces an answer still on its way: abort it and ignore it.
    if (this.controller) this.controller.abort();
    const controller = new AbortController();
    this.controller = controller;
    const query = new URLSearchParams({...this.params, limit: String(PAGE)});
    if (!first && this.next) query.set("cursor", this.next);
    this.more.disabled = true;
    let page;
    try {
      page = await api("/api/videos?" + query, {signal: controller.signal});
    } catch (error) {
      if (error.name === "AbortError") return this.list.children.length;
      this.list.removeAttribute("aria-busy");
      this.more.hidden = true;
      this.status.textContent = [404, 501, 503].includes(error.status)
        ? "The library is not available right now."
        : error.message;
      this.status.classList.add("error");
      return this.list.children.length;
    }
    this.status.classList.remove("error");
    this.list.removeAttribute("aria-busy");
    this.list.append(...page.items.map(card));
    this.next = page.next;
    this.more.hidden = !page.next;
    this.more.disabled = false;
    const count = this.list.children.length;
    this.status.textContent = count ? "" : this.emptyText;
    return count;
  }
}
