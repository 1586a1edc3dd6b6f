// Drives the sightline web console in headless Chromium (Debian's, through
// playwright-core) the way an operator would, for tests/suite/console.rs. Prints
// one JSON line per step ({"step": ..., ...}); the Rust test reads them,
// checks what it can see from outside (the webhook receiver, the camera
// process) and answers on stdin where a step needs it ("killed").
// Every console error and page error of the console's own pages is
// collected; only the refused sign-in may log its 401.
// Usage: node console.mjs <base> <api key> <webhook url> <screenshot dir> <refusing url>
import readline from 'node:readline';
import { DESKTOP, Errors, finish, launch, say, shoot as shootAt, signIn, until } from './console_lib.mjs';

const [base, key, hook, shots, refuser] = process.argv.slice(2);
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const errors = new Errors();
const shoot = (page, name) => shootAt(page, shots, name);
const browser = await launch();
const overflow = {};
try {
  const ctx = await browser.newContext({ viewport: DESKTOP });
  const rules = errors.watch(await ctx.newPage(), 'rules');

  // Sign-in: a wrong key is refused on the page, the right one gets in.
  await rules.goto(base + '/');
  const refusal = await errors.allowing(401, async () => {
    await rules.fill('#key', 'not-the-key-0123456789');
    await rules.keyboard.press('Enter');
    await rules.waitForSelector('#signin-error:not([hidden])');
    await rules.waitForTimeout(200);
    return rules.textContent('#signin-error');
  });
  overflow.signin = await shoot(rules, 'signin');
  await signIn(rules, base, key);
  const cookies = (await ctx.cookies()).filter((c) => c.name === 'sightline_session');
  say('signed-in', { refusal, cookie: cookies[0] || null });

  // The Live page stays open from here on, in a tab of its own.
  const live = errors.watch(await ctx.newPage(), 'live');
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
  await rules.fill('#event-prompt', 'Detect a unicorn');
  await rules.fill('#event-label', 'unicorn');
  const refused = await errors.allowing(422, async () => {
    await rules.click('#event-check');
    await rules.waitForSelector('#event-preview .note.bad');
    return rules.textContent('#event-preview');
  });
  const saveable = !(await rules.isDisabled('#event-save'));
  say('refused-prompt', { refused, saveable });
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
  // Play the clip once it is complete (while the occurrence runs it holds
  // only what is recorded so far, which can be under a second), then
  // disable the alert.
  const mine = `${card}[data-occurrence="${occurrence}"]`;
  await live.waitForSelector(`${mine}[data-phase="clip_ready"]`, { timeout: 60000 });
  await live.click(`${mine} button.play`);
  await until(live, (s) => document.querySelector(s + ' video')?.readyState >= 2, mine, 30000);
  const t0 = await live.evaluate((s) => document.querySelector(s + ' video').currentTime, mine);
  await until(live, ([s, t]) => document.querySelector(s + ' video').currentTime > t + 1, [mine, t0], 30000);
  const played = await live.evaluate(([s, t]) => document.querySelector(s + ' video').currentTime - t, [mine, t0]);
  overflow.live = await shoot(live, 'live');
  say('played', { played });

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

  // A receiver that refuses (400) makes a dead letter; Health lists it and
  // puts it back in line.
  await rules.goto(base + '/rules');
  await rules.selectOption('#alert-camera', 'yard');
  await rules.fill('#alert-webhook', refuser);
  await rules.click('form:has(#alert-event) button[type=submit]');
  await rules.waitForSelector(`#alert-table tr[data-alert]:not([data-alert="${alertId}"])`);
  const refusing = await rules.getAttribute(`#alert-table tr[data-alert]:not([data-alert="${alertId}"])`, 'data-alert');
  await rules.click(`#alert-table tr[data-alert="${refusing}"] button:has-text("Send test")`);
  await rules.goto(base + '/health');
  await rules.waitForSelector('#dead tbody tr', { timeout: 30000 });
  const dead = await rules.$$eval('#dead tbody tr', (rows) => rows.map((r) => r.textContent));
  overflow.health_dead = await shoot(rules, 'health-dead-letter');
  await rules.click('#dead tbody tr button');
  await rules.waitForSelector('#toast:has-text("Back in line")');
  say('dead-letter', { dead, refusing });

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
  errors.list.push('test: ' + (e.stack || e));
} finally {
  await finish(browser, errors, { overflow });
}
