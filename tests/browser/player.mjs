// Opens a sightline player page in headless Chromium (Debian's, driven by
// playwright-core), checks that no request leaves 127.0.0.1, that the clip's
// <video> gets ready (readyState >= 3) and plays for at least 2 s, and saves
// a screenshot. Prints one JSON line with what it saw.
// Usage: node player.mjs <player_url> <screenshot.png> [width height]
import { createRequire } from 'node:module';

const require = createRequire(process.env.SIGHTLINE_PLAYWRIGHT + '/');
const { chromium } = require('playwright-core');

const [url, shot, width = '1280', height = '800'] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
         '--disable-component-update', '--no-first-run', '--autoplay-policy=no-user-gesture-required'],
});
const out = { requests: [], errors: [], readyState: 0, played: 0, title: '' };
try {
  // The page's CSP allows no script; the checks below are the test's own.
  const page = await browser.newPage({ viewport: { width: +width, height: +height }, bypassCSP: true });
  page.on('request', (r) => out.requests.push(r.url()));
  page.on('console', (m) => { if (m.type() === 'error') out.errors.push(m.text()); });
  page.on('pageerror', (e) => out.errors.push(String(e)));
  await page.goto(url, { waitUntil: 'load' });
  out.title = await page.title();
  await page.waitForFunction(() => document.querySelector('video').readyState >= 3, null, { timeout: 20000 });
  out.readyState = await page.evaluate(() => document.querySelector('video').readyState);
  const t0 = await page.evaluate(() => document.querySelector('video').currentTime);
  await page.waitForFunction((t) => document.querySelector('video').currentTime >= t + 2, t0, { timeout: 20000 });
  out.played = (await page.evaluate(() => document.querySelector('video').currentTime)) - t0;
  out.label = await page.evaluate(() => document.querySelector('#label')?.textContent ?? null);
  await page.screenshot({ path: shot });
} catch (e) {
  out.errors.push(String(e));
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
