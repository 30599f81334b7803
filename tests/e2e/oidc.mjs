// Social sign-in against a real OpenID Connect provider: the `oidc-provider` package on
// 127.0.0.1 (OIDC_PORT) with a test client and its development login and consent pages,
// driven without a browser: startOAuth -> follow the provider's redirects with a cookie
// jar, filling its login and consent forms -> the callback's code and state ->
// completeOAuth -> tokens that work on `me`.
//
// Env: AUTHGRAPH_URL, OIDC_PORT, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, OIDC_REDIRECT_URI,
// OIDC_PROVIDER_ID (the id authgraph knows this provider by).

import { createHash, randomBytes } from 'node:crypto';

import Provider from 'oidc-provider';

import { AUTHGRAPH_URL, assert, code, data, email, graphql, steps } from './lib.mjs';

const GRAPHQL = `${AUTHGRAPH_URL}/graphql`;
const PORT = Number(process.env.OIDC_PORT);
const ISSUER = `http://127.0.0.1:${PORT}`;
const CLIENT_ID = process.env.OIDC_CLIENT_ID;
const CLIENT_SECRET = process.env.OIDC_CLIENT_SECRET;
const REDIRECT_URI = process.env.OIDC_REDIRECT_URI;
const PROVIDER_ID = process.env.OIDC_PROVIDER_ID;

const START = `mutation($p: String!, $r: String!, $c: String!) {
  startOAuth(provider: $p, redirectUri: $r, codeChallenge: $c) { authorizationUrl }
}`;
const COMPLETE = `mutation($code: String!, $state: String!, $v: String!) {
  completeOAuth(code: $code, state: $state, codeVerifier: $v) {
    accessToken refreshToken user { id email emailVerified identities { provider email } }
  }
}`;

const b64url = (buf) => buf.toString('base64url');

/** A client's own PKCE pair. */
function pkce() {
  const verifier = b64url(randomBytes(32));
  return { verifier, challenge: b64url(createHash('sha256').update(verifier).digest()) };
}

/** Cookies per origin, as a browser would keep them for the provider. */
class CookieJar {
  #cookies = new Map();

  store(response) {
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attributes] = line.split(';');
      const at = pair.indexOf('=');
      const name = pair.slice(0, at).trim();
      const value = pair.slice(at + 1).trim();
      const expired = attributes.some((a) => /^\s*max-age=0\s*$/i.test(a)) || value === '';
      if (expired) this.#cookies.delete(name);
      else this.#cookies.set(name, value);
    }
  }

  header() {
    return [...this.#cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }
}

/** Signs `login` in at the provider starting from `authorizationUrl`; answers the code and
 * state of the redirect to REDIRECT_URI, and which pages were seen. */
async function browse(authorizationUrl, login) {
  const jar = new CookieJar();
  const seen = [];
  let request = { url: authorizationUrl, method: 'GET' };
  for (let hop = 0; hop < 20; hop += 1) {
    const response = await fetch(request.url, {
      method: request.method,
      redirect: 'manual',
      headers: {
        cookie: jar.header(),
        ...(request.body ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
      },
      body: request.body,
    });
    jar.store(response);
    if (response.status >= 300 && response.status < 400) {
      const next = new URL(response.headers.get('location'), request.url);
      if (next.href.startsWith(REDIRECT_URI)) {
        const error = next.searchParams.get('error');
        assert.ok(!error, `the provider answered ${error}: ${next.searchParams.get('error_description')}`);
        return { code: next.searchParams.get('code'), state: next.searchParams.get('state'), seen };
      }
      request = { url: next.href, method: 'GET' };
      continue;
    }
    const html = await response.text();
    assert.equal(response.status, 200, `provider page ${request.url}: ${html.slice(0, 300)}`);
    const action = html.match(/<form[^>]*action="([^"]+)"/)?.[1];
    const prompt = html.match(/name="prompt" value="([^"]+)"/)?.[1];
    assert.ok(action && prompt, `no interaction form at ${request.url}: ${html.slice(0, 300)}`);
    seen.push(prompt);
    const form = new URLSearchParams({ prompt });
    if (prompt === 'login') {
      form.set('login', login);
      form.set('password', 'any password: devInteractions accept all');
    }
    request = { url: new URL(action.replaceAll('&amp;', '&'), request.url).href, method: 'POST', body: form.toString() };
  }
  throw new Error('too many redirects at the provider');
}

const provider = new Provider(ISSUER, {
  clients: [
    {
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      redirect_uris: [REDIRECT_URI],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  // Whoever signs in on the development login page: their login is their email.
  async findAccount(_ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: id, email_verified: true, name: 'E2E Person' };
      },
    };
  },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  features: { devInteractions: { enabled: true } },
  // Email claims reach only userinfo (the package's default): authgraph must ask it.
  conformIdTokenClaims: true,
});
provider.proxy = false;

const server = await new Promise((resolve) => {
  const s = provider.listen(PORT, '127.0.0.1', () => resolve(s));
});

const person = email('oidc-e2e');
let firstUserId;

await steps(
  'oidc',
  [
    [
      'the provider is listed',
      async () => {
        const list = data(await graphql(GRAPHQL, '{ oauthProviders { id name } }'), 'oauthProviders');
        assert.ok(list.oauthProviders.some((p) => p.id === PROVIDER_ID), JSON.stringify(list));
      },
    ],
    [
      'startOAuth -> login and consent at oidc-provider -> completeOAuth signs a new account in',
      async () => {
        const { challenge } = pkce();
        const started = data(
          await graphql(GRAPHQL, START, { p: PROVIDER_ID, r: REDIRECT_URI, c: challenge }),
          'startOAuth',
        );
        const url = new URL(started.startOAuth.authorizationUrl);
        assert.equal(url.origin, ISSUER);
        assert.equal(url.searchParams.get('code_challenge_method'), 'S256');
        const { code: authCode, state, seen } = await browse(url.href, person);
        assert.deepEqual(seen, ['login', 'consent']);
        // Someone holding only the callback URL (no verifier) gets nothing.
        const stolen = await graphql(GRAPHQL, COMPLETE, { code: authCode, state, v: pkce().verifier });
        assert.equal(code(stolen.body), 'INVALID_TOKEN', JSON.stringify(stolen.body));

        // The state is used up by that attempt: the real client starts again.
        const again = pkce();
        const restarted = data(
          await graphql(GRAPHQL, START, { p: PROVIDER_ID, r: REDIRECT_URI, c: again.challenge }),
          'startOAuth',
        );
        const second = await browse(restarted.startOAuth.authorizationUrl, person);
        const done = data(
          await graphql(GRAPHQL, COMPLETE, { code: second.code, state: second.state, v: again.verifier }),
          'completeOAuth',
        );
        const { user, accessToken, refreshToken } = done.completeOAuth;
        assert.ok(accessToken && refreshToken);
        assert.equal(user.email, person, 'trusted provider, verified email (from userinfo)');
        assert.equal(user.emailVerified, true);
        assert.deepEqual(user.identities.map((i) => i.provider), [PROVIDER_ID]);
        const claims = JSON.parse(Buffer.from(accessToken.split('.')[1], 'base64url'));
        assert.deepEqual(claims.amr, ['fed']);
        assert.equal(claims.acr, 'aal1');
        const me = data(
          await graphql(GRAPHQL, '{ me { id email } }', {}, { authorization: `Bearer ${accessToken}` }),
          'me',
        );
        assert.equal(me.me.id, user.id);
        firstUserId = user.id;
      },
    ],
    [
      'signing in again reaches the same account; a replayed callback does not',
      async () => {
        const { verifier, challenge } = pkce();
        const started = data(
          await graphql(GRAPHQL, START, { p: PROVIDER_ID, r: REDIRECT_URI, c: challenge }),
          'startOAuth',
        );
        const { code: authCode, state } = await browse(started.startOAuth.authorizationUrl, person);
        const done = data(
          await graphql(GRAPHQL, COMPLETE, { code: authCode, state, v: verifier }),
          'completeOAuth',
        );
        assert.equal(done.completeOAuth.user.id, firstUserId);
        const replay = await graphql(GRAPHQL, COMPLETE, { code: authCode, state, v: verifier });
        assert.equal(code(replay.body), 'INVALID_TOKEN', JSON.stringify(replay.body));
      },
    ],
  ],
  () => server.close(),
);

server.close();
process.exit(0);
