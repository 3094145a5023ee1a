// PostGraphile v4 over the same database, a reference for bench/run (--peers v4).
//
// Library mode, default pool, WORKERS processes (node:cluster; default one), with
// postgraphile-plugin-connection-filter (v4's `filter` argument) when it is installed; the bearer token is verified here (HS256,
// audience "authenticated", the API's own secret) and its claims handed to PostgreSQL the way
// the API hands them, as `role` and `request.jwt.claims` (PostGraphile sets them with
// set_config(..., true) in one statement, inside its per-request transaction), so the same
// Row Level Security policies apply.
//
// Environment: DATABASE_URL (the authenticator's DSN), JWT_SECRET, PORT, WORKERS. NODE_PATH must
// reach the folder where `npm install postgraphile@4 postgraphile-plugin-connection-filter@2` was
// run (bench/run does both).

"use strict";

const cluster = require("cluster");
const http = require("http");
const jwt = require("jsonwebtoken");
const { postgraphile } = require("postgraphile");

const secret = process.env.JWT_SECRET;
const port = Number(process.env.PORT || 5000);
const workers = Number(process.env.WORKERS || 1);

function filterPlugins() {
  try {
    return [require("postgraphile-plugin-connection-filter")];
  } catch (e) {
    return [];
  }
}

function claimsOf(req) {
  const header = req.headers.authorization || "";
  if (!header.startsWith("Bearer ")) return null;
  return jwt.verify(header.slice(7), secret, {
    algorithms: ["HS256"],
    audience: "authenticated",
  });
}

function serve() {
  const handler = postgraphile(process.env.DATABASE_URL, "public", {
    graphqlRoute: "/graphql",
    appendPlugins: filterPlugins(),
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
}

if (workers > 1 && cluster.isPrimary) {
  for (let i = 0; i < workers; i++) cluster.fork();
  const stop = () => {
    for (const w of Object.values(cluster.workers)) w.process.kill("SIGTERM");
    setTimeout(() => process.exit(0), 5000).unref();
    cluster.on("exit", () => {
      if (Object.keys(cluster.workers).length === 0) process.exit(0);
    });
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
} else {
  serve();
}
