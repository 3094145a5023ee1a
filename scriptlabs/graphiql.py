"""The GraphiQL explorer page, served with its own scripts and styles (no CDN).

Strawberry's built-in page loads GraphiQL from a CDN; the contract wants it to work offline, so
the app serves this page instead for `GET /graphql` with `Accept: text/html`, and mounts
`GRAPHIQL_ASSETS_DIR` at `ASSETS_URL_PATH`. The files are pinned and fetched at set-up time by
`scripts/fetch_graphiql.py` (GraphiQL 3 and React 18, UMD builds).
"""

from __future__ import annotations

import json
from pathlib import Path

GRAPHIQL_ASSETS_DIR: Path = Path(__file__).resolve().parent / "static" / "graphiql"
"""Folder holding the GraphiQL files; git-ignored, filled by `scripts/fetch_graphiql.py`."""

ASSETS_URL_PATH = "/graphiql"
"""Where the app mounts `GRAPHIQL_ASSETS_DIR` (a path from the site root)."""

ASSET_FILES: tuple[str, ...] = (
    "react.production.min.js",
    "react-dom.production.min.js",
    "graphiql.min.js",
    "graphiql.min.css",
)

DEFAULT_QUERY = """\
# Welcome to Script Labs.
#
# 1. Run SignUp or SignIn (play button).
# 2. Put its accessToken in Headers:
#    {"Authorization": "Bearer <token>"}
# 3. Run MyLabs, AddLab or LabEvents.

mutation SignUp {
  signUp(
    email: "me@example.com"
    password: "a long passphrase"
  ) {
    accessToken
    expiresAt
    user { id email }
  }
}

mutation SignIn {
  signIn(
    email: "me@example.com"
    password: "a long passphrase"
  ) {
    accessToken
    refreshToken
  }
}

query MyLabs {
  labs(
    first: 10
    orderBy: [{field: CREATED_AT, direction: DESC}]
  ) {
    totalCount
    nodes { id title author category readingStatus rating }
    pageInfo { hasNextPage endCursor }
  }
}

mutation AddLab {
  createLab(
    input: {title: "Dune", author: "Frank Herbert", rating: 5}
  ) {
    id title createdAt
  }
}

subscription LabEvents {
  labEvents { type id lab { title } }
}
"""

_PAGE = """\
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>Script Labs · GraphiQL</title>
<link rel="stylesheet" href="{assets}/graphiql.min.css">
<style>
  html, body {{ height: 100%; margin: 0; }}
  #graphiql {{ height: 100vh; }}
  #graphiql > p {{ font-family: system-ui, sans-serif; padding: 1rem 2rem; }}
</style>
</head>
<body>
<div id="graphiql"><p>Loading GraphiQL…</p></div>
<script src="{assets}/react.production.min.js"></script>
<script src="{assets}/react-dom.production.min.js"></script>
<script src="{assets}/graphiql.min.js"></script>
<script>
(function () {{
  var root = document.getElementById("graphiql");
  if (typeof GraphiQL === "undefined" || typeof ReactDOM === "undefined") {{
    root.innerHTML = "<p>The GraphiQL files are missing on this server. " +
      "Fetch them with <code>python3 scripts/fetch_graphiql.py</code> " +
      "(or <code>./dev.sh setup</code>) and restart it.</p>";
    return;
  }}
  var endpoint = new URL({endpoint}, window.location.href);
  var socket = new URL(endpoint.href);
  socket.protocol = endpoint.protocol === "https:" ? "wss:" : "ws:";
  // The Headers tab is sent with every request, and as the connection_init payload of
  // subscriptions: {{"Authorization": "Bearer <accessToken>"}} works for both.
  var fetcher = GraphiQL.createFetcher({{url: endpoint.href, subscriptionUrl: socket.href}});
  ReactDOM.createRoot(root).render(React.createElement(GraphiQL, {{
    fetcher: fetcher,
    defaultQuery: {default_query},
    defaultHeaders: "{{}}",
    shouldPersistHeaders: true,
    isHeadersEditorEnabled: true,
    defaultEditorToolsVisibility: "headers"
  }}));
}})();
</script>
</body>
</html>
"""


def _js_literal(value: str) -> str:
    """A JavaScript string literal that is also safe inside an HTML <script> element."""
    return (
        json.dumps(value)
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def graphiql_html(endpoint: str = "/graphql") -> str:
    """The full GraphiQL page, talking to `endpoint` (HTTP, and WebSocket for subscriptions)."""
    return _PAGE.format(
        assets=ASSETS_URL_PATH,
        endpoint=_js_literal(endpoint),
        default_query=_js_literal(DEFAULT_QUERY),
    )


def assets_present() -> bool:
    """Whether every file the page loads is in `GRAPHIQL_ASSETS_DIR`."""
    return all((GRAPHIQL_ASSETS_DIR / name).is_file() for name in ASSET_FILES)
