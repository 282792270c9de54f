#!/usr/bin/env bash
# mariadb-kit-holds-the-read-lock-across-the-freeze-and-vetoes (issue 17;
# R2, R3, R4): guest/kits/mariadb against a REAL MariaDB server on the host,
# driven by the real vmshadow-guest exactly as in a guest (the kit linked
# into a writers directory; prepare-backup sets the freeze budget, the hook's
# freeze/thaw and the host's abort run it with VMSHADOW_BUDGET_MS, …).
# A component test, not a VM test: the lab guest has no MariaDB
# (docs/guest-writers.md).
# The server is the distribution's (packages mariadb-server-core and
# mariadb-client-core, through scripts/install-deps.sh; not mariadb-server,
# which would start a system instance), started once for this script as
# the unprivileged user nobody in a temp dir, on a private socket
# (--skip-networking), with a binary log; stopped by its PID, also on
# failure; no system instance is touched.
#  - freeze holds FLUSH TABLES WITH READ LOCK from a session that outlives
#    the hook: another session's INSERT waits during the whole freeze
#    (still waiting after 1.5 s, its row not there) and completes at thaw;
#    the binary log position is recorded;
#  - abort releases the lock as thaw does;
#  - a long query keeps a table open: the lock does not come within half the
#    budget, a retryable veto (status 75) — and the waiting FLUSH is ended:
#    another session's INSERT then completes at once instead of queueing
#    behind it;
#  - the server stopped: freeze is a retryable veto saying why.
set -euo pipefail
guest=$1 kit=$2
skip () { echo "SKIP: $*"; exit 77; }
fail () { echo "FAIL: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || skip "needs root (the kit connects as root by unix_socket, as in a guest)"
for p in mariadbd mariadb-install-db mariadb; do
  command -v $p >/dev/null || [ -x /usr/sbin/$p ] ||
    skip "no $p (packages mariadb-server-core, mariadb-client-core: scripts/install-deps.sh)"
done
mariadbd=$(command -v mariadbd || echo /usr/sbin/mariadbd)

tmp=$(mktemp -d /tmp/vmshadow-mariadbkit.XXXXXX)
pid= bg=()
stop_server () {   # by its PID: SIGTERM is a clean shutdown
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=
}
cleanup () {
  for p in "${bg[@]}"; do kill "$p" 2>/dev/null || true; done
  stop_server
  rm -rf "$tmp"
}
trap cleanup EXIT
chown nobody: "$tmp"
printf '[client]\n' >"$tmp/client.cnf"   # the host's option files are not read
opts=(--no-defaults --user=nobody --datadir="$tmp/data" --innodb-log-file-size=4M
      --innodb-buffer-pool-size=16M --skip-name-resolve)
mariadb-install-db "${opts[@]}" --auth-root-authentication-method=socket --skip-test-db \
  >"$tmp/install.log" 2>&1 || fail "mariadb-install-db: $(tail -n 5 "$tmp/install.log")"
# Started by root with --user: it exec's as mariadbd and drops to nobody.
"$mariadbd" "${opts[@]}" --socket="$tmp/sock" --skip-networking --pid-file="$tmp/mariadbd.pid" \
  --log-error="$tmp/error.log" --log-bin="$tmp/data/binlog" --server-id=1 &
pid=$!
db () { mariadb --defaults-file="$tmp/client.cnf" --socket="$tmp/sock" -uroot --batch --skip-column-names "$@"; }
for _ in $(seq 300); do db -e 'SELECT 1' >/dev/null 2>&1 && break; kill -0 $pid || break; sleep 0.1; done
db -e 'SELECT 1' >/dev/null || fail "the server did not start: $(tail -n 5 "$tmp/error.log" 2>&1)"
[ "$(cat "$tmp/mariadbd.pid")" = "$pid" ] || fail "mariadbd is not PID $pid"
[ "$(ps -o user= -p "$pid")" = nobody ] || fail "mariadbd does not run as nobody: $(ps -o user= -p "$pid")"
db -e 'CREATE DATABASE kit; CREATE TABLE kit.t (id INT PRIMARY KEY, v TEXT) ENGINE=InnoDB;
       CREATE TABLE kit.m (id INT PRIMARY KEY) ENGINE=MyISAM; INSERT INTO kit.t VALUES (1, "a"), (2, "b")'

mkdir "$tmp/w"
ln -s "$(realpath "$kit")" "$tmp/w/50-mariadb"
cat >"$tmp/kit.conf" <<EOF
# the test's private server
socket = $tmp/sock
defaults_file = $tmp/client.cnf
EOF
export VMSHADOW_GUEST_WRITERS_DIR=$tmp/w VMSHADOW_GUEST_STATE_DIR=$tmp/state
export VMSHADOW_MARIADB_KIT_CONF=$tmp/kit.conf VMSHADOW_MARIADB_KIT_RUN=$tmp/run
rows () { db -e 'SELECT count(*) FROM kit.t'; }
# insert ID: another session's INSERT, in the background ($ins: its PID)
insert () { db -e "INSERT INTO kit.t VALUES ($1, 'x'); INSERT INTO kit.m VALUES ($1)" >"$tmp/ins.$1" 2>&1 & ins=$!; bg+=($ins); }
freeze_status () { "$guest" status | jq -c '.freeze.writers[] | select(.writer == "50-mariadb")'; }

"$guest" identify | jq -e '.writers[0].output | fromjson | .components[0].attributes.socket == "'"$tmp/sock"'"' >/dev/null ||
  fail "identify: $("$guest" identify)"

# 1. The lock held across the freeze, released at thaw.
"$guest" run prepare-backup --freeze-budget-ms 6000 | jq -e '.vetoed == false' >/dev/null || fail "prepare-backup"
t0=$(date +%s%N)
"$guest" freeze || fail "freeze: $(freeze_status)"
kit_ms=$(freeze_status | jq .ms)
insert 3
sleep 1.5
kill -0 $ins 2>/dev/null || fail "an INSERT completed during the freeze: the lock was not held ($(cat "$tmp/ins.3"))"
[ "$(rows)" = 2 ] || fail "rows during the freeze: $(rows)"
state=$(db -e "SELECT state FROM information_schema.processlist WHERE info LIKE 'INSERT INTO kit.t%'")
grep -q . "$tmp/run/binlog" || fail "no binary log position recorded"
"$guest" thaw || fail "thaw: $("$guest" status)"
t1=$(date +%s%N)
wait $ins || fail "the INSERT failed after the thaw: $(cat "$tmp/ins.3")"
waited=$((($(date +%s%N) - t1) / 1000000))
[ "$(rows)" = 3 ] || fail "rows after the thaw: $(rows)"
"$guest" status | jq -e '.thaw.writers[0].result == "ok"' >/dev/null || fail "thaw status: $("$guest" status)"
echo "freeze: read lock in $kit_ms ms, held $((( t1 - t0) / 1000000)) ms; a writer waited ('$state'), done $waited ms after the thaw; binlog $(cut -f1,2 "$tmp/run/binlog")"

# 2. abort releases it too.
"$guest" freeze || fail "second freeze: $(freeze_status)"
insert 4
sleep 1
kill -0 $ins 2>/dev/null || fail "an INSERT completed during the second freeze"
"$guest" run abort | jq -e '.writers[0].result == "ok"' >/dev/null || fail "abort"
wait $ins || fail "the INSERT failed after abort: $(cat "$tmp/ins.4")"
[ "$(rows)" = 4 ] || fail "rows after abort: $(rows)"
"$guest" thaw || fail "the thaw after abort"
echo "abort: released the lock"

# 3. A long write statement runs: no lock within half the budget (1 s).
db -e 'UPDATE kit.t SET v = SLEEP(60) WHERE id = 1' >/dev/null 2>&1 & sleeper=$!; bg+=($sleeper)
sleep 0.5
"$guest" run prepare-backup --freeze-budget-ms 2000 >/dev/null
t0=$(date +%s%N)
rc=0; "$guest" freeze 2>/dev/null || rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
[ $rc = 1 ] || fail "a freeze without the lock exited $rc"
r=$(freeze_status)
jq -e '.result == "veto" and .failure == "retryable" and .status == 75' <<<"$r" >/dev/null || fail "no retryable veto: $r"
t0=$(date +%s%N)
insert 5
timeout 5 tail --pid=$ins -f /dev/null || fail "an INSERT after the veto still waits: the FLUSH was left queued"
wait $ins || fail "the INSERT after the veto failed: $(cat "$tmp/ins.5")"
ins_ms=$((($(date +%s%N) - t0) / 1000000))
kill -0 $sleeper || fail "the long query ended: the test did not hold the table open"
id=$(db -e "SELECT id FROM information_schema.processlist WHERE info LIKE 'UPDATE kit.t SET v = SLEEP%'")
db -e "KILL $id"
wait $sleeper || true
echo "lock not taken: vetoed in $ms ms ($(jq -r .message <<<"$r")); a writer then took $ins_ms ms"

# 4. The server stopped: a retryable veto.
stop_server
rc=0; "$guest" freeze 2>/dev/null || rc=$?
[ $rc = 1 ] || fail "a freeze with the server down exited $rc"
r=$(freeze_status)
jq -e '.result == "veto" and .failure == "retryable" and .status == 75' <<<"$r" >/dev/null || fail "server down: $r"
echo "server down: $(jq -r .message <<<"$r")"
echo "ok: the MariaDB kit against $("$mariadbd" --version | awk '{print $3}')"
