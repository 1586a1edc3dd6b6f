// Drives the sightline web console in headless Chromium (Debian's, through
// playwright-core) the way an operator would, for tests/console.rs. Prints
// one JSON line per step ({"step": ..., ...}); the Rust test reads them,
// checks what it can see from outside (the webhook receiver, the camera
// process) and answers on stdin where a step needs it ("killed").
// Every console error and page error of the console's own pages is
// collected; only the refused sign-in may log its 401.
// Usage: node console.mjs <base> <api key> <webhook url> <screenshot dir>
import { createRequire } from 'node:module';
import readline from 'node:readline';

const require = createRequire(process.env.SIGHTLINE_PLAYWRIGHT + '/');
const { chromium } = require('playwright-core');

const [base, key, hook, shots] = process.argv.slice(2);
const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 390, height: 844 };
const say = (step, more) => console.log(JSON.stringify({ step, at: Date.now(), ...more }));
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();

const errors = [];
let allowed401 = false;
function watch(page, name) {
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    if (allowed401 && /status of 401/.test(m.text())) return;
    errors.push(`${name}: ${m.text()}`);
  });
  page.on('pageerror', (e) => errors.push(`${name}: ${e}`));
  return page;
}

/** Polls `f(arg)` in the page until it is truthy. (page.waitForFunction
 * evaluates a string, which the console's CSP rightly forbids.) */
async function until(page, f, arg, timeout = 30000) {
  const end = Date.now() + timeout;
  for (;;) {
    const v = await page.evaluate(f, arg);
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeout} ms waiting for ${f}`);
    await page.waitForTimeout(200);
  }
}

/** Screenshots of the page at desktop and phone width. */
async function shoot(page, name) {
  await page.setViewportSize(DESKTOP);
  await page.screenshot({ path: `${shots}/console-${name}-desktop.png`, fullPage: true });
  await page.setViewportSize(PHONE);
  await page.waitForTimeout(300);
  await page.screenshot({ path: `${shots}/console-${name}-phone.png`, fullPage: true });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  await page.setViewportSize(DESKTOP);
  return overflow;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
         '--disable-component-update', '--no-first-run', '--autoplay-policy=no-user-gesture-required'],
});
const overflow = {};
try {
  const ctx = await browser.newContext({ viewport: DESKTOP });
  const rules = watch(await ctx.newPage(), 'rules');

  // Sign-in: a wrong key is refused on the page, the right one gets in.
  await rules.goto(base + '/');
  allowed401 = true;
  await rules.fill('#key', 'not-the-key-0123456789');
  await rules.keyboard.press('Enter');
  await rules.waitForSelector('#signin-error:not([hidden])');
  const refusal = await rules.textContent('#signin-error');
  await rules.waitForTimeout(200);
  allowed401 = false;
  overflow.signin = await shoot(rules, 'signin');
  await rules.fill('#key', key);
  await rules.keyboard.press('Enter');
  await rules.waitForURL('**/live');
  const cookies = (await ctx.cookies()).filter((c) => c.name === 'sightline_session');
  say('signed-in', { refusal, cookie: cookies[0] || null });

  // The Live page stays open from here on, in a tab of its own.
  const live = watch(await ctx.newPage(), 'live');
  await live.goto(base + '/live');
  await live.waitForSelector('#feed-state.up');

  // Cameras: the stream is up and its frame count rises.
  await rules.goto(base + '/cameras');
  const cam = '#cameras [data-stream="yard"]';
  await rules.waitForSelector(`${cam}[data-state="up"]`);
  const f1 = +(await rules.getAttribute(cam, 'data-frames'));
  await rules.waitForTimeout(4500);
  const f2 = +(await rules.getAttribute(cam, 'data-frames'));
  await until(rules, (s) => document.querySelector(s + ' img').naturalWidth > 0, cam);
  overflow.cameras = await shoot(rules, 'cameras');
  say('cameras', { frames: [f1, f2] });

  // Rules: check the prompt, save the event, wire an alert, all by keyboard and clicks.
  await rules.goto(base + '/rules');
  await rules.fill('#event-prompt', 'Detect person');
  await rules.fill('#event-label', 'person');
  await rules.click('#event-check');
  await rules.waitForSelector('#event-preview .note.good');
  const preview = await rules.textContent('#event-preview');
  await rules.click('#event-save');
  await rules.waitForSelector('#event-table');
  await rules.selectOption('#alert-camera', 'yard');
  await rules.fill('#alert-webhook', hook);
  await rules.click('form:has(#alert-event) button[type=submit]');
  await rules.waitForSelector('#alert-table tr[data-alert]');
  const alertId = await rules.getAttribute('#alert-table tr[data-alert]', 'data-alert');
  overflow.rules = await shoot(rules, 'rules');
  say('alert-created', { preview, alert_id: alertId });

  // Live: the alert arrives with its snapshot, and its clip plays.
  const card = '#alerts li.card';
  await live.waitForSelector(card, { timeout: 60000 });
  const occurrence = await live.getAttribute(card, 'data-occurrence');
  const arrived = +(await live.getAttribute(card, 'data-arrived'));
  await until(live, (s) => { const i = document.querySelector(s + ' img'); return i && i.complete && i.naturalWidth > 0; }, card);
  const naturalWidth = await live.evaluate((s) => document.querySelector(s + ' img').naturalWidth, card);
  say('live', { occurrence, arrived, naturalWidth });
  await live.click(`${card} button.play`);
  await until(live, (s) => document.querySelector(s + ' video')?.readyState >= 2, card, 30000);
  const t0 = await live.evaluate((s) => document.querySelector(s + ' video').currentTime, card);
  await until(live, ([s, t]) => document.querySelector(s + ' video').currentTime > t + 1, [card, t0], 30000);
  const played = await live.evaluate(([s, t]) => document.querySelector(s + ' video').currentTime - t, [card, t0]);
  overflow.live = await shoot(live, 'live');
  say('played', { played });

  // Disable once the occurrence is over and its clip is ready.
  await live.waitForSelector(`${card}[data-occurrence="${occurrence}"][data-phase="clip_ready"]`, { timeout: 60000 });
  await rules.goto(base + '/rules');
  const row = `#alert-table tr[data-alert="${alertId}"]`;
  await rules.click(`${row} button.toggle`);
  await rules.waitForSelector(`${row} .status.disabled`);
  say('disabled');
  await rules.waitForTimeout(35000);
  say('disabled-window-over');

  // Resume: the Live tab goes away, a test alert is sent meanwhile, and
  // the tab coming back gets it from the resumed feed.
  await live.goto(base + '/health');
  await rules.click(`${row} button:has-text("Send test")`);
  await rules.waitForTimeout(1000);
  await live.goto(base + '/live');
  await live.waitForSelector(`#alerts li.card:not([data-occurrence="${occurrence}"])`, { timeout: 15000 });
  const resumed = await live.evaluate(() => document.body.dataset.feed);
  say('resumed', { feed: resumed });

  await rules.click(`${row} button.toggle`);
  await rules.waitForSelector(`${row} .status.enabled`);
  say('enabled');

  // History and Health.
  await rules.goto(base + '/history');
  await until(rules, () => [...document.querySelectorAll('#history img')].some((i) => i.naturalWidth > 0), null, 20000);
  const history = await rules.$$eval('#history li.card', (c) => c.map((x) => x.dataset.occurrence));
  overflow.history = await shoot(rules, 'history');
  await rules.goto(base + '/health');
  await rules.waitForSelector('#health dl');
  const health = await rules.textContent('#health');
  overflow.health = await shoot(rules, 'health');
  say('pages', { history, health });

  // A cross-site form POST (from a page of another origin) is refused.
  const evil = await ctx.newPage();
  await evil.setContent(`<form method="post" action="${base}/alert/${alertId}/test"><button>go</button></form>`);
  const [resp] = await Promise.all([evil.waitForEvent('response'), evil.click('button')]);
  say('cross-site', { status: resp.status(), body: await resp.text() });
  await evil.close();

  // The camera dies: the Cameras page says so.
  await rules.goto(base + '/cameras');
  await rules.waitForSelector(`${cam}[data-state="up"]`);
  say('kill-camera');
  await lines.next();
  const killed = Date.now();
  await rules.waitForSelector(`${cam}[data-state="reconnecting"]`, { timeout: 15000 });
  say('reconnecting', { after_ms: Date.now() - killed });
  await shoot(rules, 'cameras-reconnecting');

  // Sign out: the pages send you back to sign-in.
  await rules.click('#signout');
  await rules.waitForURL('**/signin');
  await live.close();
  await rules.goto(base + '/rules');
  say('signed-out', { url: rules.url() });
} catch (e) {
  errors.push('test: ' + (e.stack || e));
} finally {
  await browser.close();
  say('done', { errors, overflow });
  process.exit(0);
}
