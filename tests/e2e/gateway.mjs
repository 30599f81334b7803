// authgraph behind real federation gateways:
// 1. compose schema.graphql with the `orders` subgraph (@apollo/composition; any
//    composition error fails the suite);
// 2. Apollo Gateway on Apollo Server in front of both: register, log in, `me` with the
//    orders of the other subgraph, entities resolved by authgraph, our error codes reaching
//    the client, and the refresh cookie passed through both ways;
// 3. Hive gateway (its runtime with the JWT plugin) verifying our access tokens from
//    /.well-known/jwks.json alone: accepted when ours, refused when forged or tampered with,
//    even for operations that never reach authgraph; and telling AAL1 from AAL2 (`acr`,
//    `amr`, `auth_time`) from the token alone, after a password and after `verifyMfa`.

import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { composeServices } from '@apollo/composition';
import { ApolloGateway, RemoteGraphQLDataSource } from '@apollo/gateway';
import { ApolloServer } from '@apollo/server';
import { startStandaloneServer } from '@apollo/server/standalone';
import { createGatewayRuntime } from '@graphql-hive/gateway-runtime';
import {
  createRemoteJwksSigningKeyProvider,
  extractFromHeader,
  useJWT,
} from '@graphql-mesh/plugin-jwt-auth';
import { parse } from 'graphql';
import { SignJWT, decodeJwt, decodeProtectedHeader, generateKeyPair } from 'jose';
import {
  AUTHGRAPH_URL,
  LOGIN,
  PASSWORD,
  REGISTER,
  REPO,
  assert,
  code,
  data,
  email,
  graphql,
  steps,
} from './lib.mjs';
import { ORDERS_SDL, startOrders } from './orders.mjs';

/** The headers a gateway forwards to authgraph (README, "For gateways"). */
const FORWARDED = ['authorization', 'cookie', 'x-token-delivery'];

const ME_WITH_ORDERS = '{ me { id displayName orders { id } } }';
const ORDER_WITH_BUYER = 'query($id: ID!) { order(id: $id) { id total buyer { id displayName } } }';
const ORDER_ONLY = 'query($id: ID!) { order(id: $id) { id total } }';

const stops = [];
/** The assurance claims Hive gateway read from each verified token, in order. */
const hiveSeen = [];
let supergraphSdl;
let apolloUrl;
let hiveUrl;
const user = { email: email('gateway'), displayName: 'Ada via gateway' };

/** Apollo Gateway's data source: forwards the auth headers, collects `Set-Cookie`. */
class AuthgraphDataSource extends RemoteGraphQLDataSource {
  willSendRequest({ request, context }) {
    for (const name of FORWARDED) {
      if (context.headers?.[name]) request.http.headers.set(name, context.headers[name]);
    }
  }

  didReceiveResponse({ response, context }) {
    const cookie = response.http.headers.get('set-cookie');
    if (cookie && context.setCookies) context.setCookies.push(cookie);
    return response;
  }
}

/** Apollo Server plugin: hands the subgraphs' `Set-Cookie` to the client. */
const passSetCookie = {
  async requestDidStart() {
    return {
      async willSendResponse({ contextValue, response }) {
        // Apollo Server's HeaderMap holds one value per name; authgraph sets one cookie.
        const [cookie] = contextValue.setCookies ?? [];
        if (cookie) response.http.headers.set('set-cookie', cookie);
      },
    };
  },
};

async function startApollo() {
  const gateway = new ApolloGateway({
    supergraphSdl,
    buildService: ({ url }) => new AuthgraphDataSource({ url }),
  });
  const server = new ApolloServer({ gateway, plugins: [passSetCookie] });
  const { url } = await startStandaloneServer(server, {
    listen: { host: '127.0.0.1', port: 0 },
    context: async ({ req }) => ({
      headers: Object.fromEntries(FORWARDED.map((name) => [name, req.headers[name]])),
      setCookies: [],
    }),
  });
  stops.push(() => server.stop());
  return url;
}

async function startHive() {
  const gateway = createGatewayRuntime({
    supergraph: supergraphSdl,
    logging: process.env.HIVE_LOG ?? false,
    plugins: () => [
      useJWT({
        // The JWKS URL is all the gateway knows of our keys.
        signingKeyProviders: [
          createRemoteJwksSigningKeyProvider({ jwksUri: `${AUTHGRAPH_URL}/.well-known/jwks.json` }),
        ],
        tokenLookupLocations: [extractFromHeader({ name: 'authorization', prefix: 'Bearer' })],
        tokenVerification: { issuer: 'authgraph', audience: 'authgraph', algorithms: ['ES256'] },
        // Anonymous operations (register, login) pass; a bad token never reaches a subgraph.
        reject: { missingToken: false, invalidToken: true },
      }),
      // What a gateway enforcing AAL2 would look at: the verified payload, nothing else.
      {
        onExecute({ args }) {
          const payload = args.contextValue?.jwt?.payload;
          if (payload) hiveSeen.push({ acr: payload.acr, amr: payload.amr, authTime: payload.auth_time });
        },
      },
    ],
    propagateHeaders: {
      fromClientToSubgraphs: ({ request }) =>
        Object.fromEntries(FORWARDED.map((name) => [name, request.headers.get(name)])),
      fromSubgraphsToClient: ({ response }) => ({ 'set-cookie': response.headers.getSetCookie() }),
    },
  });
  const server = createServer(gateway);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  stops.push(
    () => new Promise((resolve) => server.close(resolve)),
    () => gateway.dispose?.(),
  );
  return `http://127.0.0.1:${server.address().port}/graphql`;
}

const bearer = (token) => ({ authorization: `Bearer ${token}` });

/** A token with our header and claims, signed by a key that is not ours. */
async function forge(token) {
  const header = decodeProtectedHeader(token);
  const claims = decodeJwt(token);
  const { privateKey } = await generateKeyPair('ES256');
  return new SignJWT(claims).setProtectedHeader(header).sign(privateKey);
}

/** Our token with its payload changed (role ADMIN) and the original signature kept. */
function tamper(token) {
  const [header, payload, signature] = token.split('.');
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
  const changed = Buffer.from(JSON.stringify({ ...claims, role: 'ADMIN' })).toString('base64url');
  return [header, changed, signature].join('.');
}

/** RFC 6238 (SHA-1, 6 digits, 30 s) as an authenticator app computes it. */
function totp(base32Secret, step) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  const key = [];
  for (const char of base32Secret.replace(/=+$/, '')) {
    value = (value << 5) | alphabet.indexOf(char);
    bits += 5;
    if (bits >= 8) {
      key.push((value >>> (bits - 8)) & 255);
      bits -= 8;
    }
  }
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = createHmac('sha1', Buffer.from(key)).update(counter).digest();
  const offset = mac[mac.length - 1] & 15;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000).padStart(6, '0');
}

/** The current 30-second step, a few seconds clear of its end (the next code is taken too). */
async function currentStep() {
  while (Date.now() / 1000 % 30 >= 27) await new Promise((resolve) => setTimeout(resolve, 500));
  return Math.floor(Date.now() / 1000 / 30);
}

function setCookie(result) {
  return result.headers.getSetCookie().find((c) => c.startsWith('refresh_token='));
}

let token;
let userId;

await steps('gateway', [
  ['compose schema.graphql with the orders subgraph', async () => {
    const orders = await startOrders();
    stops.push(orders.stop);
    const composed = composeServices([
      {
        name: 'authgraph',
        typeDefs: parse(readFileSync(`${REPO}/schema.graphql`, 'utf8')),
        url: `${AUTHGRAPH_URL}/graphql`,
      },
      { name: 'orders', typeDefs: parse(ORDERS_SDL), url: orders.url },
    ]);
    assert.ok(
      !composed.errors?.length,
      `composition failed:\n${(composed.errors ?? []).map((e) => e.message).join('\n')}`,
    );
    for (const hint of composed.hints ?? []) console.log(`     hint: ${hint.definition.code}: ${hint.message}`);
    supergraphSdl = composed.supergraphSdl;
    assert.match(supergraphSdl, /type User[^{]*@join__type\(graph: AUTHGRAPH, key: "id"\)/);
    assert.match(supergraphSdl, /orders: \[Order!\]! @join__field\(graph: ORDERS\)/);
  }],
  ['start Apollo Gateway and Hive gateway', async () => {
    apolloUrl = await startApollo();
    hiveUrl = await startHive();
  }],
  ['apollo: register and log in through the gateway', async () => {
    const registered = data(
      await graphql(apolloUrl, REGISTER, { input: { email: user.email, password: PASSWORD, displayName: user.displayName } }),
      'register',
    );
    userId = registered.register.user.id;
    const login = data(await graphql(apolloUrl, LOGIN, { input: { email: user.email, password: PASSWORD } }), 'login');
    assert.equal(login.login.user.id, userId);
    token = login.login.accessToken;
  }],
  ['apollo: me { id displayName orders { id } } spans both subgraphs', async () => {
    const { me } = data(await graphql(apolloUrl, ME_WITH_ORDERS, {}, bearer(token)), 'me');
    assert.equal(me.id, userId);
    assert.equal(me.displayName, user.displayName);
    assert.deepEqual(me.orders.map((o) => o.id), [`order-${userId}-1`, `order-${userId}-2`]);
  }],
  ['apollo: Order.buyer resolves through authgraph _entities with the token', async () => {
    const { order } = data(await graphql(apolloUrl, ORDER_WITH_BUYER, { id: `order-${userId}-2` }, bearer(token)), 'order');
    assert.deepEqual(order.buyer, { id: userId, displayName: user.displayName });
  }],
  ['apollo: UNAUTHENTICATED reaches the client (query and entity fetch)', async () => {
    const me = await graphql(apolloUrl, ME_WITH_ORDERS);
    assert.equal(code(me.body), 'UNAUTHENTICATED', JSON.stringify(me.body));
    const buyer = await graphql(apolloUrl, ORDER_WITH_BUYER, { id: `order-${userId}-1` });
    assert.equal(code(buyer.body), 'UNAUTHENTICATED', JSON.stringify(buyer.body));
    const broken = await graphql(apolloUrl, ME_WITH_ORDERS, {}, bearer('not.a.token'));
    assert.equal(code(broken.body), 'UNAUTHENTICATED', JSON.stringify(broken.body));
  }],
  ['apollo: FORBIDDEN on another user\'s email reaches the client (entity fetch)', async () => {
    const other = data(
      await graphql(apolloUrl, REGISTER, { input: { email: email('gateway-other'), password: PASSWORD } }),
      'register',
    ).register.user.id;
    const query = 'query($id: ID!) { order(id: $id) { id buyer { id email } } }';
    const result = await graphql(apolloUrl, query, { id: `order-${other}-1` }, bearer(token));
    assert.equal(code(result.body), 'FORBIDDEN', JSON.stringify(result.body));
    assert.equal(result.body.data?.order?.buyer?.id, other, JSON.stringify(result.body));
    assert.equal(result.body.data.order.buyer.email, null);
  }],
  ['apollo: BAD_USER_INPUT (with its field) reaches the client', async () => {
    const bad = await graphql(apolloUrl, REGISTER, { input: { email: 'not an email', password: PASSWORD } });
    assert.equal(code(bad.body), 'BAD_USER_INPUT', JSON.stringify(bad.body));
    assert.equal(bad.body.errors[0].extensions.field, 'email', JSON.stringify(bad.body));
  }],
  ['apollo: the refresh cookie comes back through the gateway and goes to refresh', async () => {
    const login = await graphql(apolloUrl, LOGIN, { input: { email: user.email, password: PASSWORD } }, {
      'x-token-delivery': 'cookie',
    });
    assert.equal(data(login, 'login').login.refreshToken, null);
    const cookie = setCookie(login);
    assert.ok(cookie, `no refresh cookie in ${JSON.stringify([...login.headers])}`);
    assert.match(cookie, /HttpOnly/i);
    const refreshed = await graphql(apolloUrl, 'mutation { refresh { accessToken user { id } } }', {}, {
      cookie: cookie.split(';')[0],
      'x-token-delivery': 'cookie',
    });
    assert.equal(data(refreshed, 'refresh').refresh.user.id, userId);
  }],
  ['hive: our token is verified from the JWKS alone (operation never reaches authgraph)', async () => {
    const result = await graphql(hiveUrl, ORDER_ONLY, { id: `order-${userId}-1` }, bearer(token));
    assert.equal(result.status, 200, JSON.stringify(result.body));
    assert.equal(data(result, 'order').order.total, 100);
  }],
  ['hive: me with orders through Hive gateway', async () => {
    const { me } = data(await graphql(hiveUrl, ME_WITH_ORDERS, {}, bearer(token)), 'me');
    assert.equal(me.id, userId);
    assert.equal(me.orders.length, 2);
  }],
  ['hive: a forged token (same kid and claims, another key) is refused', async () => {
    const forged = await forge(token);
    for (const query of [ORDER_ONLY, ME_WITH_ORDERS]) {
      const result = await graphql(hiveUrl, query, { id: `order-${userId}-1` }, bearer(forged));
      assert.ok(!result.body.data?.order && !result.body.data?.me, JSON.stringify(result.body));
      assert.ok(result.body.errors?.length, JSON.stringify(result.body));
      assert.equal(result.status, 401, JSON.stringify(result.body));
    }
  }],
  ['hive: a tampered token (payload changed, signature kept) is refused', async () => {
    const result = await graphql(hiveUrl, ORDER_ONLY, { id: `order-${userId}-1` }, bearer(tamper(token)));
    assert.equal(result.status, 401, JSON.stringify(result.body));
  }],
  ['hive: tells aal1 from aal2 from the token alone (password, then verifyMfa)', async () => {
    const mfaUser = { email: email('gateway-mfa') };
    const registered = data(
      await graphql(hiveUrl, REGISTER, { input: { email: mfaUser.email, password: PASSWORD } }),
      'register',
    );
    const passwordToken = registered.register.accessToken;
    const enrolled = data(
      await graphql(hiveUrl, 'mutation { enrollTotp { factorId secret } }', {}, bearer(passwordToken)),
      'enrollTotp',
    ).enrollTotp;
    const step = await currentStep();
    const codes = data(
      await graphql(
        hiveUrl,
        'mutation($id: ID!, $code: String!) { confirmTotp(factorId: $id, code: $code) }',
        { id: enrolled.factorId, code: totp(enrolled.secret, step) },
        bearer(passwordToken),
      ),
      'confirmTotp',
    ).confirmTotp;
    assert.equal(codes.length, 10);
    const login = await graphql(hiveUrl, LOGIN, { input: { email: mfaUser.email, password: PASSWORD } });
    assert.equal(code(login.body), 'MFA_REQUIRED', JSON.stringify(login.body));
    const { mfaToken, factors } = login.body.errors[0].extensions;
    assert.deepEqual(factors, ['TOTP', 'RECOVERY_CODE']);
    const verified = data(
      await graphql(
        hiveUrl,
        'mutation($token: String, $code: String!) { verifyMfa(mfaToken: $token, code: $code) { accessToken } }',
        { token: mfaToken, code: totp(enrolled.secret, step + 1) },
      ),
      'verifyMfa',
    );
    const aal2Token = verified.verifyMfa.accessToken;
    hiveSeen.length = 0;
    for (const token of [passwordToken, aal2Token]) {
      const result = await graphql(hiveUrl, ORDER_ONLY, { id: `order-${userId}-1` }, bearer(token));
      assert.equal(data(result, 'order').order.total, 100);
    }
    assert.deepEqual(hiveSeen.map((s) => [s.acr, s.amr]), [
      ['aal1', ['pwd']],
      ['aal2', ['pwd', 'otp', 'mfa']],
    ]);
    assert.ok(hiveSeen.every((s) => Math.abs(s.authTime - Date.now() / 1000) < 120), JSON.stringify(hiveSeen));
  }],
  ['hive: anonymous login and cookie refresh pass, Set-Cookie comes back (propagateHeaders)', async () => {
    const login = await graphql(hiveUrl, LOGIN, { input: { email: user.email, password: PASSWORD } }, {
      'x-token-delivery': 'cookie',
    });
    assert.equal(data(login, 'login').login.user.id, userId);
    const cookie = setCookie(login);
    assert.ok(cookie, `no refresh cookie in ${JSON.stringify([...login.headers])}`);
    const refreshed = await graphql(hiveUrl, 'mutation { refresh { refreshToken user { id } } }', {}, {
      cookie: cookie.split(';')[0],
      'x-token-delivery': 'cookie',
    });
    assert.equal(data(refreshed, 'refresh').refresh.user.id, userId);
    assert.equal(refreshed.body.data.refresh.refreshToken, null);
    assert.ok(setCookie(refreshed), 'refresh through Hive set no new cookie');
    const anonymous = await graphql(hiveUrl, ME_WITH_ORDERS);
    assert.equal(code(anonymous.body), 'UNAUTHENTICATED', JSON.stringify(anonymous.body));
  }],
]);

for (const stop of stops.reverse()) await stop();
process.exit(0);
