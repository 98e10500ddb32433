#!/usr/bin/env bash
# Back up and restore Keel's PostgreSQL database (docs/operations.md, "Backups and restore").
#
#   scripts/pg-backup.sh backup  [--force] DATABASE_URL FILE
#       pg_dump --format=custom of the whole database into FILE (written to FILE.partial
#       first, checked with pg_restore --list, then renamed; an existing FILE is kept unless
#       --force). A consistent snapshot: safe while Keel runs.
#   scripts/pg-backup.sh restore [--clean] FILE DATABASE_URL
#       pg_restore --no-owner --exit-on-error --single-transaction of FILE into the database,
#       then ANALYZE. The target must be empty (create it with createdb or CREATE DATABASE):
#       a database holding any table, sequence or view is refused unless --clean, which drops
#       the objects the backup contains before re-creating them (objects it does not contain
#       stay). All or nothing: on any error nothing is restored.
#
# DATABASE_URL is a postgres:// or postgresql:// URL, as Keel's DATABASE_URL. A password in
# it is handed to the tools through PGPASSWORD, never on a command line, and never printed.
# The PostgreSQL 15 client tools in /usr/lib/postgresql/15/bin are used when present
# (KEEL_PG_BIN overrides the directory), else those on PATH; pg_dump must be at least as
# new as the server.
#
# Exit status: 0 done, 1 failed (the reason is printed), 2 usage.
set -euo pipefail

PG_BIN_DIR="${KEEL_PG_BIN:-/usr/lib/postgresql/15/bin}"

log() { printf 'pg-backup.sh: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}
usage() {
    cat >&2 <<'EOF'
usage: scripts/pg-backup.sh backup  [--force] DATABASE_URL FILE
       scripts/pg-backup.sh restore [--clean] FILE DATABASE_URL
EOF
    exit 2
}

# The tool from PG_BIN_DIR when it is there, else from PATH.
tool() {
    if [[ -x "$PG_BIN_DIR/$1" ]]; then
        printf '%s\n' "$PG_BIN_DIR/$1"
    elif command -v "$1" >/dev/null 2>&1; then
        command -v "$1"
    else
        die "$1 not found in $PG_BIN_DIR nor on PATH (install postgresql-client-15)"
    fi
}

# Splits a URL into CONN_URL (without the password) and PGPASSWORD (percent-decoded), and
# a printable form (the password masked).
CONN_URL=""
SHOWN_URL=""
parse_url() {
    local url="$1"
    [[ "$url" == postgres://* || "$url" == postgresql://* ]] ||
        die "expected a postgres:// or postgresql:// URL (got something else; not shown)"
    local scheme="${url%%://*}" rest="${url#*://}"
    local authority="${rest%%/*}" path=""
    if [[ "$rest" == */* ]]; then path="/${rest#*/}"; fi
    if [[ "$authority" == *@* ]]; then
        local userinfo="${authority%@*}" hostport="${authority##*@}"
        if [[ "$userinfo" == *:* ]]; then
            local user="${userinfo%%:*}" password="${userinfo#*:}"
            # Percent-decoding: %XX -> the byte.
            PGPASSWORD="$(printf '%b' "${password//%/\\x}")"
            export PGPASSWORD
            CONN_URL="$scheme://$user@$hostport$path"
            SHOWN_URL="$scheme://$user:***@$hostport$path"
        else
            CONN_URL="$url"
            SHOWN_URL="$url"
        fi
    else
        CONN_URL="$url"
        SHOWN_URL="$url"
    fi
}

human_size() {
    local bytes="$1"
    if ((bytes >= 1048576)); then
        printf '%d.%d MiB' $((bytes / 1048576)) $((bytes % 1048576 * 10 / 1048576))
    elif ((bytes >= 1024)); then
        printf '%d.%d KiB' $((bytes / 1024)) $((bytes % 1024 * 10 / 1024))
    else
        printf '%d B' "$bytes"
    fi
}

elapsed_since() {
    local start="$1" now
    now="$(date +%s%N)"
    printf '%d.%02d s' $(((now - start) / 1000000000)) $(((now - start) / 10000000 % 100))
}

# Relations (tables, sequences, views, ...) outside the system schemas.
relation_count() {
    "$PSQL" -X -q -At -v ON_ERROR_STOP=1 -d "$CONN_URL" -c \
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
           AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'"
}

cmd_backup() {
    local force=0 args=()
    for a in "$@"; do
        case "$a" in
        --force) force=1 ;;
        -*) usage ;;
        *) args+=("$a") ;;
        esac
    done
    ((${#args[@]} == 2)) || usage
    local url="${args[0]}" file="${args[1]}"
    parse_url "$url"
    local pg_dump pg_restore
    pg_dump="$(tool pg_dump)"
    pg_restore="$(tool pg_restore)"
    if [[ -e "$file" && "$force" == 0 ]]; then
        die "$file exists; choose another name or pass --force to replace it"
    fi
    local dir
    dir="$(dirname -- "$file")"
    [[ -d "$dir" && -w "$dir" ]] || die "cannot write into $dir"
    local partial="$file.partial"
    rm -f -- "$partial"
    log "backing up $SHOWN_URL into $file ($("$pg_dump" --version))"
    local start
    start="$(date +%s%N)"
    if ! "$pg_dump" --format=custom --file="$partial" --dbname="$CONN_URL"; then
        rm -f -- "$partial"
        die "pg_dump failed (see its message above); no backup written"
    fi
    local listing entries
    if ! listing="$("$pg_restore" --list "$partial")"; then
        rm -f -- "$partial"
        die "the archive pg_dump wrote cannot be read back by pg_restore --list; no backup written"
    fi
    entries="$(grep -c -v '^;' <<<"$listing" || true)"
    mv -f -- "$partial" "$file"
    local size
    size="$(wc -c <"$file" | tr -d ' ')"
    log "done: $file, $(human_size "$size") ($size bytes), $entries archive entries, in $(elapsed_since "$start")"
}

cmd_restore() {
    local clean=0 args=()
    for a in "$@"; do
        case "$a" in
        --clean) clean=1 ;;
        -*) usage ;;
        *) args+=("$a") ;;
        esac
    done
    ((${#args[@]} == 2)) || usage
    local file="${args[0]}" url="${args[1]}"
    parse_url "$url"
    local pg_restore
    pg_restore="$(tool pg_restore)"
    PSQL="$(tool psql)"
    [[ -f "$file" && -r "$file" ]] || die "$file is not a readable file"
    "$pg_restore" --list "$file" >/dev/null 2>&1 ||
        die "$file is not a pg_dump custom-format archive (pg_restore --list cannot read it)"
    local existing
    existing="$(relation_count)" || die "cannot connect to $SHOWN_URL (does the database exist? create it first)"
    local clean_args=()
    if ((existing > 0)); then
        if ((clean == 0)); then
            die "$SHOWN_URL is not empty ($existing tables, sequences, views or indexes); restore into a new empty database, or pass --clean to drop and replace the objects the backup contains"
        fi
        log "--clean: dropping the objects the backup contains before re-creating them ($existing relations there now)"
        clean_args=(--clean --if-exists)
    fi
    log "restoring $file into $SHOWN_URL ($("$pg_restore" --version))"
    local start
    start="$(date +%s%N)"
    "$pg_restore" --no-owner --exit-on-error --single-transaction "${clean_args[@]}" \
        --dbname="$CONN_URL" "$file" ||
        die "pg_restore failed (see its message above); the transaction was rolled back, nothing was restored"
    "$PSQL" -X -q -v ON_ERROR_STOP=1 -d "$CONN_URL" -c 'ANALYZE' ||
        die "restored, but ANALYZE failed; run it before serving traffic"
    log "done: $(relation_count) relations in $SHOWN_URL, in $(elapsed_since "$start")"
}

PSQL=""
case "${1:-}" in
backup)
    shift
    cmd_backup "$@"
    ;;
restore)
    shift
    cmd_restore "$@"
    ;;
*) usage ;;
esac
