// The Cameras page of one box of a site, in headless Chromium: every camera
// of the site is listed with the box that runs it. For tests/suite/fleet.
// Prints one JSON line per step; the last ("done") carries the errors seen.
// Usage: node fleet_cameras.mjs <base> <api key> <screenshot dir> <cameras>
import { DESKTOP, Errors, finish, launch, say, shoot, signIn, until } from './console_lib.mjs';

const [base, key, shots, count] = process.argv.slice(2);
const errors = new Errors();
const browser = await launch();
try {
  const ctx = await browser.newContext({ viewport: DESKTOP });
  // Another box's camera has no picture here: its snapshot answers 404.
  const page = errors.watch(await ctx.newPage(), 'cameras');
  await signIn(page, base, key);
  await errors.allowing(404, async () => {
    await page.goto(base + '/cameras');
    await until(page, (n) => document.querySelectorAll('#cameras [data-box]:not([data-box=""])').length >= n, +count);
    await page.waitForTimeout(3500);
  });
  const cards = await page.$$eval('#cameras [data-stream]', (cs) => cs.map((c) => ({
    stream: c.dataset.stream, box: c.dataset.box, state: c.dataset.state,
    shown: (c.querySelector('.box') || {}).textContent || null,
  })));
  const overflow = await shoot(page, shots, 'fleet-cameras');
  say('cameras', { cards, overflow });
} finally {
  await finish(browser, errors);
}
