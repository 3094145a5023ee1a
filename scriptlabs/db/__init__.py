"""Database access: the connection pool, migrations and the embedded development cluster."""
