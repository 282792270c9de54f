#!/usr/bin/env bash
# The example exec writer examples/writers.d/sqlite end to end with the
# real vmshadow command (issue 10, R6, R14-R17): a SQLite database is
# backed up with `vmshadow backup`, then damaged (overwritten with random
# bytes), restored with `vmshadow restore --component`, deleted, restored
# again; each time PRAGMA integrity_check says ok and the rows of the
# backup are there (and not those written after it). Skips (77) without
# sqlite3.
set -euo pipefail
vmshadow=$1 example=$2
command -v sqlite3 >/dev/null || { echo "SKIP: no sqlite3"; exit 77; }
tmp=$(mktemp -d /var/tmp/vmshadow-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail () { echo "FAIL: $*"; exit 1; }
export VMSHADOW_SCRATCH_DIR=$tmp/scratch VMSHADOW_REPO=$tmp/repo
export VMSHADOW_WRITERS_DIR=$tmp/writers.d
export VMSHADOW_SQLITE_CONF=$tmp/no-such.conf
export VMSHADOW_SQLITE_DATABASES=$tmp/app/app.db
export VMSHADOW_SQLITE_SPOOL=$tmp/spool
mkdir -p "$VMSHADOW_WRITERS_DIR" "$tmp/app"
install -m 755 "$example" "$VMSHADOW_WRITERS_DIR/50-sqlite"
db=$tmp/app/app.db

sqlite3 "$db" "create table t (id integer primary key, v text);
  with recursive n(i) as (select 1 union all select i + 1 from n where i < 5000)
  insert into t (v) select hex(randomblob(40)) from n;"
want=$(sqlite3 "$db" "select count(*), sum(length(v)), max(id) from t")

"$vmshadow" backup --json > "$tmp/backup.json" ||
    fail "backup: $(cat "$tmp/backup.json")"
id=$(jq -r .backup_id "$tmp/backup.json")
[ "$(jq -r .state "$tmp/backup.json")" = complete ] ||
    fail "backup not complete: $(cat "$tmp/backup.json")"
# Written after the backup: must be gone after the restore.
sqlite3 "$db" "insert into t (v) values ('after the backup')"

check_db () {  # what
    local ic got
    ic=$(sqlite3 "$db" "pragma integrity_check") || fail "$1: sqlite3 cannot open $db"
    [ "$ic" = ok ] || fail "$1: integrity_check says: $ic"
    got=$(sqlite3 "$db" "select count(*), sum(length(v)), max(id) from t")
    [ "$got" = "$want" ] || fail "$1: rows are '$got', the backup had '$want'"
    [ -z "$(sqlite3 "$db" "select v from t where v = 'after the backup'")" ] ||
        fail "$1: a row written after the backup is still there"
}

# 1. Damaged: every byte replaced.
size=$(stat -c %s "$db")
head -c "$size" /dev/urandom > "$db"
sqlite3 "$db" "pragma integrity_check" >/dev/null 2>&1 &&
    fail "the damaged database still opens"
"$vmshadow" restore "$id" --component sqlite:app.db --json > "$tmp/r1.json" ||
    fail "restore of the damaged database: $(cat "$tmp/r1.json")"
check_db "after restoring the damaged database"
ls "$db".damaged-* >/dev/null 2>&1 ||
    fail "the writer did not keep the damaged file aside"
jq -e --arg sp "$tmp/spool/app.db" '
    .outcome == "success" and (.vms | length) == 0 and
    (.components | length) == 1 and
    .components[0].writer == "sqlite" and .components[0].component == "app.db" and
    .components[0].status == "restored" and .components[0].restore_status == "all" and
    .components[0].files[0].path == $sp and .components[0].files[0].target == $sp and
    .components[0].files[0].status == "written"' "$tmp/r1.json" >/dev/null ||
    fail "the report is not as expected: $(cat "$tmp/r1.json")"
[ ! -e "$tmp/spool/app.db" ] || fail "the restored copy was left in the spool"

# 2. Deleted (with its WAL and journal, if any), restored by writer ID.
rm -f "$db" "$db"-wal "$db"-shm "$db"-journal
"$vmshadow" restore "$id" --component 3f0b6a0e-5c2d-4e8e-9a51-7d2f0c1b9e47 \
    > "$tmp/r2.txt" || fail "restore of the deleted database: $(cat "$tmp/r2.txt")"
grep -q 'component "app.db" of writer sqlite .*: restored, file restore status all' \
    "$tmp/r2.txt" || fail "the text report does not say it: $(cat "$tmp/r2.txt")"
check_db "after restoring the deleted database"

# 3. A component that is not in the backup changes nothing.
sqlite3 "$db" "insert into t (v) values ('after the backup')"
if "$vmshadow" restore "$id" --component sqlite:other.db > "$tmp/r3.txt" 2>&1; then
    fail "a component that is not in the backup was accepted"
fi
grep -q 'has no component "other.db".*it has: "app.db".*nothing was changed' "$tmp/r3.txt" ||
    fail "unclear message: $(cat "$tmp/r3.txt")"
[ -n "$(sqlite3 "$db" "select v from t where v = 'after the backup'")" ] ||
    fail "a refused restore changed the database"
echo "ok - the SQLite database came back twice (damaged, deleted) with vmshadow restore"
