// A panel of a page that polls: one endpoint read on its own clock, shown by the
// page's function, or "not available" (with why) when the endpoint is missing or
// failing, without stopping the other panels. And the helpers that keep a table's
// rows in place across refreshes (so focus and buttons survive them).
"use strict";
import {api} from "./api.js";
import {setConnection, el} from "./shell.js";

export function text(value) {
  return typeof value === "string" ? value : value === null || value === undefined ? "" : String(value);
}

export function count(value) {
  return Number.isSafeInteger(value) && value >= 0 ? value : null;
}

export function items(data) {
  return data && Array.isArray(data.items) ? data.items : [];
}

/** Why a panel has nothing to show, from the error its endpoint answered. */
function unavailableReason(error) {
  if (error.status === 0) return "Not available: the server cannot be reached.";
  if ([404, 405, 501].includes(error.status)) return "Not available on this server.";
  if (error.status === 403) return "Not available: for admins only.";
  if (error.status === 503 && error.details.store) return `Not available: the ${text(error.details.store)} is unavailable.`;
  return `Not available: ${error.message}`;
}

function seen(reached) {
  if (reached) setConnection("polling", "this page reads the system's state every few seconds");
  else setConnection("offline", "the server cannot be reached; retrying");
}

/** One panel: its endpoint, how often to read it, and how to show the answer. */
export class Panel {
  constructor(id, {path, every, show}) {
    this.section = document.getElementById(id);
    this.state = this.section.querySelector(".panel-state");
    this.body = this.section.querySelector(".panel-body");
    this.path = path;
    this.every = every;
    this.show = show;
    this.timer = null;
    this.state.textContent = "Loading…";
    this.body.hidden = true;
  }

  start() {
    const tick = async () => {
      if (!document.hidden) await this.refresh();
      this.timer = setTimeout(tick, this.every);
    };
    tick();
  }

  async refresh() {
    try {
      const data = await api(typeof this.path === "function" ? this.path() : this.path);
      seen(true);
      this.section.dataset.state = "ok";
      this.state.textContent = "";
      this.body.hidden = false;
      this.show(data);
    } catch (error) {
      if (error.name === "AbortError") return;
      seen(error.status !== 0);
      this.section.dataset.state = "unavailable";
      this.state.textContent = unavailableReason(error);
      this.body.hidden = true;
    }
  }
}

/** Keep a tbody's rows in step with `list` by key, so focus and buttons survive refreshes. */
export function syncRows(tbody, list, key, build, fill) {
  const existing = new Map([...tbody.children].map((tr) => [tr.dataset.key, tr]));
  let previous = null;
  for (const item of list) {
    const id = text(key(item));
    let tr = existing.get(id);
    if (!tr) {
      tr = build(item);
      tr.dataset.key = id;
    }
    existing.delete(id);
    fill(tr, item);
    const wanted = previous ? previous.nextElementSibling : tbody.firstElementChild;
    if (wanted !== tr) tbody.insertBefore(tr, wanted);
    previous = tr;
  }
  for (const tr of existing.values()) tr.remove();
}

export function cells(tr, values) {
  values.forEach((value, index) => {
    const cell = tr.children[index];
    if (value instanceof Node) cell.replaceChildren(value);
    else cell.textContent = text(value);
  });
}

export function row(columns, dataLabels) {
  return el("tr", {}, ...Array.from({length: columns}, (_, i) => el("td", dataLabels[i] ? {dataset: {label: dataLabels[i]}} : {})));
}
