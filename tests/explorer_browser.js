// Drives explorer.html in headless Chromium: move a slider, draw a digit, take a screenshot.
// Usage: node explorer_browser.js PAGE.html SCREENSHOT.png  (prints one JSON line of findings)
"use strict";
const path = require("path");
const { chromium } = require(process.env.PLAYWRIGHT_CORE || "playwright-core");

(async () => {
  const [page_path, screenshot] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const requests = [];
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.on("request", (r) => { if (!r.url().startsWith("file:") && !r.url().startsWith("data:")) requests.push(r.url()); });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto("file://" + path.resolve(page_path));
  await page.waitForFunction(() => window.explorerReady === true);
  const before = await page.evaluate(() => Array.from(window.decodedPixels));
  await page.locator("#slider-0").fill("2.5");
  const after = await page.evaluate(() => Array.from(window.decodedPixels));
  const box = await page.locator("#draw").boundingBox();
  await page.mouse.move(box.x + 112, box.y + 40);
  await page.mouse.down();
  for (let i = 0; i <= 10; i++) await page.mouse.move(box.x + 112, box.y + 40 + 14 * i);
  await page.mouse.up();
  const encoding = await page.evaluate(() => window.lastEncoding || null);
  const recon = await page.evaluate(() => (window.reconPixels ? Array.from(window.reconPixels) : null));
  await page.screenshot({ path: screenshot, fullPage: true });
  await browser.close();
  const changed = before.reduce((s, v, i) => s + Math.abs(v - after[i]), 0);
  console.log(JSON.stringify({ changed, encoding, recon_sum: recon && recon.reduce((a, b) => a + b, 0),
                               errors, requests }));
})().catch((e) => { console.error(e); process.exit(1); });
