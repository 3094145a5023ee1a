"""HTTP transport: GraphQL over HTTP, bearer tokens, client addresses."""
