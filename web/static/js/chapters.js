// A video's chapters (the source's, and SponsorBlock's segments) as a list under the
// player: each is a button that seeks there (Tab and Enter reach them all), the one
// playing is marked with aria-current.
"use strict";
import {el} from "./shell.js";
import {formatDuration} from "./video-grid.js";

const SOURCE_LABELS = {sponsorblock: "SponsorBlock"};

/** The chapter list of `video` (the API's JSON) after `container`, driving `player`. */
export function showChapters(container, video, player) {
  const chapters = (Array.isArray(video.chapters) ? video.chapters : [])
    .filter((chapter) => Number.isFinite(chapter.start) && Number.isFinite(chapter.end));
  if (!chapters.length) return null;
  const list = el("ol", {className: "chapter-list"});
  const items = chapters.map((chapter) => {
    const title = String(chapter.title || "") || formatDuration(chapter.start);
    const from = SOURCE_LABELS[chapter.source];
    const button = el("button", {type: "button", className: "chapter"},
      el("span", {className: "chapter-time"}, formatDuration(chapter.start)),
      el("span", {className: "chapter-title"}, title),
      from ? el("span", {className: "chapter-source"}, from) : null);
    button.dataset.start = String(chapter.start);
    button.addEventListener("click", () => player.seek(chapter.start));
    const item = el("li", {}, button);
    list.append(item);
    return {chapter, button};
  });
  const nav = el("nav", {className: "chapters", "aria-label": "Chapters"}, el("h2", {}, "Chapters"), list);
  container.after(nav);
  player.element.addEventListener("timeupdate", () => {
    const at = player.position();
    for (const {chapter, button} of items) {
      if (at >= chapter.start && at < chapter.end) button.setAttribute("aria-current", "true");
      else button.removeAttribute("aria-current");
    }
  });
  return nav;
}
