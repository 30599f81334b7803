// A small second subgraph, as a team composing authgraph would have: `orders` extends
// authgraph's `User` entity by its key and points back to it from `Order.buyer`.
// Orders are derived from the user id, so the subgraph needs no storage.

import { ApolloServer } from '@apollo/server';
import { ApolloServerPluginInlineTraceDisabled } from '@apollo/server/plugin/disabled';
import { startStandaloneServer } from '@apollo/server/standalone';
import { buildSubgraphSchema } from '@apollo/subgraph';
import { parse } from 'graphql';

export const ORDERS_SDL = `
extend schema @link(url: "https://specs.apollo.dev/federation/v2.5", import: ["@key"])

type Order @key(fields: "id") {
  id: ID!
  total: Int!
  "Resolved by authgraph through _entities."
  buyer: User!
}

type User @key(fields: "id") {
  id: ID!
  orders: [Order!]!
}

type Query {
  "An order by id; ids read order-<user id>-<n>."
  order(id: ID!): Order
}
`;

const orderOf = (id) => {
  const match = /^order-(.+)-(\d+)$/.exec(id);
  return match ? { id, total: 100 * Number(match[2]), buyer: { __typename: 'User', id: match[1] } } : null;
};

const resolvers = {
  Query: { order: (_, { id }) => orderOf(id) },
  Order: { __resolveReference: ({ id }) => orderOf(id) },
  User: {
    __resolveReference: ({ id }) => ({ id }),
    orders: ({ id }) => [1, 2].map((n) => orderOf(`order-${id}-${n}`)),
  },
};

/** Starts the subgraph on a free port; answers its URL and a stop function. */
export async function startOrders() {
  const server = new ApolloServer({
    schema: buildSubgraphSchema({ typeDefs: parse(ORDERS_SDL), resolvers }),
    plugins: [ApolloServerPluginInlineTraceDisabled()],
  });
  const { url } = await startStandaloneServer(server, { listen: { host: '127.0.0.1', port: 0 } });
  return { url, stop: () => server.stop() };
}
