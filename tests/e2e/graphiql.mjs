// GraphiQL at /graphiql in a real browser: Debian's Chromium, headless, driven by
// playwright-core. There is no internet here, so the page's CDN requests (unpkg) are
// answered from the graphiql, react and react-dom packages installed next to this file;
// any other outside request is refused and reported. The suite logs in with a mutation
// typed into the editor, puts the token in the Headers tab, runs `me`, and reads the
// rendered result. A screenshot is kept in artifacts/graphiql.png.

import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { AUTHGRAPH_URL, PASSWORD, REGISTER, assert, data, email, graphql, steps } from './lib.mjs';

/** A second authgraph started with GRAPHIQL_CDN_URL=SELF_HOSTED_BASE (set by tests/api/e2e.rs). */
const SELF_HOSTED_APP = process.env.AUTHGRAPH_SELF_HOSTED_URL;
const SELF_HOSTED_BASE = process.env.GRAPHIQL_CDN_URL;
const HERE = dirname(fileURLToPath(import.meta.url));
const ARTIFACTS = join(HERE, 'artifacts');
const EXECUTABLE = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];
/** unpkg path prefixes of the page's assets -> the installed package holding them. */
const PACKAGES = { react: 'react', 'react-dom': 'react-dom', graphiql: 'graphiql' };
const TYPES = { '.js': 'application/javascript', '.css': 'text/css', '.map': 'application/json' };

/** The installed file for an unpkg path such as `/react@18/umd/react.development.js`. */
function assetFor(pathname) {
  const match = /^\/((?:@[^/]+\/)?[^@/]+)@[^/]+\/(.+)$/.exec(pathname);
  const pkg = match && PACKAGES[match[1]];
  if (!pkg) return null;
  const root = resolve(HERE, 'node_modules', pkg);
  const file = resolve(root, match[2]);
  return file.startsWith(root + sep) && existsSync(file) ? file : null;
}

/**
 * Answers a page's requests: its own origin goes to authgraph; asset URLs under `base`
 * (unpkg's layout) come from node_modules; anything else is refused and listed.
 */
async function serveAssets(target, appOrigin, base, log) {
  await target.route('**/*', async (route) => {
    const href = route.request().url();
    if (new URL(href).origin === appOrigin) return route.continue();
    const file = href.startsWith(`${base}/`) ? assetFor(new URL(href.slice(base.length), 'http://x').pathname) : null;
    if (!file) {
      log.refused.push(href);
      return route.abort('blockedbyclient');
    }
    log.served.push(href.slice(base.length));
    const type = TYPES[file.slice(file.lastIndexOf('.'))] ?? 'application/octet-stream';
    return route.fulfill({ path: file, contentType: type, headers: { 'access-control-allow-origin': '*' } });
  });
}

const user = { email: email('graphiql'), displayName: 'Grace in GraphiQL' };
const origin = new URL(AUTHGRAPH_URL).origin;
const served = [];
const refused = [];
const pageErrors = [];
let browser;
let page;
let userId;
let token;

/** Replaces the text of a GraphiQL editor as a person would: focus, select all, type. */
async function typeInto(editor, text) {
  await editor.locator('.CodeMirror:visible').first().click();
  await page.keyboard.press('Control+A');
  await page.keyboard.press('Delete');
  // insertText types the text in one input event, so auto-closed brackets don't double.
  await page.keyboard.insertText(text);
}

/** Clicks Run and answers the rendered result once it holds `expected`. */
async function run(expected) {
  await page.locator('.graphiql-execute-button').click();
  const result = page.locator('.graphiql-response .result-window');
  await result.getByText(expected).first().waitFor({ timeout: 15_000 });
  return (await result.innerText()).replace(/\u00a0/g, ' ');
}

/** On a failure, the screen as it was, for the person reading the test output. */
async function failureScreenshot() {
  if (!page) return;
  mkdirSync(ARTIFACTS, { recursive: true });
  const path = join(ARTIFACTS, 'graphiql-failure.png');
  await page.screenshot({ path }).catch(() => {});
  console.log(`     screenshot of the failure: ${path}`);
}

await steps('graphiql', [
  ['launch Debian Chromium headless', async () => {
    assert.ok(existsSync(EXECUTABLE), `no Chromium at ${EXECUTABLE}`);
    browser = await chromium.launch({ executablePath: EXECUTABLE, headless: true, args: FLAGS });
    page = await browser.newPage({ viewport: { width: 1400, height: 860 } });
    page.on('pageerror', (err) => pageErrors.push(String(err)));
    await serveAssets(page, origin, 'https://unpkg.com', { served, refused });
  }],
  ['register a user (outside the browser)', async () => {
    const result = await graphql(`${AUTHGRAPH_URL}/graphql`, REGISTER, {
      input: { email: user.email, password: PASSWORD, displayName: user.displayName },
    });
    userId = data(result, 'register').register.user.id;
  }],
  ['open /graphiql with its assets served from node_modules', async () => {
    const response = await page.goto(`${AUTHGRAPH_URL}/graphiql`);
    assert.equal(response.status(), 200);
    await page.locator('.graphiql-query-editor .CodeMirror').first().waitFor({ timeout: 30_000 });
    for (const asset of ['/graphiql@', '/react@', '/react-dom@']) {
      assert.ok(served.some((p) => p.startsWith(asset)), `${asset} was not requested: ${served}`);
    }
    const unserved = refused.filter((u) => new URL(u).hostname === 'unpkg.com');
    assert.deepEqual(unserved, [], 'assets the page asked for that the packages lack');
  }],
  ['run a login mutation typed into the editor', async () => {
    await typeInto(
      page.locator('.graphiql-query-editor'),
      `mutation Login {\n  login(input: {email: "${user.email}", password: "${PASSWORD}"}) {\n    accessToken\n    user { id email }\n  }\n}`,
    );
    const rendered = await run('accessToken');
    const match = /"accessToken":\s*"([^"]+)"/.exec(rendered);
    assert.ok(match, `no token in the rendered result:\n${rendered}`);
    token = match[1];
    assert.ok(rendered.includes(userId), rendered);
  }],
  ['run `me` with the Authorization header from the Headers tab', async () => {
    await typeInto(page.locator('.graphiql-query-editor'), 'query Me {\n  me { id email displayName role }\n}');
    await page.getByRole('button', { name: 'Headers' }).click();
    await typeInto(page.locator('.graphiql-editor-tool'), JSON.stringify({ Authorization: `Bearer ${token}` }, null, 2));
    const rendered = await run(user.email);
    assert.ok(rendered.includes(`"id": "${userId}"`), rendered);
    assert.ok(rendered.includes(`"displayName": "${user.displayName}"`), rendered);
    assert.ok(rendered.includes('"role": "USER"'), rendered);
    assert.ok(!rendered.includes('"errors"'), rendered);
  }],
  ['with GRAPHIQL_CDN_URL the page loads every asset from that base', async () => {
    assert.ok(SELF_HOSTED_APP && SELF_HOSTED_BASE, 'AUTHGRAPH_SELF_HOSTED_URL and GRAPHIQL_CDN_URL must be set');
    const other = await browser.newPage();
    other.on('pageerror', (err) => pageErrors.push(String(err)));
    const appOrigin = new URL(SELF_HOSTED_APP).origin;
    const log = { served: [], refused: [] };
    await serveAssets(other, appOrigin, SELF_HOSTED_BASE, log);
    await other.goto(`${SELF_HOSTED_APP}/graphiql`);
    await other.locator('.graphiql-query-editor .CodeMirror').first().waitFor({ timeout: 30_000 });
    assert.deepEqual(log.refused, [], 'requests that left the app and the configured asset base');
    assert.ok(log.served.some((p) => p.startsWith('/graphiql@')), log.served.join('\n'));
    await other.close();
  }],
  ['keep a screenshot in artifacts/graphiql.png', async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'graphiql.png') });
  }],
  ['the page raised no error', async () => {
    assert.deepEqual(pageErrors, []);
    for (const url of refused) console.log(`     refused outside request: ${url}`);
  }],
], failureScreenshot);

await browser.close();
process.exit(0);
