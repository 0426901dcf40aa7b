// A small line chart on a <canvas>: one line per series over a sliding time window
// (the system page's queue depths). Colours come from CSS custom properties
// (--series-0 …), so the page's style sheet owns them.
"use strict";

const PAD = {left: 36, right: 8, top: 8, bottom: 20};

export class LineChart {
  /** `windowMs`: how much of the past is shown; older samples are dropped. */
  constructor(canvas, {windowMs = 5 * 60 * 1000} = {}) {
    this.canvas = canvas;
    this.windowMs = windowMs;
    this.samples = [];  // [{at: ms, values: {series: number}}], oldest first
    this.series = [];   // names, in the order their colours were given
    new ResizeObserver(() => this.draw()).observe(canvas);
  }

  add(at, values) {
    for (const name of Object.keys(values)) if (!this.series.includes(name)) this.series.push(name);
    this.samples.push({at, values});
    const oldest = at - this.windowMs;
    while (this.samples.length && this.samples[0].at < oldest) this.samples.shift();
    this.draw();
  }

  /** The colour of a series, from the canvas's CSS (`--series-N`). */
  colour(name) {
    const style = getComputedStyle(this.canvas);
    const index = this.series.indexOf(name) % 6;
    return style.getPropertyValue(`--series-${index}`).trim() || "#2456c9";
  }

  draw() {
    const canvas = this.canvas;
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (!width || !height) return;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const context = canvas.getContext("2d");
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    context.clearRect(0, 0, width, height);
    const style = getComputedStyle(canvas);
    const ink = style.getPropertyValue("--chart-ink").trim() || "#6b7078";
    const grid = style.getPropertyValue("--chart-grid").trim() || "#dde0e5";

    const now = this.samples.length ? this.samples[this.samples.length - 1].at : Date.now();
    const start = now - this.windowMs;
    let top = 0;
    for (const sample of this.samples) {
      for (const value of Object.values(sample.values)) if (Number.isFinite(value)) top = Math.max(top, value);
    }
    top = niceCeiling(top);
    const plotW = width - PAD.left - PAD.right;
    const plotH = height - PAD.top - PAD.bottom;
    const x = (at) => PAD.left + ((at - start) / this.windowMs) * plotW;
    const y = (value) => PAD.top + plotH - (value / top) * plotH;

    context.font = "11px system-ui, sans-serif";
    context.fillStyle = ink;
    context.strokeStyle = grid;
    context.lineWidth = 1;
    context.textBaseline = "middle";
    context.textAlign = "right";
    for (const value of [0, top / 2, top]) {
      context.beginPath();
      context.moveTo(PAD.left, Math.round(y(value)) + 0.5);
      context.lineTo(width - PAD.right, Math.round(y(value)) + 0.5);
      context.stroke();
      context.fillText(String(Math.round(value)), PAD.left - 4, y(value));
    }
    context.textAlign = "left";
    context.textBaseline = "alphabetic";
    context.fillText(`−${Math.round(this.windowMs / 60000)} min`, PAD.left, height - 4);
    context.textAlign = "right";
    context.fillText("now", width - PAD.right, height - 4);

    context.lineWidth = 2;
    context.lineJoin = "round";
    for (const name of this.series) {
      context.strokeStyle = this.colour(name);
      context.beginPath();
      let drawing = false;
      for (const sample of this.samples) {
        const value = sample.values[name];
        if (!Number.isFinite(value)) { drawing = false; continue; }  // a gap: no data then
        if (drawing) context.lineTo(x(sample.at), y(value));
        else context.moveTo(x(sample.at), y(value));
        drawing = true;
      }
      context.stroke();
      // The latest value as a dot: visible from the first sample on.
      const last = this.samples[this.samples.length - 1];
      if (last && Number.isFinite(last.values[name])) {
        context.fillStyle = context.strokeStyle;
        context.beginPath();
        context.arc(x(last.at), y(last.values[name]), 3, 0, 2 * Math.PI);
        context.fill();
      }
    }
  }
}

/** The smallest of 1, 2, 5 × 10^n at or above `value` (at least 4, so a quiet queue
 * does not draw a flat line at the top). */
function niceCeiling(value) {
  if (value <= 4) return 4;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}
