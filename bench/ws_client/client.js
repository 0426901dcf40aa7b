// N WebSocket (vidfleet /ws, npm `ws`) or Socket.IO (npm `socket.io-client`) clients in
// one Node.js process, for bench/ws_fanout.py (which may start several such processes
// and merge their histograms).
//
// argv[2]: JSON {"mode": "ws"|"sio", "url", "clients", "token"?, "parallel"?, "clock"?}
// stdout: one JSON line per report; stdin: one command per line:
//   (on its own, once every socket is open or failed) {"ready": ...}
//   "start T"  forget what was counted so far and count trial T's events from now (events
//            of other trials, late arrivals of an earlier one, count as "stale")
//   "stop"   print {"stats": ...} for what arrived since "start": counters, the latency
//            histogram as [[bucket, count], ...] for its non-empty 0.1 ms buckets, and
//            the event loop's utilization since "start" (1 = never idle: saturated)
//   "quit"   close every socket and exit
// Each event is {"type": "job", "id", "job": {..., "params": {"t": created ms, "seq", "trial",
// "state": true for a state change (never conflated), false for a progress report}}};
// the latency of an event is its arrival (performance.timeOrigin + performance.now(),
// the same clock as Python's time.time()) minus job.params.t.
'use strict';

const readline = require('node:readline');
const { performance } = require('node:perf_hooks');

const config = JSON.parse(process.argv[2]);
const N = config.clients;
const PARALLEL = config.parallel || 50; // handshakes in flight at once
const BUCKET_MS = 0.1;
const BUCKETS = 600000; // 0.1 ms buckets up to 60 s; later arrivals land in the last one

const now = () => performance.timeOrigin + performance.now();

let histogram = new Uint32Array(BUCKETS);
let events = 0;
let frames = 0;
let bytes = 0;
let duplicates = 0;
let stateEvents = 0; // state changes received (a server may skip progress, not these)
let stateMaxLatency = 0;
let maxLatency = 0;
let stale = 0;
let trial = null;
let opened = 0;
let failed = 0;
let open = 0;
const closes = {}; // close code -> count (sockets that closed after opening)
const errors = {};
const extensions = {};
const lastSeq = new Int32Array(N).fill(-1);

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

// With `"clock": "stream"` in the config (the load test's real jobs, which carry no
// creation time), an event's latency is its arrival minus the millisecond part of its
// stream id (`<ms>-<n>`: when Redis added it, XADD's clock), every event counts whatever
// the trial, and a duplicate is an id not above the last one this socket saw.
const lastId = new Array(N).fill(null);

function newerId(a, b) {
  // whether stream id a comes after b ("ms-seq", compared numerically part by part)
  const [am, as] = a.split('-').map(Number);
  const [bm, bs] = b.split('-').map(Number);
  return am > bm || (am === bm && as > bs);
}

function recordByStreamId(i, event, at) {
  if (!event || event.type !== 'job' || typeof event.id !== 'string') return;
  if (lastId[i] !== null && !newerId(event.id, lastId[i])) duplicates++;
  else lastId[i] = event.id;
  const latency = at - Number(event.id.split('-')[0]);
  if (latency > maxLatency) maxLatency = latency;
  const status = event.job && event.job.status;
  if (status && status !== 'running') stateEvents++;
  let bucket = Math.floor(latency / BUCKET_MS);
  if (bucket < 0) bucket = 0;
  if (bucket >= BUCKETS) bucket = BUCKETS - 1;
  histogram[bucket]++;
  events++;
}

function record(i, event, at) {
  if (config.clock === 'stream') return recordByStreamId(i, event, at);
  if (!event || event.type !== 'job') return;
  const params = event.job && event.job.params;
  if (!params || typeof params.t !== 'number') return;
  if (params.trial !== trial) {
    stale++;
    return;
  }
  if (params.seq <= lastSeq[i]) duplicates++;
  else lastSeq[i] = params.seq;
  const latency = at - params.t;
  if (latency > maxLatency) maxLatency = latency;
  if (params.state) {
    stateEvents++;
    if (latency > stateMaxLatency) stateMaxLatency = latency;
  }
  let bucket = Math.floor(latency / BUCKET_MS);
  if (bucket < 0) bucket = 0;
  if (bucket >= BUCKETS) bucket = BUCKETS - 1;
  histogram[bucket]++;
  events++;
}

function sparseHistogram() {
  const filled = [];
  for (let b = 0; b < BUCKETS; b++) if (histogram[b] > 0) filled.push([b, histogram[b]]);
  return filled;
}

function reset() {
  histogram = new Uint32Array(BUCKETS);
  events = frames = bytes = duplicates = stale = stateEvents = 0;
  maxLatency = stateMaxLatency = 0;
  lastSeq.fill(-1);
  for (const code of Object.keys(closes)) delete closes[code];
}

function count(table, key) {
  table[key] = (table[key] || 0) + 1;
}

const sockets = [];

// ws runs zlib on libuv's thread pool and lets at most `concurrencyLimit` (default 10)
// calls run at once for the whole process, a queue a browser (one socket per tab) never
// has; `zlibConcurrency` in the config raises it. `deflate: false` offers no compression.
// What the handshake agreed, e.g. "permessage-deflate; client_max_window_bits=15".
function describeExtensions(ws) {
  const agreed = (ws && ws._extensions) || {};
  const names = Object.keys(agreed);
  if (names.length === 0) return 'none';
  return names
    .map((name) => {
      const params = agreed[name].params || {};
      return [name, ...Object.entries(params).map(([k, v]) => (v === true ? k : `${k}=${v}`))].join('; ');
    })
    .join(', ');
}

function deflateOptions() {
  if (config.deflate === false) return false;
  return config.zlibConcurrency ? { concurrencyLimit: config.zlibConcurrency } : true;
}

function openWs(i) {
  const WebSocket = require('ws');
  return new Promise((resolve) => {
    const headers = config.token ? { Authorization: `Bearer ${config.token}` } : {};
    // perMessageDeflate defaults to true: the client offers permessage-deflate as a browser does.
    const ws = new WebSocket(config.url, { headers, perMessageDeflate: deflateOptions() });
    sockets[i] = ws;
    let settled = false;
    let wasOpen = false;
    ws.on('open', () => {
      settled = true;
      wasOpen = true;
      opened++;
      open++;
      count(extensions, describeExtensions(ws));
      ws.send(JSON.stringify({ action: 'subscribe', jobs: ['*'], since: null }));
      resolve();
    });
    ws.on('message', (data, isBinary) => {
      const at = now();
      frames++;
      bytes += data.length;
      const parsed = JSON.parse(isBinary ? data : data.toString());
      if (Array.isArray(parsed)) for (const event of parsed) record(i, event, at);
      else record(i, parsed, at);
    });
    ws.on('unexpected-response', (req, res) => {
      count(errors, `http ${res.statusCode}`);
      failed++;
      settled = true;
      resolve();
    });
    ws.on('error', (err) => {
      count(errors, err.code || err.message);
      if (!settled) {
        settled = true;
        failed++;
        resolve();
      }
    });
    ws.on('close', (code) => {
      if (wasOpen) {
        open--;
        count(closes, code);
      }
    });
  });
}

function openSio(i) {
  const { io } = require('socket.io-client');
  return new Promise((resolve) => {
    // WebSocket transport only (a browser starts with polling and upgrades; the steady
    // state is the same). engine.io-client's Node transport is `ws`, which offers
    // permessage-deflate.
    const socket = io(config.url, {
      transports: ['websocket'],
      forceNew: true,
      reconnection: false,
      timeout: 60000,
      perMessageDeflate: deflateOptions(),
    });
    sockets[i] = socket;
    let settled = false;
    socket.on('connect', () => {
      settled = true;
      opened++;
      open++;
      const ws = socket.io.engine.transport.ws;
      count(extensions, describeExtensions(ws));
      resolve();
    });
    socket.on('job', (event) => {
      frames++;
      record(i, event, now());
    });
    socket.on('connect_error', (err) => {
      count(errors, err.message);
      if (!settled) {
        settled = true;
        failed++;
        resolve();
      }
    });
    socket.on('disconnect', (reason) => {
      open--;
      count(closes, reason);
    });
  });
}

async function main() {
  const openOne = config.mode === 'sio' ? openSio : openWs;
  const started = now();
  let next = 0;
  async function worker() {
    while (next < N) {
      const i = next++;
      await openOne(i);
    }
  }
  await Promise.all(Array.from({ length: Math.min(PARALLEL, N) }, worker));
  emit({ ready: { opened, failed, open, errors, extensions, connect_ms: now() - started } });

  let loopSince = performance.eventLoopUtilization();
  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    const command = line.trim();
    if (command.startsWith('start')) {
      reset();
      trial = command.split(' ')[1];
      loopSince = performance.eventLoopUtilization();
      emit({ started: true });
    } else if (command === 'stop') {
      emit({
        stats: {
          open,
          opened,
          failed,
          events,
          frames,
          bytes,
          duplicates,
          stale,
          bucket_ms: BUCKET_MS,
          histogram: sparseHistogram(),
          loop_utilization: performance.eventLoopUtilization(loopSince).utilization,
          max_ms: maxLatency,
          state_events: stateEvents,
          state_max_ms: stateMaxLatency,
          closes,
          errors,
        },
      });
    } else if (command === 'quit') {
      for (const s of sockets) {
        try {
          if (config.mode === 'sio') s.disconnect();
          else s.terminate();
        } catch (e) {
          // already gone
        }
      }
      setTimeout(() => process.exit(0), 100);
    }
  });
  rl.on('close', () => process.exit(0));
}

main().catch((err) => {
  emit({ fatal: String(err && err.stack ? err.stack : err) });
  process.exit(1);
});
