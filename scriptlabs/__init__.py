"""Script Labs: a GraphQL API over PostgreSQL for a personal catalogue of labs."""

__version__ = "0.1.0"
