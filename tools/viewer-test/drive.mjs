// Drives the host's viewer page in Debian's chromium (headless) through one session, as a user
// would: connect, load a model, watch it stream, orbit, click to select, survive a decoder error
// and a dropped connection, see a second browser refused, then shorten the lease over the REST
// API and read why the session ended; last, a second session stopped while its page is away.
// Writes canvas snapshots (PNG) to OUT, a STEP line per step on stderr, and one JSON report line
// on stdout for crates/farview-host/tests/viewer.rs to check.
//
//   VIEWER_URL  the page, with session, token and model in its query
//   API, API_KEY, SESSION  the REST base, a key and the session id (to end it; the key also
//               makes the second session)
//   OUT         directory for before.png / after.png
//   CHROMIUM    browser binary (default /usr/bin/chromium)

import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { homedir, tmpdir } from 'node:os';
import puppeteer from 'puppeteer-core';

const env = (k, d) => process.env[k] ?? d;

// Lines from the test on stdin ("continue" after it has read the host's frame).
const stdinLines = [];
let stdinWaiter = null;
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  for (const line of chunk.split('\n').filter(Boolean)) stdinLines.push(line);
  if (stdinWaiter && stdinLines.length) stdinWaiter(stdinLines.shift());
});
const nextStdinLine = () => new Promise((resolve) => {
  if (stdinLines.length) resolve(stdinLines.shift());
  else stdinWaiter = (l) => { stdinWaiter = null; resolve(l); };
});
const out = env('OUT', '.');
const log = [];
// Each step on stderr with the seconds since start: when the test's deadline kills this run,
// they say where it stood.
const started = Date.now();
const step = (what) => process.stderr.write(`STEP ${((Date.now() - started) / 1000).toFixed(1)} s: ${what}\n`);

// Chromium's crash reports (Debian's build writes one per crashed process, whatever the flags):
// a count that grew during the run means chromium crashed, which the test tells apart from a
// failure of the viewer's own.
const crashDir = join(homedir(), '.config/chromium/Crash Reports/pending');
const crashDumps = () => {
  try {
    return readdirSync(crashDir).filter((f) => f.endsWith('.dmp')).length;
  } catch {
    return 0;
  }
};
const dumpsBefore = crashDumps();

// What chromium itself printed (its stderr), the last lines: the report carries them.
const chromiumLog = [];
const keepChromiumLog = (proc) => {
  proc?.stderr?.on('data', (chunk) => {
    for (const line of String(chunk).split('\n').filter(Boolean)) {
      chromiumLog.push(line);
      if (chromiumLog.length > 60) chromiumLog.shift();
    }
  });
};

// Rejects when `promise` has not settled within `ms`: puppeteer's calls wait on chromium for as
// long as protocolTimeout, which is long on purpose (below).
const within = (what, ms, promise) => {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms / 1000} s`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
};

const launch = () => puppeteer.launch({
  defaultViewport: { width: 900, height: 560 },
  // A loaded 2-core machine (llvmpipe rendering beside a software video decoder) can stall the
  // page for a while; the test's own deadlines decide.
  protocolTimeout: 600000,
  timeout: 60000,
  executablePath: env('CHROMIUM', '/usr/bin/chromium'),
  headless: true,
  userDataDir: mkdtempSync(join(tmpdir(), 'farview-chromium-')),
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});

// Chromium and its children (puppeteer starts it as a process group's leader), at once: close()
// would wait on the same stalled browser.
const killChromium = (browser) => {
  const pid = browser?.process()?.pid;
  if (!pid) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
};

// Rejects when `page` crashes: a crashed renderer never answers, so what waits on the page gives
// up at once. Chromium reports the crash late at times (two minutes, seen here), which the
// bounded reads cover.
const crashOf = (page) => {
  let crash;
  const crashed = new Promise((_, reject) => { crash = reject; });
  crashed.catch(() => {});
  page.on('error', (e) => {
    log.push(`page crashed: ${e.message}`);
    step(`page crashed: ${e.message}`);
    crash(new Error(`the page crashed: ${e.message}`));
  });
  return crashed;
};

// Chromium, a page and the viewer loaded in it, each step bounded: a browser that does not
// start fails the run with the step it stood at instead of hanging it.
const openViewer = async () => {
  let browser = null;
  try {
    step('launching chromium');
    browser = await within('launching chromium', 90000, launch());
    keepChromiumLog(browser.process());
    step('chromium is up; opening a page');
    const page = await within('opening a page', 60000, browser.newPage());
    page.on('console', (m) => log.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => log.push(`pageerror: ${e.message}`));
    const crashed = crashOf(page);
    step('loading the viewer page');
    await within('loading the viewer page', 60000, page.goto(env('VIEWER_URL'), { waitUntil: 'load', timeout: 60000 }));
    step('viewer page loaded');
    return { browser, page, crashed };
  } catch (e) {
    killChromium(browser);
    throw e;
  }
};

const report = { ok: false };
let browser = null;
try {
  const opened = await openViewer();
  browser = opened.browser;
  const { page, crashed } = opened;

  // A healthy page answers within milliseconds, and within seconds on a loaded machine; one that
  // does not answer for this long has hung or crashed.
  const viewer = (on = { page, crashed }) => within('reading the viewer state', 45000, Promise.race([on.crashed, on.page.evaluate(() => {
    const s = window.farviewViewer;
    return {
      decoded: s.stats.decoded,
      dropped: s.stats.dropped,
      errors: s.stats.errors,
      latencyMs: s.stats.latencyMs,
      loaded: s.loadedModel ? s.loadedModel.triangles : null,
      selected: s.selected,
      welcome: s.welcome,
      ended: s.ended,
      codec: s.codec,
      status: document.getElementById('status').textContent,
      progress: document.getElementById('progress').value,
      fps: document.getElementById('stat-fps').textContent,
      shownFrame: s.shownFrame,
      keyframeRequests: s.stats.keyframeRequests,
      reconnected: s.stats.reconnected,
      models: [...document.querySelectorAll('#models option')].map((o) => o.value),
    };
  })]));
  const until = async (what, pred, timeoutMs = 90000, on = { page, crashed }) => {
    step(`waiting for ${what}`);
    const end = Date.now() + timeoutMs;
    for (;;) {
      const v = await viewer(on);
      if (pred(v)) return v;
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(v)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const snapshot = async (name) => {
    const url = await within(`a snapshot of the canvas (${name})`, 45000, page.evaluate(() => document.getElementById('view').toDataURL('image/png')));
    writeFileSync(join(out, name), Buffer.from(url.split(',')[1], 'base64'));
  };

  const streaming = await until('the model and 15 decoded frames', (v) => v.loaded !== null && v.decoded >= 15);
  report.welcome = streaming.welcome;
  report.codec = streaming.codec;
  report.progress = streaming.progress;
  // Frames showing the framed model (the camera was set after the load).
  const settled = await until('frames after framing', (v) => v.decoded >= streaming.decoded + 10);
  // The canvas and the number of the host frame it shows, read together; then the test takes
  // the host's copy of that frame from its tap before the driver goes on.
  await snapshot('before.png');
  const shown = await viewer();
  report.before = shown;
  console.log(`SNAPSHOT ${shown.shownFrame}`);
  await nextStdinLine();

  const box = await (await page.$('#view')).boundingBox();
  const cx = box.x + box.width / 2, cy = box.y + box.height / 2;
  step('orbiting with the mouse');
  await page.mouse.move(cx, cy);
  await page.mouse.down();
  for (let i = 1; i <= 10; i++) await page.mouse.move(cx + i * 20, cy + i * 4);
  await page.mouse.up();
  const orbited = await until('frames after the orbit', (v) => v.latencyMs !== null && v.decoded >= settled.decoded + 20);
  await snapshot('after.png');
  report.orbited = orbited;

  await page.mouse.click(cx, cy);
  const selected = await until('a selection', (v) => v.selected !== null);
  report.selected = selected.selected;
  // The whole page with the selection outlined and the statistics filled in (README screenshot).
  await until('the outline on screen', (v) => v.decoded >= selected.decoded + 15);
  await within('a screenshot of the page', 45000, page.screenshot({ path: join(out, 'viewer.png') }));

  // A decoder error (a corrupt chunk fed on purpose): the viewer makes a new decoder, asks for a
  // keyframe and goes on decoding.
  const beforeError = await viewer();
  await page.evaluate(() => {
    const s = window.farviewViewer;
    s.decoder.decode(new EncodedVideoChunk({ type: 'delta', timestamp: 1, data: new Uint8Array([0, 0, 1, 0x41, 0xff, 0xff]) }));
  });
  const recovered = await until('decoding after a decoder error', (v) => v.keyframeRequests >= 1 && v.decoded >= beforeError.decoded + 15);
  report.recovered = recovered;

  // A dropped connection: the viewer reconnects with the session's resume secret and streams on.
  await page.evaluate(() => window.farviewViewer.transport.close({ closeCode: 0, reason: 'test drop' }));
  const dropped = await viewer();
  const resumed = await until('streaming after a reconnect', (v) => v.reconnected >= 1 && v.decoded >= dropped.decoded + 15, 60000);
  report.resumed = resumed;

  // A second browser for the same session is refused while this one holds it.
  step('a second browser context for the same session');
  const second = await browser.createBrowserContext();
  const page2 = await within('opening a second page', 60000, second.newPage());
  await within('loading the viewer in the second page', 60000, page2.goto(env('VIEWER_URL'), { waitUntil: 'load', timeout: 60000 }));
  const refusedEnd = Date.now() + 30000;
  for (;;) {
    const text = await page2.evaluate(() => document.getElementById('status').textContent);
    if (text.startsWith('Connect failed') || Date.now() > refusedEnd) {
      report.secondBrowser = text;
      break;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  await second.close();

  // At least 120 frames decoded, then the lease runs out a few seconds from now: the page says
  // why the session ended.
  await until('120 decoded frames', (v) => v.decoded >= 120);
  step('shortening the lease over the REST API');
  const headers = { authorization: `Bearer ${env('API_KEY')}`, 'content-type': 'application/json' };
  const api = `${env('API')}/v1/sessions/${env('SESSION')}`;
  const info = await (await fetch(api, { headers })).json();
  const [h, m, sec] = info.elapsedTime.split(':').map(Number);
  const lease = h * 3600 + m * 60 + sec + 4;
  const patched = await fetch(api, {
    method: 'PATCH',
    headers,
    body: JSON.stringify({ maxLeaseTime: `${Math.floor(lease / 3600)}:${Math.floor(lease / 60) % 60}:${lease % 60}` }),
  });
  report.leaseStatus = patched.status;
  report.ended = await until('the end of the session', (v) => v.ended !== null, 30000);

  // A session that ends while the page is away: its connection dropped, so no close tells it
  // why. The resume is refused, and the page says the session ended instead of retrying.
  step('a second session, to end while the page is away');
  let away = null;
  for (const giveUp = Date.now() + 30000; ;) {
    const res = await fetch(`${env('API')}/v1/sessions`, { method: 'POST', headers, body: JSON.stringify({ maxLeaseTime: '0:5:0', size: 'standard' }) });
    away = await res.json();
    // The host runs one session at a time: the first may still be letting go of its place.
    if (res.ok || away.code !== 'at_capacity' || Date.now() > giveUp) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  if (!away.id) throw new Error(`creating the second session: ${JSON.stringify(away)}`);
  // Only the answer to the create carries the token.
  const awayToken = away.connection.token;
  for (const giveUp = Date.now() + 60000; away.status === 'starting';) {
    if (Date.now() > giveUp) throw new Error(`the second session did not start: ${JSON.stringify(away)}`);
    await new Promise((r) => setTimeout(r, 200));
    away = await (await fetch(`${env('API')}/v1/sessions/${away.id}`, { headers })).json();
  }
  const awayUrl = new URL(env('VIEWER_URL'));
  awayUrl.searchParams.set('session', away.id);
  awayUrl.searchParams.set('token', awayToken);
  const page3 = await within('opening a third page', 60000, browser.newPage());
  const on3 = { page: page3, crashed: crashOf(page3) };
  await within('loading the viewer for the second session', 60000, page3.goto(awayUrl.href, { waitUntil: 'load', timeout: 60000 }));
  await until('the second session streaming', (v) => v.decoded >= 5, 90000, on3);
  await within('dropping the connection', 45000, page3.evaluate(() => window.farviewViewer.transport.close({ closeCode: 0, reason: 'test drop' })));
  const stopped = await fetch(`${env('API')}/v1/sessions/${away.id}/stop`, { method: 'POST', headers });
  report.endedAway = await until('the end of the session the page was away from', (v) => v.ended !== null, 30000, on3);
  report.endedAway.stopStatus = stopped.status;
  report.ok = true;
} catch (e) {
  report.error = String(e && e.stack ? e.stack : e);
} finally {
  // Crashpad may write a crash's report a moment after the failure it caused shows here.
  for (const giveUp = Date.now() + 5000; !report.ok && crashDumps() === dumpsBefore && Date.now() < giveUp;) {
    await new Promise((r) => setTimeout(r, 250));
  }
  report.crashDumps = crashDumps() - dumpsBefore;
  report.log = log.slice(-40);
  report.chromiumLog = chromiumLog.slice(-30);
  step(report.ok ? 'done' : `failed: ${report.error}`);
  if (browser) await within('closing chromium', 30000, browser.close()).catch(() => killChromium(browser));
}
console.log(JSON.stringify(report));
process.exit(0);
