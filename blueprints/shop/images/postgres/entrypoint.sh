#!/bin/sh
# shop/db entrypoint: usually just `exec "$@"` (postgres becomes PID 1). See the Dockerfile header.
set -eu
case "${1:-}" in postgres|*/postgres) is_pg=1 ;; *) is_pg=0 ;; esac
if [ "$is_pg" = 1 ] && [ -n "${POSTGRES_PASSWORD:-}" ] && [ "$POSTGRES_PASSWORD" != "shop" ]; then
    # Only when a non-default password is asked for: set it in single-user mode, then start normally.
    pw=$(printf '%s' "$POSTGRES_PASSWORD" | sed "s/'/''/g")
    printf "ALTER ROLE shop PASSWORD '%s';\n" "$pw" \
        | postgres --single -D "${PGDATA:-/var/lib/postgresql/data}" postgres >/dev/null
fi
exec "$@"
