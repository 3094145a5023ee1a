# PostgreSQL for docker-compose.yml: the official image plus the rum extension.
#
# db/014_search.sql ranks search matches with a RUM index when the extension is installed
# (about 4 ms for the best ten of thousands of matches) and falls back to GIN and ts_rank
# without it (hundreds of ms for a common word at a million labs). The official image already
# has the PostgreSQL (PGDG) apt repository configured, so the package is one install away.
FROM postgres:16-bookworm
RUN apt-get update \
    && apt-get install -y --no-install-recommends "postgresql-${PG_MAJOR}-rum" \
    && rm -rf /var/lib/apt/lists/*
# Allows the optional streaming replica of docker-compose.yml (profile replica) to connect.
COPY initdb/10-replication.sh /docker-entrypoint-initdb.d/10-replication.sh
