"""The GraphQL face: Strawberry types, resolvers and the extensions around each operation."""
