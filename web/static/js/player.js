// The player: an HTML5 <video> and a menu of the versions the server can stream
// (web/streams.py, web/transcode.py, web/hls.py):
//   - the original file (`/stream/{id}`, direct play with Range: seeks anywhere);
//   - an MP4 stream at the source's size or smaller (`?quality=&format=mp4&start=`),
//     remuxed or transcoded by FFmpeg as it plays; it cannot seek by Range, so a seek
//     outside what arrived restarts it at that point (`start`);
//   - HLS at a quality (`/hls/{id}/{quality}/index.m3u8`, 6 s segments made on demand,
//     seekable anywhere) through hls.js (vendored, loaded only when chosen) where the
//     browser has Media Source Extensions, else the browser's own HLS.
// Switching keeps the position. The position is remembered per video in localStorage.
// Each of the video's subtitle files (`/subtitles/{id}/{lang}`, WebVTT) is a <track>;
// its cues move with a progressive stream's start (`alignCues`).
"use strict";
import {el} from "./shell.js";

const HLS_MODULE = "../vendor/hls-1.7.4.min.js";
const HLS_WORKER = "/static/vendor/hls-1.7.4.worker.js";
// media/transcode.py's QUALITIES, largest first; "source" is the source's own size.
const QUALITIES = [["1080p", 1080], ["720p", 720], ["480p", 480], ["360p", 360]];
const H264 = 'video/mp4; codecs="avc1.42E01E, mp4a.40.2"';
const SAVE_EVERY_MS = 3000;
// A position this close to the end is "finished": not worth resuming.
const END_MARGIN_S = 5;
const MIN_RESUME_S = 1;

function resumeKey(id) {
  return `vidfleet:resume:${id}`;
}

/** The remembered position of a video, or 0 (also when storage is refused). */
export function savedPosition(id, duration) {
  let value = 0;
  try { value = Number(localStorage.getItem(resumeKey(id))) || 0; } catch { return 0; }
  if (value < MIN_RESUME_S || (duration && value > duration - END_MARGIN_S)) return 0;
  return value;
}

function remember(id, seconds, duration) {
  try {
    if (seconds < MIN_RESUME_S || (duration && seconds > duration - END_MARGIN_S)) {
      localStorage.removeItem(resumeKey(id));
    } else {
      localStorage.setItem(resumeKey(id), seconds.toFixed(1));
    }
  } catch { /* storage refused (private mode, full): no resume, nothing else lost */ }
}

function forget(id) {
  try { localStorage.removeItem(resumeKey(id)); } catch { /* as above */ }
}

/** The versions of `video` this browser can be offered, in menu order. */
export function versions(video, probe = document.createElement("video")) {
  const id = Number(video.id);
  const height = Number(video.height) || null;
  // A browser without H.264 (some open builds) gets VP9/Opus WebM streams instead.
  const format = probe.canPlayType(H264) ? "mp4" : "webm";
  const smaller = QUALITIES.filter(([, lines]) => height && lines < height);
  const list = [{key: "original", group: "File", label: "Original file", kind: "direct", url: `/stream/${id}`}];
  list.push({key: "stream-source", group: "Stream", label: `Source size (${format.toUpperCase()})`, kind: "progressive",
    url: `/stream/${id}?quality=source&format=${format}`});
  for (const [name] of smaller) {
    list.push({key: `stream-${name}`, group: "Stream", label: `${name} (${format.toUpperCase()})`, kind: "progressive",
      url: `/stream/${id}?quality=${name}&format=${format}`});
  }
  const mse = typeof MediaSource !== "undefined" && MediaSource.isTypeSupported(H264);
  const native = Boolean(probe.canPlayType("application/vnd.apple.mpegurl"));
  if (video.duration && (mse || native)) {  // an HLS playlist needs the duration
    for (const [name] of [["source"], ...smaller]) {
      list.push({key: `hls-${name}`, group: "HLS (seekable)", label: name === "source" ? "HLS, source size" : `HLS ${name}`,
        kind: mse ? "hls.js" : "native-hls", url: `/hls/${id}/${name}/index.m3u8`});
    }
  }
  return list;
}

export class Player {
  /** A player for `video` (the API's JSON) inside `container`. */
  constructor(container, video) {
    this.video = video;
    this.id = Number(video.id);
    this.duration = Number(video.duration) || null;
    this.offset = 0;  // where a progressive stream started, in the file's seconds
    this.startAt = 0;  // where the version being loaded is to start
    this.hls = null;
    this.lastSave = 0;
    this.triedFallback = false;
    this.element = el("video", {controls: true, preload: "metadata", playsInline: true});
    this.element.dataset.offset = "0";
    if (video.width && video.height) {
      container.style.setProperty("--aspect", `${Number(video.width)} / ${Number(video.height)}`);
    }
    for (const sub of Array.isArray(video.subtitles) ? video.subtitles : []) {
      if (typeof sub.url !== "string" || !sub.url.startsWith("/subtitles/")) continue;
      const label = sub.automatic ? `${sub.lang} (automatic)` : String(sub.lang);
      const track = el("track", {kind: "subtitles", srclang: String(sub.lang), label, src: sub.url});
      track.addEventListener("load", () => this.alignCues());
      this.element.append(track);
    }
    this.options = versions(video, this.element);
    this.menu = el("select", {id: "quality"});
    const groups = new Map();
    for (const option of this.options) {
      if (!groups.has(option.group)) groups.set(option.group, el("optgroup", {label: option.group}));
      groups.get(option.group).append(el("option", {value: option.key}, option.label));
    }
    this.menu.append(...groups.values());
    this.status = el("p", {className: "player-status", role: "status", "aria-live": "polite"});
    container.append(
      this.element,
      el("div", {className: "player-controls"}, el("label", {htmlFor: "quality"}, "Quality"), this.menu),
      this.status,
    );
    this.menu.addEventListener("change", () => this.choose(this.menu.value, {play: !this.element.paused}));
    this.listen();
    this.choose("original", {at: savedPosition(this.id, this.duration), play: false});
  }

  /** Where playback is, in seconds of the file (whatever version plays); while a
   * version is still loading, where it is to start. */
  position() {
    if (this.element.readyState === HTMLMediaElement.HAVE_NOTHING) return this.startAt;
    return this.offset + (this.element.currentTime || 0);
  }

  /** A progressive stream started `offset` seconds into the file, and its clock starts
   * at 0 there: the subtitles' cues, timed in the file's seconds, move by as much (each
   * keeps its file times, so that a later choice moves it from those). */
  alignCues() {
    for (const track of Array.from(this.element.textTracks)) {
      for (const cue of Array.from(track.cues || [])) {
        if (cue.fileStart === undefined) {
          cue.fileStart = cue.startTime;
          cue.fileEnd = cue.endTime;
        }
        cue.startTime = cue.fileStart - this.offset;
        cue.endTime = cue.fileEnd - this.offset;
      }
    }
  }

  listen() {
    const media = this.element;
    media.addEventListener("timeupdate", () => {
      if (Date.now() - this.lastSave >= SAVE_EVERY_MS) this.save();
    });
    media.addEventListener("pause", () => { if (!media.ended) this.save(); });
    media.addEventListener("seeked", () => { if (media.paused) this.save(); });
    media.addEventListener("ended", () => forget(this.id));
    media.addEventListener("seeking", () => this.seekProgressive());
    media.addEventListener("error", () => this.failed());
    media.addEventListener("playing", () => this.say(""));
    window.addEventListener("pagehide", () => this.save());
    document.addEventListener("visibilitychange", () => { if (document.hidden) this.save(); });
  }

  save() {
    this.lastSave = Date.now();
    if (this.element.ended) return;
    remember(this.id, this.position(), this.duration);
  }

  say(text, error = false) {
    this.status.textContent = text;
    this.status.classList.toggle("error", error);
  }

  /** Play the version `key` from `at` (default: where playback is now). */
  async choose(key, {at = this.position(), play = false} = {}) {
    const option = this.options.find((candidate) => candidate.key === key);
    if (!option) return;
    this.menu.value = key;
    this.current = option;
    this.stop();
    const media = this.element;
    const start = at > 0 && (!this.duration || at < this.duration - 0.5) ? at : 0;
    this.startAt = start;
    if (option.kind === "progressive") {
      this.offset = start;
      media.dataset.offset = String(start);
      this.alignCues();
      media.src = start ? `${option.url}&start=${start.toFixed(3)}` : option.url;
    } else {
      this.offset = 0;
      media.dataset.offset = "0";
      this.alignCues();
      if (option.kind === "hls.js") {
        if (!(await this.attachHls(option, start))) return;
      } else {
        media.src = option.url;
        if (start) media.addEventListener("loadedmetadata", () => { media.currentTime = start; }, {once: true});
      }
    }
    if (play) this.play();
  }

  /** Go to `seconds` of the file, whatever version plays (a chapter's start). */
  seek(seconds) {
    if (this.current && this.current.kind === "progressive") {
      this.choose(this.current.key, {at: seconds, play: !this.element.paused});
    } else if (this.element.readyState === HTMLMediaElement.HAVE_NOTHING) {
      this.choose(this.current ? this.current.key : "original", {at: seconds});
    } else {
      this.element.currentTime = seconds;
    }
  }

  play() {
    // A refused autoplay (no gesture yet) is not an error: the controls are there.
    const started = this.element.play();
    if (started) started.catch(() => {});
  }

  async attachHls(option, start) {
    let Hls;
    try {
      Hls = (await import(HLS_MODULE)).default;
    } catch {
      this.say("HLS playback is not available.", true);
      return false;
    }
    if (this.current !== option) return false;  // another choice came meanwhile
    // The worker is our own file (worker-src falls back to script-src 'self'): no blob
    // worker, which the page's Content-Security-Policy would refuse.
    const hls = new Hls({workerPath: HLS_WORKER, startPosition: start || -1});
    this.hls = hls;
    hls.on(Hls.Events.ERROR, (_event, data) => {
      if (!data.fatal || this.hls !== hls) return;
      this.stop();
      const missing = data.response && [404, 409, 501].includes(data.response.code);
      this.say(missing ? "HLS is not available for this video." : "The HLS stream failed: choose another version.", true);
    });
    hls.loadSource(option.url);
    hls.attachMedia(this.element);
    return true;
  }

  /** Detach whatever plays: hls.js, or the element's source (which closes the
   * server's FFmpeg for a progressive stream). */
  stop() {
    if (this.hls) {
      this.hls.destroy();
      this.hls = null;
    }
    if (this.element.getAttribute("src") !== null) {
      this.element.removeAttribute("src");
      this.element.load();
    }
  }

  /** A progressive stream has what arrived, no more: a seek elsewhere starts it again
   * at that point of the file. */
  seekProgressive() {
    if (!this.current || this.current.kind !== "progressive") return;
    const media = this.element;
    const target = media.currentTime;
    for (let i = 0; i < media.buffered.length; i++) {
      if (target >= media.buffered.start(i) && target <= media.buffered.end(i) + 0.5) return;
    }
    this.choose(this.current.key, {at: this.offset + target, play: !media.paused});
  }

  failed() {
    const media = this.element;
    if (!media.error || !this.current || media.getAttribute("src") === null) return;
    if (this.current.kind === "direct" && !this.triedFallback) {
      // A container or codec this browser cannot play: stream it in one it can.
      this.triedFallback = true;
      this.say("This browser cannot play the original file: streaming it instead.");
      this.choose("stream-source", {play: !media.paused});
      return;
    }
    this.say("This version could not be played (the server may be busy): choose another one.", true);
  }
}
