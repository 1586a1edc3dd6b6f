// The Rules page's search and backtest on a dual-encoder stream, for
// tests/suite/console.rs: signs in, searches the stored frames for a text, then
// backtests it as an event, and reports the ranges drawn on the timeline.
// Usage: node console_search.mjs <base> <api key> <text> <screenshot dir>
import { Errors, finish, launch, say, shoot, signIn } from './console_lib.mjs';

const [base, key, text, shots] = process.argv.slice(2);
const errors = new Errors();
const browser = await launch();
let overflow = null;

/** The timeline's spans as [left %, width %], and the result's summary line. */
async function drawn(page) {
  await page.waitForSelector('#search-result .timeline');
  return {
    summary: await page.textContent('#search-result p'),
    spans: await page.$$eval('#search-result .timeline span', (s) => s.map((x) => [parseFloat(x.style.left), x.getBoundingClientRect().width])),
  };
}

try {
  const page = errors.watch(await browser.newPage({ viewport: { width: 1280, height: 900 } }), 'rules');
  await signIn(page, base, key);
  await page.goto(base + '/rules');
  await page.fill('#search-text', text);
  await page.click('form:has(#search-text) button[type=submit]');
  const search = await drawn(page);
  await page.click('button:has-text("Backtest as an event")');
  await page.waitForSelector('#search-result p:has-text("Backtest")');
  const backtest = await drawn(page);
  overflow = await shoot(page, shots, 'rules-search');
  say('searched', { search, backtest });
} catch (e) {
  errors.list.push('test: ' + (e.stack || e));
} finally {
  await finish(browser, errors, { overflow });
}
