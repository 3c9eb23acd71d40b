#!/bin/bash
# A small take on the official mariadb image's entrypoint: on an empty data directory, create the
# system tables, the root password, MARIADB_DATABASE / MARIADB_USER (MYSQL_* accepted too), then run
# /docker-entrypoint-initdb.d/* (*.sh, *.sql, *.sql.gz) against a server without networking.
set -eo pipefail
log() { echo "$(date -u +%FT%TZ) [Entrypoint]: $*"; }

env_or() { local v="${!1:-}"; [ -n "$v" ] || v="${!2:-}"; echo "$v"; }
ROOT_PW=$(env_or MARIADB_ROOT_PASSWORD MYSQL_ROOT_PASSWORD)
DATABASE=$(env_or MARIADB_DATABASE MYSQL_DATABASE)
USER_NAME=$(env_or MARIADB_USER MYSQL_USER)
USER_PW=$(env_or MARIADB_PASSWORD MYSQL_PASSWORD)

if [ "$1" = mariadbd ] && [ "$(id -u)" = 0 ]; then
  chown -R mysql:mysql /var/lib/mysql /run/mysqld
  exec setpriv --reuid=mysql --regid=mysql --init-groups "$0" "$@"
fi

if [ "$1" = mariadbd ] && [ ! -d /var/lib/mysql/mysql ]; then
  if [ -z "$ROOT_PW" ] && [ -z "${MARIADB_ALLOW_EMPTY_ROOT_PASSWORD:-}" ]; then
    log "error: database is uninitialized and MARIADB_ROOT_PASSWORD is not set"; exit 1
  fi
  log "initializing database files"
  mariadb-install-db --user=mysql --datadir=/var/lib/mysql --skip-test-db --auth-root-authentication-method=normal >/dev/null
  mariadbd --skip-networking --socket=/run/mysqld/init.sock &
  pid=$!
  for i in $(seq 60); do mariadb-admin --socket=/run/mysqld/init.sock ping --silent 2>/dev/null && break; sleep 0.5; done
  sql() { mariadb --protocol=socket --socket=/run/mysqld/init.sock -uroot "$@"; }
  {
    echo "SET @@SESSION.SQL_LOG_BIN=0;"
    echo "DELETE FROM mysql.user WHERE user='' ;"
    echo "ALTER USER 'root'@'localhost' IDENTIFIED BY '${ROOT_PW}';"
    echo "CREATE USER 'root'@'%' IDENTIFIED BY '${ROOT_PW}'; GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
    [ -n "$DATABASE" ] && echo "CREATE DATABASE IF NOT EXISTS \`$DATABASE\`;"
    if [ -n "$USER_NAME" ]; then
      echo "CREATE USER '$USER_NAME'@'%' IDENTIFIED BY '$USER_PW';"
      [ -n "$DATABASE" ] && echo "GRANT ALL ON \`$DATABASE\`.* TO '$USER_NAME'@'%';"
    fi
    echo "FLUSH PRIVILEGES;"
  } | sql
  export MYSQL_PWD="$ROOT_PW"
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh)     log "running $f"; . "$f" ;;
      *.sql)    log "running $f"; sql ${DATABASE:+"$DATABASE"} < "$f" ;;
      *.sql.gz) log "running $f"; gunzip -c "$f" | sql ${DATABASE:+"$DATABASE"} ;;
      *)        log "ignoring $f" ;;
    esac
  done
  unset MYSQL_PWD
  mariadb-admin --socket=/run/mysqld/init.sock -uroot -p"$ROOT_PW" shutdown
  wait "$pid" || true
  log "MariaDB init process done. Ready for start up."
fi
exec "$@"
