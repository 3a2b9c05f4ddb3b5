// Drives Debian's chromium through playwright-core against a running stack,
// as a person would: open the access link, see VS Code with the seeded file;
// sleep the session through the api, navigate again, see the waking page and
// then VS Code again; open the workspace with no cookie, see the 401 page.
//
// Input (env): PLAYWRIGHT_DIR (folder with node_modules/playwright-core),
// ACCESS_URL, WORKSPACE_URL, SEEDED_FILE, SHOTS_DIR, API (http://host:port),
// API_KEY, SESSION. Output: one JSON object per line on stdout, one per step;
// the Rust test asserts on them. Exit 1 with a message on stderr on failure.
import { createRequire } from 'node:module';
import path from 'node:path';

const env = (k) => {
  const v = process.env[k];
  if (!v) { console.error(`drive.mjs: ${k} is not set`); process.exit(2); }
  return v;
};
const require = createRequire(path.join(env('PLAYWRIGHT_DIR'), 'node_modules', 'x.js'));
const { chromium } = require('playwright-core');

const ACCESS_URL = env('ACCESS_URL');
const WORKSPACE_URL = env('WORKSPACE_URL');
const SEEDED_FILE = env('SEEDED_FILE');
const SHOTS = env('SHOTS_DIR');
const API = env('API');
const KEY = env('API_KEY');
const SESSION = env('SESSION');
const WORKBENCH_TIMEOUT = 120_000;

const say = (o) => console.log(JSON.stringify(o));

async function api(method, p) {
  const r = await fetch(API + p, { method, headers: { 'X-API-Key': KEY } });
  return { status: r.status, body: await r.json() };
}

async function sleepSession() {
  const r = await api('POST', `/session/${SESSION}/sleep`);
  if (r.status !== 202) throw new Error(`sleep: ${r.status} ${JSON.stringify(r.body)}`);
  for (let i = 0; i < 600; i++) {
    const j = await api('GET', `/jobs/${r.body.job_id}`);
    if (j.body.state === 'succeeded') return;
    if (['failed', 'dead', 'superseded'].includes(j.body.state)) throw new Error(`sleep job ${JSON.stringify(j.body)}`);
    await new Promise((res) => setTimeout(res, 200));
  }
  throw new Error('sleep job did not finish');
}

async function workbenchWithFile(page) {
  await page.waitForSelector('.monaco-workbench', { timeout: WORKBENCH_TIMEOUT });
  // The Explorer lists the volume's files.
  await page.waitForSelector(`.explorer-folders-view >> text=${SEEDED_FILE}`, { timeout: WORKBENCH_TIMEOUT });
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
try {
  // 1. The access link: token exchanged for a cookie, redirected, VS Code renders.
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  const first = await page.goto(ACCESS_URL, { waitUntil: 'domcontentloaded' });
  await workbenchWithFile(page);
  const cookies = await ctx.cookies();
  await page.screenshot({ path: path.join(SHOTS, '1-workbench.png') });
  say({ step: 1, status: first?.status(), url: page.url(), cookies: cookies.map((c) => ({ name: c.name, domain: c.domain, httpOnly: c.httpOnly, sameSite: c.sameSite })) });

  // 2. Sleep through the api; navigating again shows the waking page, then VS Code.
  await page.goto('about:blank');
  await sleepSession();
  const again = await page.goto(WORKSPACE_URL, { waitUntil: 'domcontentloaded' });
  const wakingText = await page.textContent('body');
  await page.screenshot({ path: path.join(SHOTS, '2a-waking.png') });
  await workbenchWithFile(page);
  await page.screenshot({ path: path.join(SHOTS, '2b-workbench-after-wake.png') });
  say({ step: 2, status: again?.status(), waking_text: (wakingText || '').slice(0, 400), url: page.url() });

  // 3. A fresh context has no cookie: the 401 page.
  const anon = await browser.newContext();
  const p3 = await anon.newPage();
  const denied = await p3.goto(WORKSPACE_URL, { waitUntil: 'domcontentloaded' });
  const deniedText = await p3.textContent('body');
  await p3.screenshot({ path: path.join(SHOTS, '3-unauthorized.png') });
  say({ step: 3, status: denied?.status(), text: (deniedText || '').slice(0, 400) });
} catch (e) {
  console.error(`drive.mjs: ${e && e.stack ? e.stack : e}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
