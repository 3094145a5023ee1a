# Script Labs API image.
#
#   docker build -t scriptlabs .
#   docker compose up          (PostgreSQL, migrations and the API: see docker-compose.yml)
#
# The image runs `scriptlabs serve --host 0.0.0.0` on port 8000 as an unprivileged user. It holds
# no PostgreSQL server: set DATABASE_URL (and run `scriptlabs db migrate` once with
# DATABASE_ADMIN_URL) before serving.

# 1. The GraphiQL files, fetched with npm and checked against the pins in the script.
FROM node:20-bookworm-slim AS graphiql
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY scripts/fetch_graphiql.py scripts/
RUN python3 scripts/fetch_graphiql.py --dest /graphiql

# 2. The package and its dependencies, in a virtual environment the last stage copies whole.
FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/scriptlabs
WORKDIR /src
# dependencies first: this layer is rebuilt only when pyproject.toml changes
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && /opt/scriptlabs/bin/pip install -r /tmp/requirements.txt
COPY README.md ./
COPY db/ db/
COPY scriptlabs/ scriptlabs/
COPY --from=graphiql /graphiql/ scriptlabs/static/graphiql/
# The static files are git-ignored, so a wheel build may leave them out: copy them next to the
# installed package whatever the build backend did.
RUN /opt/scriptlabs/bin/pip install --no-deps . \
    && package="$(/opt/scriptlabs/bin/python -I -c 'import importlib.util as u; print(u.find_spec("scriptlabs").submodule_search_locations[0])')" \
    && mkdir -p "$package/static/graphiql" \
    && cp scriptlabs/static/graphiql/* "$package/static/graphiql/" \
    && /opt/scriptlabs/bin/python -I -c 'import sys, scriptlabs.graphiql as g; sys.exit(not g.assets_present())'

# 3. The runtime image.
FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="Script Labs" \
      org.opencontainers.image.description="GraphQL API over PostgreSQL for a personal catalogue of labs"
ENV PATH=/opt/scriptlabs/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SCRIPTLABS_DATA_DIR=/var/lib/scriptlabs
RUN groupadd --system --gid 10001 scriptlabs \
    && useradd --system --uid 10001 --gid scriptlabs --home-dir /var/lib/scriptlabs \
        --create-home --shell /usr/sbin/nologin scriptlabs
COPY --from=build /opt/scriptlabs /opt/scriptlabs
USER scriptlabs
WORKDIR /var/lib/scriptlabs
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=4)"]
CMD ["scriptlabs", "serve", "--host", "0.0.0.0", "--port", "8000"]
