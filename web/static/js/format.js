// How numbers read on the pages: sizes, speeds, durations and ages, in a few characters.
"use strict";

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

function isNumber(value) {
  return typeof value === "number" && Number.isFinite(value);
}

/** 1536 → "1.5 KiB"; "" for anything that is not a number. */
export function bytes(value) {
  if (!isNumber(value) || value < 0) return "";
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) { value /= 1024; unit += 1; }
  return `${value >= 10 || unit === 0 ? Math.round(value) : value.toFixed(1)} ${UNITS[unit]}`;
}

export function speed(value) {
  return isNumber(value) && value > 0 ? bytes(value) + "/s" : "";
}

/** 75 → "1:15", 3725 → "1:02:05". */
export function duration(seconds) {
  if (!isNumber(seconds) || seconds < 0) return "";
  const whole = Math.round(seconds);
  const [h, m, s] = [Math.floor(whole / 3600), Math.floor(whole / 60) % 60, whole % 60];
  const mm = h ? String(m).padStart(2, "0") : String(m);
  return (h ? h + ":" : "") + mm + ":" + String(s).padStart(2, "0");
}

/** An ISO time as "12 s", "5 min", "3 h", "2 d" before now. */
export function age(iso, now = Date.now()) {
  const then = Date.parse(iso);
  if (Number.isNaN(then)) return "";
  const seconds = Math.max(0, Math.round((now - then) / 1000));
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h`;
  return `${Math.floor(seconds / 86400)} d`;
}

/** An ISO time in the reader's own time zone, for a title or a table cell. */
export function localTime(iso) {
  const then = Date.parse(iso);
  return Number.isNaN(then) ? "" : new Date(then).toLocaleString();
}

export function percent(fraction) {
  return isNumber(fraction) ? `${Math.floor(Math.min(1, Math.max(0, fraction)) * 100)} %` : "";
}
