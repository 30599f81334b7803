// Passkeys in a real browser: Debian's Chromium, headless, driven by playwright-core, with
// a CDP virtual authenticator (CTAP2, resident keys, user verification) standing in for
// a platform authenticator. A small page served from the relying party's origin
// (PAGE_ORIGIN, `http://localhost:<port>`: localhost is a secure context) does what the
// README's "Passkeys" section tells a frontend to do: GraphQL begin mutation,
// `PublicKeyCredential.parse*OptionsFromJSON`, `navigator.credentials.create/get`,
// `toJSON()`, GraphQL finish mutation. Its `/graphql` is forwarded to authgraph, which
// is configured with WEBAUTHN_RP_ID=localhost and WEBAUTHN_ORIGINS=PAGE_ORIGIN.
// A screenshot of the page after sign-in is kept in ARTIFACTS_DIR/passkeys.png.

import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { AUTHGRAPH_URL, PASSWORD, REGISTER, assert, data, email, graphql, steps } from './lib.mjs';

const EXECUTABLE = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const PAGE_ORIGIN = process.env.PAGE_ORIGIN;
const ARTIFACTS = process.env.ARTIFACTS_DIR;
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

// The test page: what a frontend needs, and nothing else. Results are shown in the page
// (for the screenshot) and returned to the suite.
const PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>authgraph passkeys</title>
<style>body{font:15px system-ui,sans-serif;margin:2rem;max-width:56rem}pre{background:#f4f4f4;padding:.6rem;white-space:pre-wrap;word-break:break-all}</style>
</head><body>
<h1>Passkeys with authgraph</h1>
<p>Origin <code id="origin"></code>; a CDP virtual authenticator answers the ceremonies.</p>
<ol id="log"></ol>
<script>
document.getElementById('origin').textContent = location.origin;
const log = (title, value) => {
  const li = document.createElement('li');
  li.innerHTML = '<strong></strong><pre></pre>';
  li.querySelector('strong').textContent = title;
  li.querySelector('pre').textContent = typeof value === 'string' ? value : JSON.stringify(value, null, 2);
  document.getElementById('log').append(li);
};

async function gql(query, variables, accessToken) {
  const headers = { 'content-type': 'application/json' };
  if (accessToken) headers.authorization = 'Bearer ' + accessToken;
  const response = await fetch('/graphql', { method: 'POST', headers, body: JSON.stringify({ query, variables }) });
  const body = await response.json();
  if (body.errors) throw new Error(body.errors[0].extensions.code + ': ' + body.errors[0].message);
  return body.data;
}

// Registration: needs the user's access token (and a recent sign-in).
window.addPasskey = async (accessToken, name) => {
  const begun = (await gql('mutation { beginPasskeyRegistration { challengeId options } }', {}, accessToken))
    .beginPasskeyRegistration;
  const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(begun.options);
  const credential = await navigator.credentials.create({ publicKey });
  const passkey = (await gql(
    'mutation($id: ID!, $credential: JSON!, $name: String) { finishPasskeyRegistration(challengeId: $id, credential: $credential, name: $name) { id name backedUp } }',
    { id: begun.challengeId, credential: credential.toJSON(), name },
    accessToken,
  )).finishPasskeyRegistration;
  log('passkey registered', passkey);
  return passkey;
};

// Sign-in: with an email (its passkeys), or without (any passkey of this site).
window.signInWithPasskey = async (email) => {
  const begun = (await gql('mutation($email: String) { beginPasskeyLogin(email: $email) { challengeId options } }', { email }))
    .beginPasskeyLogin;
  const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(begun.options);
  const credential = await navigator.credentials.get({ publicKey });
  const payload = (await gql(
    'mutation($id: ID!, $credential: JSON!) { finishPasskeyLogin(challengeId: $id, credential: $credential) { accessToken user { id email } } }',
    { id: begun.challengeId, credential: credential.toJSON() },
  )).finishPasskeyLogin;
  const claims = JSON.parse(atob(payload.accessToken.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
  log('signed in ' + (email ? 'with ' + email : 'without an email (discoverable)'),
    { user: payload.user, amr: claims.amr, acr: claims.acr });
  return { ...payload, claims };
};
</script></body></html>`;

let browser;
let page;
let cdp;
let authenticatorId;
const user = { email: email('passkey') };
const pageErrors = [];

async function failureScreenshot() {
  if (!page || !ARTIFACTS) return;
  mkdirSync(ARTIFACTS, { recursive: true });
  const path = join(ARTIFACTS, 'passkeys-failure.png');
  await page.screenshot({ path, fullPage: true }).catch(() => {});
  console.log(`     screenshot of the failure: ${path}`);
}

await steps('passkeys', [
  ['configuration is given', async () => {
    assert.ok(PAGE_ORIGIN && ARTIFACTS, 'PAGE_ORIGIN and ARTIFACTS_DIR must be set (tests/api/e2e.rs sets them)');
    assert.ok(existsSync(EXECUTABLE), `no Chromium at ${EXECUTABLE}`);
    // Screenshots of an earlier run must not pass for this one's.
    for (const name of ['passkeys.png', 'passkeys-failure.png']) rmSync(join(ARTIFACTS, name), { force: true });
  }],
  ['launch Chromium and serve the test page from the relying party origin', async () => {
    browser = await chromium.launch({ executablePath: EXECUTABLE, headless: true, args: FLAGS });
    page = await browser.newPage({ viewport: { width: 1000, height: 900 } });
    page.on('pageerror', (err) => pageErrors.push(String(err)));
    await page.route(`${PAGE_ORIGIN}/**`, async (route) => {
      const url = new URL(route.request().url());
      if (url.pathname === '/graphql') {
        // Same origin for the page; forwarded to authgraph as a reverse proxy would.
        const response = await route.fetch({ url: `${AUTHGRAPH_URL}/graphql` });
        return route.fulfill({ response });
      }
      if (url.pathname === '/') return route.fulfill({ contentType: 'text/html', body: PAGE });
      return route.fulfill({ status: 404, body: 'not found' });
    });
    await page.goto(`${PAGE_ORIGIN}/`);
    assert.equal(await page.evaluate(() => window.isSecureContext), true);
    assert.equal(
      await page.evaluate(() => typeof PublicKeyCredential.parseCreationOptionsFromJSON),
      'function',
      'this Chromium lacks the WebAuthn JSON helpers',
    );
  }],
  ['add a CDP virtual authenticator (ctap2, resident keys, user verification)', async () => {
    cdp = await page.context().newCDPSession(page);
    await cdp.send('WebAuthn.enable');
    ({ authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: {
        protocol: 'ctap2',
        transport: 'internal',
        hasResidentKey: true,
        hasUserVerification: true,
        isUserVerified: true,
        automaticPresenceSimulation: true,
      },
    }));
  }],
  ['register a user (outside the browser)', async () => {
    const result = await graphql(`${AUTHGRAPH_URL}/graphql`, REGISTER, {
      input: { email: user.email, password: PASSWORD },
    });
    const registered = data(result, 'register').register;
    user.id = registered.user.id;
    user.token = registered.accessToken;
  }],
  ['the page registers a passkey through GraphQL', async () => {
    const passkey = await page.evaluate(([token]) => window.addPasskey(token, 'Chromium'), [user.token]);
    assert.equal(passkey.name, 'Chromium');
    assert.equal(passkey.backedUp, false);
    const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
    assert.equal(credentials.length, 1);
    assert.equal(credentials[0].isResidentCredential, true, 'a discoverable credential');
    assert.equal(credentials[0].rpId, 'localhost');
  }],
  ['the page signs in with it by email: aal2, amr hwk + mfa', async () => {
    const result = await page.evaluate(([address]) => window.signInWithPasskey(address), [user.email]);
    assert.equal(result.user.id, user.id);
    assert.deepEqual(result.claims.amr, ['hwk', 'mfa']);
    assert.equal(result.claims.acr, 'aal2');
  }],
  ['the page signs in without an email (discoverable credential)', async () => {
    const result = await page.evaluate(() => window.signInWithPasskey(null));
    assert.equal(result.user.email, user.email);
    assert.equal(result.claims.acr, 'aal2');
    const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
    assert.ok(credentials[0].signCount >= 2, `signCount ${credentials[0].signCount}`);
  }],
  ['me { passkeys } shows it used', async () => {
    const result = await graphql(
      `${AUTHGRAPH_URL}/graphql`,
      '{ me { passkeys { name lastUsedAt } } }',
      {},
      { authorization: `Bearer ${user.token}` },
    );
    const [passkey] = data(result, 'me').me.passkeys;
    assert.equal(passkey.name, 'Chromium');
    assert.ok(passkey.lastUsedAt, 'lastUsedAt is set');
  }],
  ['keep a screenshot in ARTIFACTS_DIR/passkeys.png', async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'passkeys.png'), fullPage: true });
    console.log(`     screenshot: ${join(ARTIFACTS, 'passkeys.png')}`);
  }],
  ['the page raised no error', async () => {
    assert.deepEqual(pageErrors, []);
  }],
], failureScreenshot);

await browser.close();
process.exit(0);
