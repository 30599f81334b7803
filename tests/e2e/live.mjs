// Live session events with the `graphql-ws` client, as an app would use them, across two
// replicas on one database: AUTHGRAPH_URL is replica A, AUTHGRAPH_REPLICA_URL replica B.
// Sign in twice, subscribe on session 1 through replica B, revoke session 1 from session 2
// through replica A: the socket hears SESSION_REVOKED and is closed with 4403.

import assert from 'node:assert/strict';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

import { AUTHGRAPH_URL, PASSWORD, data, email, graphql, steps } from './lib.mjs';

const REPLICA_URL = (process.env.AUTHGRAPH_REPLICA_URL ?? AUTHGRAPH_URL).replace(/\/+$/, '');
const A = `${AUTHGRAPH_URL}/graphql`;
const B = `${REPLICA_URL}/graphql`;
const EVENTS = 'subscription { sessionEvents { type sessionId at userAgent } }';
const WAIT_MS = 10_000;

const sid = (token) => JSON.parse(Buffer.from(token.split('.')[1], 'base64url')).sid;
const wsUrl = (http) => http.replace(/^http/, 'ws');

function within(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), WAIT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A graphql-ws client signed in with `token`, running `query`; events and errors queue up. */
function live(url, token, query = EVENTS) {
  const queue = [];
  let wake = () => {};
  const push = (item) => {
    queue.push(item);
    wake();
  };
  let closedWith;
  const closed = new Promise((resolve) => {
    closedWith = resolve;
  });
  const client = createClient({
    url: wsUrl(url),
    webSocketImpl: WebSocket,
    lazy: false,
    retryAttempts: 0,
    connectionParams: { Authorization: `Bearer ${token}` },
    on: { closed: (event) => closedWith(event.code) },
  });
  client.subscribe(
    { query },
    {
      next: (result) => push({ result }),
      error: (error) => push({ error }),
      complete: () => {},
    },
  );
  return {
    async next(what) {
      while (queue.length === 0) {
        await within(new Promise((resolve) => (wake = resolve)), what);
      }
      return queue.shift();
    },
    closed: () => within(closed, 'the socket to close'),
    dispose: () => client.dispose(),
  };
}

async function signIn(url, address, userAgent) {
  const result = await graphql(
    url,
    'mutation($i: LoginInput!) { login(input: $i) { accessToken } }',
    { i: { email: address, password: PASSWORD } },
    { 'user-agent': userAgent },
  );
  return data(result, 'login').login.accessToken;
}

const address = email('live-e2e');
let first;
let second;
let socket;

await steps('live', [
  [
    'sign in twice (session 1 on replica A, session 2 on replica B)',
    async () => {
      const registered = await graphql(
        A,
        'mutation($i: RegisterInput!) { register(input: $i) { accessToken } }',
        { i: { email: address, password: PASSWORD } },
      );
      first = data(registered, 'register').register.accessToken;
      second = await signIn(B, address, 'e2e-device-2');
      assert.notEqual(sid(first), sid(second));
    },
  ],
  [
    'session 1 subscribes through replica B and hears a new sign-in made on replica A',
    async () => {
      socket = live(B, first);
      // Signing in again until the event arrives: the subscription starts asynchronously.
      for (let attempt = 0; ; attempt += 1) {
        const third = await signIn(A, address, 'e2e-device-3');
        const heard = await Promise.race([
          socket.next('NEW_SIGN_IN'),
          new Promise((resolve) => setTimeout(() => resolve(null), 1000)),
        ]);
        if (heard) {
          assert.ok(heard.result, JSON.stringify(heard));
          const event = heard.result.data.sessionEvents;
          assert.equal(event.type, 'NEW_SIGN_IN');
          assert.ok(event.sessionId, JSON.stringify(event));
          assert.equal(event.userAgent, 'e2e-device-3');
          if (attempt === 0) assert.equal(event.sessionId, sid(third));
          break;
        }
        assert.ok(attempt < 10, 'no NEW_SIGN_IN reached the socket');
      }
    },
  ],
  [
    'session 2 revokes session 1 through replica A: SESSION_REVOKED, then close 4403',
    async () => {
      const revoked = await graphql(
        A,
        'mutation($id: ID!) { revokeSession(id: $id) }',
        { id: sid(first) },
        { authorization: `Bearer ${second}` },
      );
      assert.equal(data(revoked, 'revokeSession').revokeSession, true);
      let event;
      do {
        const heard = await socket.next('SESSION_REVOKED');
        assert.ok(heard.result, JSON.stringify(heard));
        event = heard.result.data.sessionEvents;
      } while (event.type !== 'SESSION_REVOKED');
      assert.equal(event.sessionId, sid(first));
      assert.equal(await socket.closed(), 4403);
      socket.dispose();
    },
  ],
  [
    'the revoked token cannot reconnect (4403); a query over the socket is refused',
    async () => {
      const again = live(B, first);
      assert.equal(await again.closed(), 4403);
      again.dispose();
      const query = live(A, second, '{ me { id } }');
      const answer = await query.next('the refusal');
      assert.ok(Array.isArray(answer.error), JSON.stringify(answer));
      assert.equal(answer.error[0].extensions.code, 'GRAPHQL_VALIDATION_FAILED');
      query.dispose();
    },
  ],
]);
