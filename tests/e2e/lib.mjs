// Shared by the e2e suites: where authgraph runs, a GraphQL client, and small checks.
// Each suite is a script run by `cargo test` (tests/api/e2e.rs) with AUTHGRAPH_URL set;
// it prints what it proves and exits non-zero on the first failure.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';

/** Base URL of the authgraph under test, such as `http://127.0.0.1:40123`. */
export const AUTHGRAPH_URL = (() => {
  const url = process.env.AUTHGRAPH_URL;
  if (!url) {
    console.error('AUTHGRAPH_URL is not set: run the suites through `cargo test e2e`');
    process.exit(2);
  }
  return url.replace(/\/+$/, '');
})();

/** The repository root (for schema.graphql). */
export const REPO = fileURLToPath(new URL('../../', import.meta.url));

export const PASSWORD = 'correct horse battery staple';

export const email = (tag) => `${tag}-${randomUUID().slice(0, 8)}@example.com`;

/** POSTs one GraphQL operation; answers `{ status, headers, body }`. */
export async function graphql(url, query, variables = {}, headers = {}) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json', ...headers },
    body: JSON.stringify({ query, variables }),
  });
  const text = await response.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = { unparsed: text };
  }
  return { status: response.status, headers: response.headers, body };
}

/** The `extensions.code` of the first error of a response body. */
export const code = (body) => body?.errors?.[0]?.extensions?.code;

/** Asserts the operation succeeded and answers its `data`. */
export function data(result, what) {
  assert.ok(!result.body.errors && result.body.data, `${what}: ${JSON.stringify(result.body)}`);
  return result.body.data;
}

/** Runs the named steps in order, printing each; the first failure ends the process with 1
 * (after `onFailure`, if given). */
export async function steps(suite, list, onFailure) {
  for (const [name, fn] of list) {
    try {
      await fn();
      console.log(`ok   ${suite}: ${name}`);
    } catch (err) {
      console.log(`FAIL ${suite}: ${name}`);
      console.log(err?.stack ?? String(err));
      await onFailure?.();
      process.exit(1);
    }
  }
}

export const REGISTER = `mutation Register($input: RegisterInput!) {
  register(input: $input) { accessToken tokenType user { id email displayName } }
}`;

export const LOGIN = `mutation Login($input: LoginInput!) {
  login(input: $input) { accessToken refreshToken user { id email } }
}`;

export { assert };
