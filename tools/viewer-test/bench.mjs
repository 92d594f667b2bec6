// The browser half of `farview-viewer-bench` (benches/src/bin/farview-viewer-bench.rs): opens
// the viewer (VIEWER_URL, sessionless with autoconnect), reports the time from navigation to the
// first decoded frame, then PROBES camera changes 20 ms apart and the command-to-frame latency of
// each (sent -> first frame naming it received, as the native bench measures). One JSON line.

import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import puppeteer from 'puppeteer-core';

const env = (k, d) => process.env[k] ?? d;
const probes = Number(env('PROBES', '200'));
const browser = await puppeteer.launch({
  executablePath: env('CHROMIUM', '/usr/bin/chromium'),
  headless: true,
  userDataDir: mkdtempSync(join(tmpdir(), 'farview-chromium-')),
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
const report = { ok: false };
try {
  const page = await browser.newPage();
  await page.goto(env('VIEWER_URL'), { waitUntil: 'load' });
  await page.waitForFunction(() => window.farviewViewer.firstFrameAt !== null, { timeout: 60000 });
  report.firstFrameMs = await page.evaluate(() => window.farviewViewer.firstFrameAt);
  await page.waitForFunction(() => window.farviewViewer.loadedModel && window.farviewViewer.stats.decoded > 60, { timeout: 120000 });
  report.latenciesMs = await page.evaluate(async (n) => {
    const s = window.farviewViewer;
    const out = [];
    for (let i = 0; i < n; i++) {
      await new Promise((r) => setTimeout(r, 20));
      const before = s.latencies.length;
      s.orbit.yaw += 0.02;
      await s.api.sendCamera();
      const end = performance.now() + 5000;
      while (s.latencies.length === before && performance.now() < end) {
        await new Promise((r) => setTimeout(r, 1));
      }
      if (s.latencies.length > before) out.push(s.latencies[s.latencies.length - 1]);
    }
    return out;
  }, probes);
  report.decoded = await page.evaluate(() => window.farviewViewer.stats.decoded);
  report.dropped = await page.evaluate(() => window.farviewViewer.stats.dropped);
  report.ok = true;
} catch (e) {
  report.error = String(e && e.stack ? e.stack : e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(report));
process.exit(0);
