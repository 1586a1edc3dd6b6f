// What the console's browser scripts share: Chromium launched the way
// PROVISIONING describes, error collection, polling and screenshots.
import { createRequire } from 'node:module';

const require = createRequire(process.env.SIGHTLINE_PLAYWRIGHT + '/');
const { chromium } = require('playwright-core');

export const DESKTOP = { width: 1280, height: 900 };
export const PHONE = { width: 390, height: 844 };

/** One JSON line per step, for the Rust test to read. */
export const say = (step, more) => console.log(JSON.stringify({ step, at: Date.now(), ...more }));

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
           '--disable-component-update', '--no-first-run', '--autoplay-policy=no-user-gesture-required'],
  });
}

/** Collects console errors and page errors of the pages watched; a step
 * that expects the API to refuse something may allow that one status. */
export class Errors {
  constructor() { this.list = []; this.allowed = null; }

  watch(page, name) {
    page.on('console', (m) => {
      if (m.type() !== 'error') return;
      if (this.allowed && m.text().includes(`status of ${this.allowed}`)) return;
      this.list.push(`${name}: ${m.text()}`);
    });
    page.on('pageerror', (e) => this.list.push(`${name}: ${e}`));
    return page;
  }

  async allowing(status, f) {
    this.allowed = status;
    try { return await f(); } finally { this.allowed = null; }
  }
}

/** Polls `f(arg)` in the page until it is truthy. (page.waitForFunction
 * evaluates a string, which the console's CSP rightly forbids.) */
export async function until(page, f, arg, timeout = 30000) {
  const end = Date.now() + timeout;
  for (;;) {
    const v = await page.evaluate(f, arg);
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeout} ms waiting for ${f}`);
    await page.waitForTimeout(200);
  }
}

/** Screenshots at desktop and phone width; returns how far the phone view
 * scrolls sideways (0 when it fits). */
export async function shoot(page, dir, name) {
  await page.setViewportSize(DESKTOP);
  await page.screenshot({ path: `${dir}/console-${name}-desktop.png`, fullPage: true });
  await page.setViewportSize(PHONE);
  await page.waitForTimeout(300);
  await page.screenshot({ path: `${dir}/console-${name}-phone.png`, fullPage: true });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  await page.setViewportSize(DESKTOP);
  return overflow;
}

/** Ends a script: closes the browser and prints the `done` step with
 * every error collected (and what else `more` adds). */
export async function finish(browser, errors, more) {
  await browser.close();
  say('done', { errors: errors.list, ...more });
  process.exit(0);
}

/** Signs in on the page with the key. */
export async function signIn(page, base, key) {
  await page.goto(base + '/signin');
  await page.fill('#key', key);
  await page.keyboard.press('Enter');
  await page.waitForURL('**/live');
}
