// Apollo Client 4 with automatic persisted queries (hashes by GET for queries), against a
// running Script Labs API. Run by tests/test_apollo.py: `node client.mjs URL apq|only`.
// Prints one JSON object: what each step answered, and every HTTP request the client made.
import { createHash } from "node:crypto";
import { ApolloClient, HttpLink, InMemoryCache, gql } from "@apollo/client";
import { PersistedQueryLink } from "@apollo/client/link/persisted-queries";

const [url, mode] = process.argv.slice(2);
const requests = [];

// the wire, as the client used it: method, whether the document went along, the hash
async function recordingFetch(input, init) {
  const target = new URL(typeof input === "string" ? input : input.url);
  const method = init?.method ?? "GET";
  let body = {};
  if (method === "GET") {
    for (const [key, value] of target.searchParams) {
      body[key] = key === "variables" || key === "extensions" ? JSON.parse(value) : value;
    }
  } else {
    body = JSON.parse(init.body);
  }
  const response = await fetch(input, init);
  const text = await response.clone().text();
  requests.push({
    method,
    operationName: body.operationName ?? null,
    hasQuery: typeof body.query === "string",
    sha256Hash: body.extensions?.persistedQuery?.sha256Hash ?? null,
    status: response.status,
    code: JSON.parse(text).errors?.[0]?.extensions?.code ?? null,
  });
  return response;
}

function client(token) {
  const persisted = new PersistedQueryLink({
    sha256: (text) => createHash("sha256").update(text).digest("hex"),
    useGETForHashedQueries: true,
  });
  const http = new HttpLink({
    uri: url,
    fetch: recordingFetch,
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });
  return new ApolloClient({ link: persisted.concat(http), cache: new InMemoryCache() });
}

function failure(error) {
  return { name: error.name, codes: (error.errors ?? []).map((e) => e.extensions?.code) };
}

async function attempt(run) {
  try {
    const result = await run();
    return result.error ? { error: failure(result.error) } : { data: result.data };
  } catch (error) {
    return { error: failure(error) };
  }
}

const SIGN_UP = gql`
  mutation SignUp($email: String!, $password: String!) {
    signUp(email: $email, password: $password) { accessToken user { email } }
  }
`;
const CREATE = gql`
  mutation Create($input: CreateLabInput!) { createLab(input: $input) { id title } }
`;
const LABS = gql`
  query Labs($first: Int) { labs(first: $first) { totalCount nodes { title author } } }
`;
const ME = gql`
  query Me {
    me {
      id
      email
    }
  }
`;
const UNREGISTERED = gql`
  query NotRegistered { me { id } }
`;

const out = { requests };
if (mode === "apq") {
  const email = `apollo-${Date.now()}-${Math.random().toString(36).slice(2)}@example.com`;
  const signUp = await attempt(() =>
    client().mutate({ mutation: SIGN_UP, variables: { email, password: "correct horse battery" } }),
  );
  out.signUp = signUp;
  const token = signUp.data.signUp.accessToken;
  out.token = token;
  const user = client(token);
  out.create = await attempt(() =>
    user.mutate({ mutation: CREATE, variables: { input: { title: "Dune", author: "Frank Herbert" } } }),
  );
  out.first = await attempt(() => user.query({ query: LABS, variables: { first: 5 }, fetchPolicy: "network-only" }));
  // a new client: nothing cached on this side, the hash alone goes to the server
  out.second = await attempt(() =>
    client(token).query({ query: LABS, variables: { first: 5 }, fetchPolicy: "network-only" }),
  );
} else {
  out.registered = await attempt(() => client().query({ query: ME, fetchPolicy: "network-only" }));
  out.unregistered = await attempt(() => client().query({ query: UNREGISTERED, fetchPolicy: "network-only" }));
}
process.stdout.write(JSON.stringify(out) + "\n");
