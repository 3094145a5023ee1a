"""Resolvers: arguments and selection in, one domain call, types out."""
