#!/usr/bin/env bash
# Instructions per call of a SQL statement, counted by callgrind in a single-user backend: the lab
# behind the notes in docs/benchmarks.md. CPU time on a shared virtual machine varies by a tenth or
# more between identical runs; instruction counts repeat within about 1%. They leave out cache
# misses, lock waits and the WAL flush, so the bench decides and the lab says where the work is.
#
#   scripts/lab/callgrind.sh <setup.sql> <call.sql> [N]
#
#   setup.sql  run once (as the superuser) after the kit is installed; it must prepare 2N calls'
#              worth of state (for example 2N funded accounts).
#   call.sql   one call, with :i standing for the call number 1..2N (a fresh account per call, say).
#              It is PREPAREd once (`prepare lab_call(int) as …`, with $1 for the number) and
#              EXECUTEd per call, each in its own transaction, as pgbench -M prepared runs it.
#   N          calls in the first run (default 2000); the second runs 2N, and the answer is the
#              difference divided by N, so start-up and the PREPARE cancel out.
#
# Needs root (it runs PostgreSQL 15 as the postgres user in a throwaway cluster under /tmp) and
# valgrind. The kit comes from supabase/migrations, with the Supabase bootstrap first.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
setup=$(realpath "$1"); call=$(realpath "$2"); n=${3:-2000}
bin=/usr/lib/postgresql/15/bin
work=$(mktemp -d /tmp/creditkit-lab.XXXXXX); chown postgres "$work"
port=$((5600 + RANDOM % 300))
as_pg() { su postgres -s /bin/bash -c "$*"; }
trap 'as_pg "$bin/pg_ctl -D $work/data stop -m immediate" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

as_pg "$bin/initdb -D $work/data -U postgres --no-sync" >/dev/null 2>&1
as_pg "$bin/pg_ctl -D $work/data -o '-p $port -k $work -c fsync=off' -w start" >/dev/null
psql_lab() { psql -X -q -v ON_ERROR_STOP=1 -h "$work" -p "$port" -U postgres -d lab "$@"; }
createdb -h "$work" -p "$port" -U postgres lab
boot=$here/packages/creditkit/sql
psql_lab -f "$boot/supabase-bootstrap.sql" -f "$boot/supabase-default-privileges.sql" >/dev/null
for f in "$here"/supabase/migrations/*.sql; do psql_lab -1 -f "$f" >/dev/null; done
psql_lab -v n="$n" -f "$setup" >/dev/null
psql_lab -c 'vacuum analyze' >/dev/null
as_pg "$bin/pg_ctl -D $work/data stop" >/dev/null
cp -a "$work/data" "$work/base"

body=$(sed 's/:i\b/$1/g' "$call" | sed 's/;[[:space:]]*$//')
run() {
  local calls=$1 out=$work/cg.$1
  { echo "prepare lab_call(int) as $body;"
    for ((i = 1; i <= calls; i++)); do echo "execute lab_call($i);"; done; } > "$work/in.$calls"
  chown postgres "$work/in.$calls"
  rm -rf "$work/data"; cp -a "$work/base" "$work/data"  # every run starts from the same state
  as_pg "valgrind --tool=callgrind --callgrind-out-file=$out $bin/postgres --single -D $work/data -c fsync=off lab < $work/in.$calls" >/dev/null 2>"$work/err.$calls" \
    || { cat "$work/err.$calls" >&2; exit 1; }
  awk '/^(summary|totals):/ {print $2; exit}' "$out"
}
a=$(run "$n"); b=$(run $((2 * n)))
echo "$(( (b - a) / n )) instructions per call ($n vs $((2 * n)) calls)"
