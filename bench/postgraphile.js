// PostGraphile v4 over the same database, as a reference for the `postgraphile` scenario.
//
// One Node process, library mode, default pool; the bearer token is verified here (HS256,
// audience "authenticated", the API's own secret) and its claims handed to PostgreSQL the way
// the API hands them, as `role` and `request.jwt.claims` (PostGraphile sets them with
// set_config(..., true) in one statement, inside its per-request transaction), so the same
// Row Level Security policies apply.
//
// Environment: DATABASE_URL (the authenticator's DSN), JWT_SECRET, PORT. NODE_PATH must reach
// the folder where `npm install postgraphile@4` was run (bench/run does both).

"use strict";

const http = require("http");
const jwt = require("jsonwebtoken");
const { postgraphile } = require("postgraphile");

const secret = process.env.JWT_SECRET;
const port = Number(process.env.PORT || 5000);

function claimsOf(req) {
  const header = req.headers.authorization || "";
  if (!header.startsWith("Bearer ")) return null;
  return jwt.verify(header.slice(7), secret, {
    algorithms: ["HS256"],
    audience: "authenticated",
  });
}

const handler = postgraphile(process.env.DATABASE_URL, "public", {
  graphqlRoute: "/graphql",
  disableQueryLog: true,
  retryOnInitFail: false,
  setofFunctionsContainNulls: false,
  pgSettings: async (req) => {
    const claims = claimsOf(req);
    if (claims === null) return { role: "anon" };
    return { role: claims.role, "request.jwt.claims": JSON.stringify(claims) };
  },
});

http.createServer(handler).listen(port, "127.0.0.1", () => {
  process.stderr.write(`postgraphile listening on http://127.0.0.1:${port}/graphql\n`);
});
