#!/usr/bin/env bash
# postgresql-kit-checkpoints-holds-nothing-and-vetoes-when-down (issue 17;
# R2, R3, R4): guest/kits/postgresql against a REAL PostgreSQL server on the
# host, driven by the real vmshadow-guest exactly as in a guest (the kit
# linked into a writers directory; vmshadow-guest passes VMSHADOW_EVENT,
# VMSHADOW_BUDGET_MS, … and reads the replies). A component test, not a VM
# test: the lab guest has no PostgreSQL (docs/guest-writers.md).
# The server is the distribution's (package postgresql, through
# scripts/install-deps.sh), started once for this script as the postgres
# user in a temp dir, on a private socket (listen_addresses empty: no TCP;
# the port only names the socket), stopped by its PID, also on failure; no
# system cluster is touched.
#  - identify: the metadata names the cluster's data directory (R5);
#  - prepare-backup: a CHECKPOINT really happens (the control file's
#    checkpoint LSN moves past the WAL written before), its redo LSN is kept;
#  - freeze/thaw: the kit holds nothing: another session commits during the
#    freeze at once;
#  - backup-complete runs the configured hook with the checkpoint's LSN; a
#    failing hook is a veto with its words; abort forgets the checkpoint;
#  - the server stopped: prepare-backup is a retryable veto (status 75)
#    saying the server does not answer, within the connect timeout.
set -euo pipefail
guest=$1 kit=$2
skip () { echo "SKIP: $*"; exit 77; }
fail () { echo "FAIL: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || skip "needs root (runs the server as the postgres user, as a guest's kit runs as root)"
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$bin" ] && [ -x "$bin/initdb" ] && [ -x "$bin/postgres" ] ||
  skip "no PostgreSQL server (package postgresql: scripts/install-deps.sh)"
command -v psql >/dev/null || skip "no psql (package postgresql-client)"
getent passwd postgres >/dev/null || skip "no postgres user (package postgresql)"

tmp=$(mktemp -d /tmp/vmshadow-pgkit.XXXXXX)
pid=
stop_server () {   # by its PID: SIGINT is PostgreSQL's fast shutdown
  [ -n "$pid" ] || return 0
  kill -INT "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=
}
trap 'stop_server; rm -rf "$tmp"' EXIT
chown postgres: "$tmp"
as_pg () { setpriv --reuid=postgres --regid="$(id -g postgres)" --init-groups -- "$@"; }
port=$((30000 + $$ % 20000))
as_pg "$bin/initdb" -N -A peer -U postgres -D "$tmp/data" >"$tmp/initdb.log" 2>&1 ||
  fail "initdb: $(tail -n 5 "$tmp/initdb.log")"
# setpriv execs: $! is the postmaster itself.
(cd "$tmp" && exec setpriv --reuid=postgres --regid="$(id -g postgres)" --init-groups -- \
  "$bin/postgres" -D "$tmp/data" -k "$tmp" -p "$port" -c listen_addresses= \
  -c fsync=off) >"$tmp/server.log" 2>&1 &
pid=$!
pg () { as_pg psql -X -q -At -v ON_ERROR_STOP=1 -h "$tmp" -p "$port" -U postgres -d postgres -c "$1"; }
for _ in $(seq 150); do pg 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.2; done
pg 'SELECT 1' >/dev/null || fail "the server did not start: $(tail -n 5 "$tmp/server.log")"
[ "$(head -n 1 "$tmp/data/postmaster.pid")" = "$pid" ] || fail "the postmaster is not PID $pid"

mkdir "$tmp/w"
ln -s "$(realpath "$kit")" "$tmp/w/50-postgresql"
cat >"$tmp/kit.conf" <<EOF
# the test's private server
host = $tmp
port = $port
os_user = postgres
backup_complete_hook = printf '%s %s\\n' "\$VMSHADOW_PG_CHECKPOINT_LSN" "\$VMSHADOW_PG_CHECKPOINT_TIME" >$tmp/hook.out; [ ! -e $tmp/hook-fails ] || { echo "archive unreachable" >&2; exit 3; }
EOF
export VMSHADOW_GUEST_WRITERS_DIR=$tmp/w VMSHADOW_GUEST_STATE_DIR=$tmp/state
export VMSHADOW_POSTGRESQL_KIT_CONF=$tmp/kit.conf VMSHADOW_POSTGRESQL_KIT_RUN=$tmp/run
result () {   # JSON EVENT-OUTPUT: the writer's result object
  jq -c '.writers[] | select(.writer == "50-postgresql")' <<<"$1"
}

# identify
out=$("$guest" identify)
meta=$(jq -r '.writers[0].output' <<<"$out")
jq -e --arg d "$tmp/data" '.components[0].attributes.data_directory == $d and
  (.components[0].attributes.server_version_num | test("^[0-9]+$"))' <<<"$meta" >/dev/null ||
  fail "identify does not name the data directory: $out"

# prepare-backup: a real checkpoint
pg 'CREATE TABLE t (id serial PRIMARY KEY, v text); INSERT INTO t (v) SELECT md5(g::text) FROM generate_series(1, 20000) g'
wal=$(pg 'SELECT pg_current_wal_lsn()')
[ "$(pg "SELECT checkpoint_lsn < '$wal'::pg_lsn FROM pg_control_checkpoint()")" = t ] ||
  fail "a checkpoint came by itself: the test cannot tell the kit's"
out=$("$guest" run prepare-backup)
r=$(result "$out")
[ "$(jq -r .result <<<"$r")" = ok ] || fail "prepare-backup: $out"
[ "$(pg "SELECT checkpoint_lsn >= '$wal'::pg_lsn FROM pg_control_checkpoint()")" = t ] ||
  fail "prepare-backup made no checkpoint ($(pg 'SELECT checkpoint_lsn FROM pg_control_checkpoint()') < $wal)"
redo=$(pg 'SELECT redo_lsn FROM pg_control_checkpoint()')
[ "$(cut -d' ' -f1 "$tmp/run/checkpoint")" = "$redo" ] || fail "checkpoint record: $(cat "$tmp/run/checkpoint") (redo $redo)"
echo "prepare-backup: CHECKPOINT in $(jq -r .ms <<<"$r") ms, redo LSN $redo (WAL was at $wal)"

# freeze: nothing held; another session commits at once
"$guest" freeze || fail "freeze: $("$guest" status)"
t0=$(date +%s%N)
timeout 5 bash -c "$(declare -f as_pg pg); tmp=$tmp port=$port; pg \"INSERT INTO t (v) VALUES ('during the freeze')\"" ||
  fail "a write during the freeze did not complete within 5 s"
ms=$((($(date +%s%N) - t0) / 1000000))
"$guest" thaw || fail "thaw: $("$guest" status)"
"$guest" status | jq -e '.freeze.vetoed == false and (.thaw.writers | length) == 1' >/dev/null ||
  fail "status: $("$guest" status)"
echo "freeze/thaw: nothing held (a commit during the freeze took $ms ms)"

# backup-complete runs the hook with the checkpoint; a failing hook vetoes
out=$("$guest" run backup-complete)
[ "$(result "$out" | jq -r .result)" = ok ] || fail "backup-complete: $out"
[ "$(cut -d' ' -f1 "$tmp/hook.out")" = "$redo" ] || fail "the hook got $(cat "$tmp/hook.out"), not LSN $redo"
touch "$tmp/hook-fails"
out=$("$guest" run backup-complete)
r=$(result "$out")
jq -e '.result == "veto" and .failure == "non-retryable" and (.message | test("archive unreachable"))' <<<"$r" >/dev/null ||
  fail "a failing backup-complete hook: $out"
out=$("$guest" run abort)
[ "$(result "$out" | jq -r .result)" = ok ] && [ ! -e "$tmp/run/checkpoint" ] || fail "abort: $out"

# the server down: a retryable veto
version=$(pg 'SHOW server_version')
stop_server
t0=$(date +%s%N)
out=$("$guest" run prepare-backup --budget-ms 6000)
ms=$((($(date +%s%N) - t0) / 1000000))
r=$(result "$out")
jq -e '.result == "veto" and .failure == "retryable" and .status == 75 and (.message | test("does not answer"))' <<<"$r" >/dev/null ||
  fail "prepare-backup with the server down: $out"
jq -e '.vetoed == true' <<<"$out" >/dev/null || fail "the veto did not veto: $out"
[ "$ms" -lt 6000 ] || fail "the veto took $ms ms"
echo "server down: $(jq -r .message <<<"$r") ($ms ms)"
echo "ok: the PostgreSQL kit against PostgreSQL $version"
