#!/usr/bin/env bash
# Script Labs: set up, run and test on a Debian machine (or in CI) with one command.
#
#   ./dev.sh serve [scriptlabs serve options]   set up, then serve on http://127.0.0.1:8000/graphql
#   ./dev.sh test  [pytest options]             set up, then format/lint/type/schema checks and pytest
#   ./dev.sh setup                              only the set-up step (what both of the above do first)
#   ./dev.sh bench [options]                    set up, then the benchmarks
#
# Set-up installs only what is missing, so a second run is quick: PostgreSQL 15+ server binaries,
# python3-venv and npm through apt-get (as root, or with sudo), the virtual environment .venv with
# the package and its test tools (re-installed when pyproject.toml changes), and the GraphiQL files
# the API serves itself (pinned, checked by sha256). `test` also installs pgbouncer, which some of
# the tests run, and Apollo Client under tests/apollo (`npm ci`, when its lock file changed).
set -euo pipefail

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")"

readonly PG_MIN=15
readonly VENV=.venv
readonly STAMP="$VENV/.scriptlabs-pyproject.sha256"

say() { printf '==> %s\n' "$*" >&2; }
die() {
    printf 'dev.sh: error: %s\n' "$*" >&2
    exit 1
}

# --- system packages (apt-get) ------------------------------------------------------------------

apt_updated=0

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif [ -t 0 ]; then
        sudo "$@"
    else
        sudo -n "$@" # no terminal to ask for a password on
    fi
}

apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        die "missing: $*. This script installs with apt-get only; install them with your package manager"
    fi
    if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null 2>&1; then
        die "missing: $*. Run as root or install sudo, or install them yourself: apt-get install $*"
    fi
    local log
    log="$(mktemp)"
    if [ "$apt_updated" -eq 0 ]; then
        say "updating the apt package lists"
        if ! as_root apt-get update >"$log" 2>&1; then
            tail -n 30 "$log" >&2
            die "apt-get update failed"
        fi
        apt_updated=1
    fi
    if ! as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "$@" >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        die "apt-get install $* failed"
    fi
    rm -f "$log"
}

# --- PostgreSQL ---------------------------------------------------------------------------------

# Prints the bin folder of the newest PostgreSQL server >= PG_MIN (Debian's layout first, then
# PATH), or nothing.
find_pg_bindir() {
    local dir major best="" best_major=0
    for dir in /usr/lib/postgresql/*/bin; do
        if [ ! -x "$dir/postgres" ] || [ ! -x "$dir/initdb" ] || [ ! -x "$dir/pg_ctl" ]; then
            continue
        fi
        major="${dir#/usr/lib/postgresql/}"
        major="${major%/bin}"
        [[ "$major" =~ ^[0-9]+$ ]] || continue
        if ((major >= PG_MIN && major > best_major)); then
            best="$dir"
            best_major="$major"
        fi
    done
    if [ -z "$best" ] && command -v postgres >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
        major="$(postgres --version | sed -E 's/[^0-9]*([0-9]+).*/\1/')"
        if [[ "$major" =~ ^[0-9]+$ ]] && ((major >= PG_MIN)); then
            best="$(dirname "$(readlink -f "$(command -v postgres)")")"
        fi
    fi
    printf '%s' "$best"
}

pg_major() { "$1/postgres" --version | sed -E 's/[^0-9]*([0-9]+).*/\1/'; }

ensure_postgres() {
    local bindir major
    bindir="$(find_pg_bindir)"
    if [ -z "$bindir" ]; then
        say "installing the PostgreSQL server (apt: postgresql, version $PG_MIN or newer)"
        apt_install postgresql
        bindir="$(find_pg_bindir)"
        if [ -z "$bindir" ]; then
            die "this system's postgresql package is older than PostgreSQL $PG_MIN" \
                "(Debian 12 ships 15); install PostgreSQL $PG_MIN+ server binaries and retry"
        fi
        say "PostgreSQL $(pg_major "$bindir") server installed in $bindir"
    fi
    major="$(pg_major "$bindir")"
    # pg_stat_statements ships in the server package from PostgreSQL 10 on, in -contrib before
    if [ "$bindir" = "/usr/lib/postgresql/$major/bin" ] &&
        [ ! -f "/usr/share/postgresql/$major/extension/pg_stat_statements.control" ]; then
        say "installing PostgreSQL $major contrib modules (apt: postgresql-contrib)"
        apt_install postgresql-contrib
    fi
    # rum: the search index that returns matches in rank order (db/014_search.sql); without
    # it search works on a GIN index, slower on big catalogues. Debian packages it per major.
    if [ "$bindir" = "/usr/lib/postgresql/$major/bin" ] &&
        [ ! -f "/usr/share/postgresql/$major/extension/rum.control" ]; then
        say "installing the rum extension for PostgreSQL $major (apt: postgresql-$major-rum)"
        if ! (apt_install "postgresql-$major-rum"); then
            say "postgresql-$major-rum is not available: search will use a GIN index"
        fi
    fi
    # Debian keeps initdb, pg_ctl and postgres off PATH; the embedded database looks them up there
    case ":$PATH:" in
    *":$bindir:"*) ;;
    *) export PATH="$bindir:$PATH" ;;
    esac
}

# --- PgBouncer ----------------------------------------------------------------------------------

# For the tests only (tests/test_pgbouncer.py starts its own, in front of the test database, and
# fails in CI without it). Debian puts it in /usr/sbin, off an ordinary user's PATH, and starts
# a system service on port 6432 that nothing here uses: it is stopped and disabled again when
# this script installed it.
ensure_pgbouncer() {
    if command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ]; then
        return 0
    fi
    say "installing PgBouncer, for the tests behind a transaction pooler (apt: pgbouncer)"
    apt_install pgbouncer
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        as_root systemctl disable --now pgbouncer >/dev/null 2>&1 || true
    fi
}

# --- Python -------------------------------------------------------------------------------------

is_py311() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; }
py_version() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])'; }

find_python() {
    local candidate
    for candidate in ${PYTHON:-} python3 python3.13 python3.12 python3.11; do
        if command -v "$candidate" >/dev/null 2>&1 && is_py311 "$candidate"; then
            printf '%s' "$candidate"
            return 0
        fi
    done
    return 1
}

ensure_venv() {
    if [ -x "$VENV/bin/python" ]; then
        is_py311 "$VENV/bin/python" ||
            die "$VENV uses Python $(py_version "$VENV/bin/python"); Python 3.11+ is needed:" \
                "remove $VENV and run this again"
        return 0
    fi
    if ! command -v python3 >/dev/null 2>&1 && [ -z "${PYTHON:-}" ]; then
        say "installing Python 3 (apt: python3)"
        apt_install python3
    fi
    local python version created=0
    python="$(find_python)" || die "Python 3.11 or newer is needed (python3 here is" \
        "$(python3 --version 2>&1 || echo missing)); install it, or point PYTHON at one"
    version="$(py_version "$python")"
    [ -e "$VENV" ] || created=1
    say "creating $VENV with Python $version"
    if ! "$python" -m venv "$VENV" >/dev/null 2>&1; then
        # Debian splits venv/ensurepip into its own package
        [ "$created" -eq 1 ] && rm -rf "$VENV"
        local package="python3-venv"
        [ "$(py_version python3 2>/dev/null || true)" = "$version" ] || package="python$version-venv"
        say "installing $package (apt), needed to create $VENV"
        apt_install "$package"
        "$python" -m venv "$VENV" || die "could not create $VENV with $python"
    fi
}

ensure_install() {
    local want have=""
    want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
    [ -f "$STAMP" ] && have="$(cat "$STAMP")"
    if [ "$want" != "$have" ] || [ ! -x "$VENV/bin/scriptlabs" ]; then
        say "installing Script Labs and its test tools into $VENV (pip install -e '.[test]')"
        PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
            "$VENV/bin/python" -m pip install --quiet --editable '.[test]'
        printf '%s\n' "$want" >"$STAMP"
    fi
}

# --- GraphiQL files -----------------------------------------------------------------------------

ensure_graphiql() {
    "$VENV/bin/python" scripts/fetch_graphiql.py --check >/dev/null 2>&1 && return 0
    if ! command -v npm >/dev/null 2>&1; then
        say "installing npm (apt: npm), to fetch the GraphiQL files"
        apt_install npm
    fi
    say "fetching the GraphiQL files (npm pack, pinned versions)"
    "$VENV/bin/python" scripts/fetch_graphiql.py --quiet
}

# --- Apollo Client, which tests/test_apollo.py runs under Node ----------------------------------

readonly APOLLO_DIR=tests/apollo

ensure_apollo_client() {
    local want have="" stamp="$APOLLO_DIR/node_modules/.scriptlabs-lock.sha256"
    want="$(sha256sum "$APOLLO_DIR/package-lock.json" | cut -d' ' -f1)"
    [ -f "$stamp" ] && have="$(cat "$stamp")"
    if [ "$want" = "$have" ] && command -v node >/dev/null 2>&1; then
        return 0
    fi
    if ! command -v npm >/dev/null 2>&1; then
        say "installing npm (apt: npm), to run Apollo Client in the tests"
        apt_install npm
    fi
    say "installing Apollo Client for the tests (npm ci --prefix $APOLLO_DIR, from its lock file)"
    npm ci --prefix "$APOLLO_DIR" --no-audit --no-fund --loglevel=error
    printf '%s\n' "$want" >"$stamp"
}

# --- commands -----------------------------------------------------------------------------------

setup() {
    ensure_postgres
    ensure_venv
    ensure_install
    ensure_graphiql
}

run() {
    say "$*"
    "$@"
}

cmd_test() {
    setup
    ensure_pgbouncer
    ensure_apollo_client
    run "$VENV/bin/ruff" format --check
    run "$VENV/bin/ruff" check
    run "$VENV/bin/mypy"
    run "$VENV/bin/scriptlabs" schema --check
    run "$VENV/bin/pytest" -q "$@"
}

cmd_bench() {
    setup
    if [ -x bench/run ]; then
        exec bench/run "$@"
    fi
    echo "see bench/README.md"
}

usage() {
    sed -n '2,8s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
    exit 2
}

main() {
    [ "$#" -ge 1 ] || usage
    local command="$1"
    shift
    case "$command" in
    serve)
        setup
        say "starting: scriptlabs serve $*"
        exec "$VENV/bin/scriptlabs" serve "$@"
        ;;
    test) cmd_test "$@" ;;
    setup)
        setup
        say "set-up complete"
        ;;
    bench) cmd_bench "$@" ;;
    -h | --help | help) usage ;;
    *)
        printf 'dev.sh: unknown command: %s\n' "$command" >&2
        usage
        ;;
    esac
}

main "$@"
