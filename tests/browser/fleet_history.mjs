// The History page of one box of a site, in headless Chromium: occurrences
// recorded on every box are listed together, newest first, each naming its
// box, with snapshots loaded from the box that holds them.
// Prints one JSON line per step; the last ("done") carries the errors seen.
// Usage: node fleet_history.mjs <base> <api key> <screenshot dir>
import { DESKTOP, Errors, finish, launch, say, shoot, signIn, until } from './console_lib.mjs';

const [base, key, shots] = process.argv.slice(2);
const errors = new Errors();
const browser = await launch();
try {
  const ctx = await browser.newContext({ viewport: DESKTOP });
  const page = errors.watch(await ctx.newPage(), 'history');
  await signIn(page, base, key);
  // An occurrence that started a moment ago may not have its snapshot yet
  // (its image answers 404 until it is written).
  await errors.allowing(404, async () => {
    await page.goto(base + '/history');
    await until(page, () => document.querySelectorAll('#history [data-occurrence]').length >= 2);
    // Wait for the snapshots (some come from the other box) to load or fail.
    await until(page, () => [...document.querySelectorAll('#history img')].every((i) => i.complete));
  });
  const cards = await page.$$eval('#history [data-occurrence]', (cs) => cs.map((c) => {
    const fact = (name) => {
      const dt = [...c.querySelectorAll('dt')].find((d) => d.textContent === name);
      return dt ? dt.nextElementSibling.textContent : null;
    };
    const img = c.querySelector('img');
    return {
      occurrence: c.dataset.occurrence, box: fact('Box'), camera: fact('Camera'),
      image: img ? { src: img.src, width: img.naturalWidth } : null,
    };
  }));
  const missing = await page.$eval('#history-missing', (n) => (n.hidden ? null : n.textContent));
  const overflow = await shoot(page, shots, 'fleet-history');
  say('history', { cards, missing, overflow });
} finally {
  await finish(browser, errors);
}
