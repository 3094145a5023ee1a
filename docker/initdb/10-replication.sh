#!/bin/bash
# Run once by the official image's entrypoint when it creates the cluster: lets the `replica`
# service of docker-compose.yml (profile replica) take a base backup and stream WAL as the
# superuser, from inside the Compose network, with its password. wal_level (replica) and
# max_wal_senders (10) already have the values streaming needs.
#
# A cluster made before this script existed lacks the line; add it once and reload:
#   docker compose exec db bash -c \
#     'echo "host replication postgres all scram-sha-256" >> "$PGDATA/pg_hba.conf"'
#   docker compose exec db psql -U postgres -c 'select pg_reload_conf()'
set -euo pipefail
echo "host replication postgres all scram-sha-256" >> "$PGDATA/pg_hba.conf"
