#!/bin/bash
# A read-only reporting user, as teams often add in an init script.
mariadb --protocol=socket --socket=/run/mysqld/init.sock -uroot <<SQL
CREATE USER 'report'@'%' IDENTIFIED BY '${REPORT_PASSWORD:-report}';
GRANT SELECT ON \`${MARIADB_DATABASE}\`.* TO 'report'@'%';
SQL
