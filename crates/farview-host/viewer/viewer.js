// The Farview browser viewer: a device over WebTransport. It binds a session (id and token from
// the URL or the form; sessionless when the host allows it), decodes the H.264 groups with
// WebCodecs into the canvas, orbits / pans / zooms with mouse and touch (sending camera poses),
// loads a model with a progress bar and frames it, selects what is clicked (raycast, then the
// selected state), shows statistics, asks for a keyframe after a decoder error, reconnects with
// the resume secret after a drop, and says why a session ended.

import {
  PROTOCOL_VERSION, classify, controlMessages, encodeMessage, avcCodecString, hexBytes,
  mediaFrames, orbitPose, pickRay,
} from '/viewer/protocol.js';

const $ = (id) => document.getElementById(id);
const canvas = $('view');
const ctx2d = canvas.getContext('2d');
const params = new URLSearchParams(location.search);

const state = {
  transport: null,
  writer: null,
  seq: 0,
  pending: new Map(),
  welcome: null,
  resumeSecret: null,
  ended: null,
  connectedOnce: false,
  reconnects: 0,
  orbit: { target: [0, 0, 0], distance: 3, yaw: 0, pitch: 0.25, fovY: 0.8, radius: 1 },
  pose: null,
  cameraSeq: 0,
  cameraSentAt: new Map(),
  selected: null,
  decoder: null,
  codec: null,
  waitKeyframe: true,
  lastFrameNumber: null,
  // Host frame numbers by chunk timestamp, to know which frame the canvas shows.
  frameAt: new Map(),
  shownFrame: null,
  stats: { decoded: 0, dropped: 0, bytes: 0, fps: 0, bitrate: 0, latencyMs: null, errors: 0, keyframeRequests: 0, reconnected: 0 },
  // Every command-to-frame latency measured (ms; the last 1000), and when the first frame was
  // decoded (ms since navigation start): for benches.
  latencies: [],
  firstFrameAt: null,
  lastStatsAt: performance.now(),
  decodedAtLastStats: 0,
  bytesAtLastStats: 0,
};
// For tests, benches and the console.
window.farviewViewer = state;
state.api = { sendCamera: () => sendCamera(), request: (r) => request(r) };

function status(text) {
  $('status').textContent = text;
}

async function send(request) {
  if (!state.writer) throw new Error('not connected');
  const seq = ++state.seq;
  const reply = new Promise((resolve, reject) => state.pending.set(seq, { resolve, reject }));
  await state.writer.write(encodeMessage(seq, request));
  return { seq, reply };
}

async function request(req) {
  return (await send(req)).reply;
}

// Decoder input beyond this many frames means the decoder is falling behind: drop to the next
// keyframe instead of letting latency grow (the native SDK does the same with its queue).
const MAX_DECODE_QUEUE = 8;

async function connect() {
  if (state.transport) {
    // Connect while connected: the old transport goes quietly (its close is not a drop).
    const old = state.transport;
    state.transport = null;
    state.writer = null;
    for (const { reject } of state.pending.values()) reject(new Error('replaced by a new connection'));
    state.pending.clear();
    old.close();
  }
  const endpoint = await (await fetch('/viewer/endpoint.json')).json();
  const session = params.get('session') || $('session').value.trim();
  const token = params.get('token') || $('token').value.trim();
  if (!session && !endpoint.allowSessionless) {
    status('Enter a session id and token');
    return;
  }
  const url = `https://${location.hostname}:${endpoint.port}${endpoint.path}`;
  status(`Connecting to ${url}`);
  // Pinned hashes of the host's short-lived certificates; none when the host has a CA's
  // certificate, which the browser checks itself.
  const hashes = endpoint.certificateHashes.map((h) => ({ algorithm: 'sha-256', value: hexBytes(h) }));
  const transport = new WebTransport(url, hashes.length ? { serverCertificateHashes: hashes } : {});
  transport.closed.catch(() => {});
  await transport.ready;
  state.transport = transport;
  // A new connection starts at a keyframe; whatever the old decoder held is stale.
  newDecoder();
  state.lastFrameNumber = null;
  const control = await transport.createBidirectionalStream();
  state.writer = control.writable.getWriter();
  readControl(control.readable);
  readMedia(transport);
  transport.closed.then((info) => onClosed(transport, info), (e) => onClosed(transport, e));
  const auth = session ? { id: session, token, resume_secret: state.resumeSecret } : null;
  const hello = { Hello: { version: PROTOCOL_VERSION, client: `farview-viewer (${navigator.userAgent})`, session: auth } };
  let welcome;
  try {
    welcome = await request(hello);
  } catch (e) {
    // Refused (session in use, wrong token, ...): the reason stays on screen after the close.
    state.refusal = e.message;
    // A resume refused because the session is over: it ended while this page was away, and
    // the close that said so never reached the page (a dropped connection). That is the end,
    // not a failure to retry.
    if (state.connectedOnce && e.wire && SESSION_OVER.includes(e.wire.code)) {
      state.ended = e.wire;
      status(`Session ended: ${e.wire.message} (code ${e.wire.code})`);
    }
    throw e;
  }
  const info = welcome.Welcome;
  state.welcome = info;
  if (info.resume_secret) state.resumeSecret = info.resume_secret;
  if (state.connectedOnce) state.stats.reconnected += 1;
  canvas.width = info.width;
  canvas.height = info.height;
  state.connectedOnce = true;
  state.reconnects = 0;
  status(`Streaming ${info.width}x${info.height} at ${info.fps} fps from ${info.adapter}`);
  await sendCamera();
  listModels().catch((e) => console.warn('model list', e));
  const model = params.get('model');
  if (model && !state.loadedModel) await load(model);
}

async function readControl(readable) {
  try {
    for await (const msg of controlMessages(readable)) {
      const m = classify(msg);
      if (m.event) {
        onEvent(m.event);
        continue;
      }
      const waiter = state.pending.get(m.seq);
      state.pending.delete(m.seq);
      if (!waiter) continue;
      if (m.err) waiter.reject(Object.assign(new Error(`${m.err.message} (${m.err.code})`), { wire: m.err }));
      else waiter.resolve(m.ok);
    }
  } catch (e) {
    console.warn('control stream', e);
  }
}

function onEvent(event) {
  if (event.LoadProgress) {
    $('progress').hidden = false;
    $('progress').value = event.LoadProgress.percent;
  } else if (event.Closing) {
    state.ended = event.Closing;
    status(`Session ended: ${event.Closing.message} (code ${event.Closing.code})`);
  }
}

// The host's close codes (docs/protocol.md): 5 = the session ended, 6 = refused.
const CLOSE_SESSION_ENDED = 5;
const CLOSE_REFUSED = 6;
// Error codes that refuse a resume because the session is no more: session_not_found (its
// record purged), session_ended.
const SESSION_OVER = [300, 303];

function onClosed(transport, info) {
  // A transport replaced by a newer connection says nothing about the current one.
  if (transport !== state.transport) return;
  const reason = info && info.reason ? info.reason : 'connection lost';
  const code = info ? info.closeCode : undefined;
  // A closing session discards stream data the page has not read yet, so the `Closing` event or
  // a refusal may not arrive: the close itself carries the reason too.
  if (!state.ended && code === CLOSE_SESSION_ENDED) {
    state.ended = { code: null, message: reason };
    status(`Session ended: ${reason}`);
  }
  if (!state.refusal && !state.connectedOnce && code === CLOSE_REFUSED) {
    state.refusal = reason;
    status(`Connect failed: ${reason}`);
  }
  for (const { reject } of state.pending.values()) reject(new Error(`connection closed: ${reason}`));
  state.pending.clear();
  state.transport = null;
  state.writer = null;
  if (state.ended) return;
  if (!state.connectedOnce || state.reconnects >= 5) {
    if (!state.refusal) status(`Disconnected: ${reason}`);
    return;
  }
  status(`Disconnected (${reason}); reconnecting with the resume secret`);
  reconnect();
}

/** Tries again with growing pauses, at most five times; a try that fails before its transport
 * is up counts too. */
function reconnect() {
  if (state.ended || state.reconnects >= 5) return;
  state.reconnects += 1;
  setTimeout(() => connect().catch((e) => {
    if (state.ended) return;
    status(`Reconnect ${state.reconnects} failed: ${e.message}`);
    if (!state.transport) reconnect();
  }), 1000 * state.reconnects);
}

async function readMedia(transport) {
  const reader = transport.incomingUnidirectionalStreams.getReader();
  for (;;) {
    const { value, done } = await reader.read().catch(() => ({ done: true }));
    if (done) return;
    readGroup(value);
  }
}

async function readGroup(stream) {
  try {
    for await (const frame of mediaFrames(stream)) onFrame(frame);
  } catch (e) {
    // A reset group (the host dropped it) ends here; the next group starts with a keyframe.
  }
}

function newDecoder() {
  if (state.decoder && state.decoder.state !== 'closed') state.decoder.close();
  state.decoder = new VideoDecoder({
    output: (frame) => {
      ctx2d.drawImage(frame, 0, 0, canvas.width, canvas.height);
      state.shownFrame = state.frameAt.get(frame.timestamp) ?? null;
      if (state.firstFrameAt === null) state.firstFrameAt = performance.now();
      state.frameAt.delete(frame.timestamp);
      frame.close();
      state.stats.decoded += 1;
    },
    error: (e) => onDecoderError(e),
  });
  state.codec = null;
  state.waitKeyframe = true;
}

function onDecoderError(e) {
  state.stats.errors += 1;
  console.warn('decoder error', e);
  newDecoder();
  state.stats.keyframeRequests += 1;
  if (state.writer) request('RequestKeyframe').catch(() => {});
}

function onFrame({ header, data }) {
  state.stats.bytes += data.length;
  // Groups arrive on their own streams: a late frame of an older group must not reach the
  // decoder after the next group's keyframe.
  if (state.lastFrameNumber !== null && header.frameNumber <= state.lastFrameNumber) return;
  if (state.lastFrameNumber !== null && header.frameNumber > state.lastFrameNumber + 1) {
    state.stats.dropped += header.frameNumber - state.lastFrameNumber - 1;
  }
  state.lastFrameNumber = header.frameNumber;
  for (const [seq, sentAt] of state.cameraSentAt) {
    if (header.lastCommandSeq >= seq) {
      state.stats.latencyMs = performance.now() - sentAt;
      if (state.latencies.length >= 1000) state.latencies.shift();
      state.latencies.push(state.stats.latencyMs);
      state.cameraSentAt.delete(seq);
    }
  }
  if (!state.decoder || state.decoder.state === 'closed') newDecoder();
  if (!state.waitKeyframe && !header.keyframe && state.decoder.decodeQueueSize > MAX_DECODE_QUEUE) {
    state.waitKeyframe = true;
    state.stats.keyframeRequests += 1;
    if (state.writer) request('RequestKeyframe').catch(() => {});
  }
  if (state.waitKeyframe) {
    if (!header.keyframe) return;
    const codec = avcCodecString(data);
    if (!codec) return;
    if (codec !== state.codec) {
      state.decoder.configure({ codec, optimizeForLatency: true });
      state.codec = codec;
    }
    state.waitKeyframe = false;
  }
  if (state.frameAt.size > 256) state.frameAt.clear();
  state.frameAt.set(header.renderStartUs, header.frameNumber);
  try {
    state.decoder.decode(new EncodedVideoChunk({
      type: header.keyframe ? 'key' : 'delta',
      timestamp: header.renderStartUs,
      data,
    }));
  } catch (e) {
    onDecoderError(e);
  }
}

// --- Camera: orbit (left drag), pan (right or shift drag), zoom (wheel, pinch).

let cameraQueued = false;
function queueCamera() {
  if (cameraQueued) return;
  cameraQueued = true;
  requestAnimationFrame(() => {
    cameraQueued = false;
    sendCamera().catch(() => {});
  });
}

async function sendCamera() {
  if (!state.writer) return;
  const pose = orbitPose(state.orbit, canvas.width / canvas.height);
  state.pose = pose;
  const sentAt = performance.now();
  const { seq, reply } = await send({ SetCamera: { pose } });
  if (state.cameraSentAt.size > 64) state.cameraSentAt.clear();
  state.cameraSentAt.set(seq, sentAt);
  state.cameraSeq = seq;
  await reply;
}

const pointers = new Map();
let dragged = 0;
canvas.addEventListener('pointerdown', (e) => {
  canvas.setPointerCapture(e.pointerId);
  pointers.set(e.pointerId, { x: e.clientX, y: e.clientY });
  dragged = 0;
});
canvas.addEventListener('pointermove', (e) => {
  const p = pointers.get(e.pointerId);
  if (!p) return;
  const dx = e.clientX - p.x, dy = e.clientY - p.y;
  dragged += Math.abs(dx) + Math.abs(dy);
  if (pointers.size === 2) {
    const [a, b] = [...pointers.values()];
    const before = Math.hypot(a.x - b.x, a.y - b.y);
    p.x = e.clientX; p.y = e.clientY;
    const after = Math.hypot(a.x - b.x, a.y - b.y);
    if (before > 0 && after > 0) zoom(before / after);
    return;
  }
  p.x = e.clientX; p.y = e.clientY;
  const o = state.orbit;
  if (e.buttons === 2 || e.shiftKey) {
    const s = o.distance * 0.002;
    const right = [Math.cos(o.yaw), 0, -Math.sin(o.yaw)];
    o.target = o.target.map((t, i) => t - right[i] * dx * s + (i === 1 ? dy * s : 0));
  } else {
    o.yaw -= dx * 0.008;
    o.pitch = Math.max(-1.5, Math.min(1.5, o.pitch + dy * 0.008));
  }
  queueCamera();
});
const release = (e) => {
  pointers.delete(e.pointerId);
  if (e.type === 'pointerup' && dragged < 4) select(e).catch((err) => status(`Select failed: ${err.message}`));
};
canvas.addEventListener('pointerup', release);
canvas.addEventListener('pointercancel', release);
canvas.addEventListener('contextmenu', (e) => e.preventDefault());
canvas.addEventListener('wheel', (e) => {
  e.preventDefault();
  zoom(Math.exp(e.deltaY * 0.001));
}, { passive: false });

function zoom(factor) {
  const o = state.orbit;
  o.distance = Math.max(o.radius * 0.05, Math.min(o.radius * 50, o.distance * factor));
  queueCamera();
}

// --- Selection: a click casts a ray; the nearest entity hit gets the selected state.

async function select(e) {
  if (!state.writer || !state.pose) return;
  const r = canvas.getBoundingClientRect();
  const ndcX = ((e.clientX - r.left) / r.width) * 2 - 1;
  const ndcY = 1 - ((e.clientY - r.top) / r.height) * 2;
  const ray = pickRay(state.pose, ndcX, ndcY, canvas.width / canvas.height);
  const hits = (await request({ Raycast: { ray: { ...ray, max_distance: 1e9, all: false } } })).Hits;
  const entity = hits.length ? hits[0].entity : null;
  const mark = (id, selected) => request({
    SetStateOverride: { entity: id, state: { hidden: null, see_through: null, selected, tint: null, variant: null } },
  });
  if (state.selected !== null && state.selected !== entity) await mark(state.selected, null).catch(() => {});
  if (entity !== null) await mark(entity, true);
  state.selected = entity;
  $('stat-selected').textContent = entity === null ? '-' : `entity ${entity}`;
}

// --- The host's models, offered in the load field's drop-down.

async function listModels() {
  const { models, truncated } = (await request('ListModels')).Models;
  state.models = models;
  const list = $('models');
  list.replaceChildren(...models.map((m) => {
    const option = document.createElement('option');
    option.value = m.path;
    option.label = `${m.path} (${(m.bytes / 1024).toFixed(0)} KiB)`;
    return option;
  }));
  if (truncated) console.info('the host lists only the first', models.length, 'models');
}

// --- Loading a model: progress events fill the bar, then the camera frames it.

async function load(path) {
  $('progress').hidden = false;
  $('progress').value = 0;
  status(`Loading ${path}`);
  try {
    const loaded = (await request({ LoadModel: { path } })).ModelLoaded;
    state.loadedModel = loaded;
    const min = loaded.bounds_min, max = loaded.bounds_max;
    const center = min.map((m, i) => (m + max[i]) / 2);
    const radius = Math.max(1e-3, Math.hypot(max[0] - min[0], max[1] - min[1], max[2] - min[2]) / 2);
    const fitted = (await request({ FitView: { entity: loaded.root_entity, direction: null } })).CameraFitted;
    const offset = fitted.position.map((p, i) => p - center[i]);
    const distance = Math.hypot(...offset);
    state.orbit = {
      target: center,
      distance,
      yaw: Math.atan2(offset[0], offset[2]),
      pitch: Math.asin(Math.max(-1, Math.min(1, offset[1] / distance))),
      fovY: fitted.fov_y,
      radius,
    };
    await sendCamera();
    status(`Loaded ${path}: ${loaded.triangles} triangles in ${(loaded.load_time_us / 1000).toFixed(0)} ms`);
  } catch (e) {
    status(`Load failed: ${e.message}`);
  } finally {
    $('progress').value = 100;
  }
}

// --- Statistics, once a second.

setInterval(() => {
  const now = performance.now();
  const dt = (now - state.lastStatsAt) / 1000;
  const s = state.stats;
  s.fps = (s.decoded - state.decodedAtLastStats) / dt;
  s.bitrate = ((s.bytes - state.bytesAtLastStats) * 8) / dt;
  state.lastStatsAt = now;
  state.decodedAtLastStats = s.decoded;
  state.bytesAtLastStats = s.bytes;
  $('stat-fps').textContent = s.fps.toFixed(1);
  $('stat-bitrate').textContent = `${(s.bitrate / 1e6).toFixed(2)} Mbit/s`;
  $('stat-latency').textContent = s.latencyMs === null ? '-' : `${s.latencyMs.toFixed(0)} ms`;
  $('stat-drops').textContent = String(s.dropped);
  $('stat-frames').textContent = String(s.decoded);
}, 1000);

$('connect').addEventListener('submit', (e) => {
  e.preventDefault();
  connect().catch((err) => status(`Connect failed: ${err.message}`));
});
$('load').addEventListener('submit', (e) => {
  e.preventDefault();
  const path = $('model').value.trim();
  if (path && state.writer) load(path);
});

if (params.get('session')) $('session').value = params.get('session');
if (params.get('token')) $('token').value = params.get('token');
if (params.has('session') || params.has('autoconnect')) {
  connect().catch((err) => status(`Connect failed: ${err.message}`));
}
