#!/usr/bin/env bash
# Counts, per request, what one load-bench row costs its proxy in allocator calls,
# system calls (futex and epoll_wait among them: the wake-ups between threads)
# and context switches: `perf stat` on the row's waypoint over
# SECONDS of its measured window, divided by the requests its own metrics
# counted meanwhile. Needs root (uprobes on libc's malloc) and Debian's linux-perf.
#
#   benches/per_request.sh ["ROW NAME"] [SECONDS]      (default: "waypoint   hbone" 4)
#   WAYPOINT_BIN=/tmp/old benches/per_request.sh       another build, same harness
set -euo pipefail
cd "$(dirname "$0")/.."
row="${1:-waypoint   hbone}"
secs="${2:-4}"
libc=$(ldconfig -p | awk '/libc.so.6 .*x86-64/{print $NF; exit}')
for fn in malloc realloc calloc; do
    perf probe -q -x "$libc" "$fn" 2>/dev/null || true
done
out=$(mktemp -d)
LOAD_SECONDS=$((secs + 4)) LOAD_ROWS="$row" \
    cargo bench -q -p waypoint --bench load >"$out/load" 2>"$out/err" &
bench=$!
pid=""
for _ in $(seq 1 3000); do
    pid=$(sed -n "s/^row starting: $row: pid //p" "$out/err" | head -1)
    [ -n "$pid" ] && break
    sleep 0.2
done
[ -n "$pid" ] || { echo "row '$row' never started; see $out/err" >&2; exit 1; }
metrics=$(tr '\0' ' ' </proc/"$pid"/cmdline | sed -E 's/.*--metrics-addr ([^ ]+).*/\1/')
requests() {
    curl -s "http://$metrics/stats/prometheus" | awk '/^istio_requests_total/{s+=$NF} END{print s+0}'
}
sleep 2 # past the row's warm-up second
before=$(requests)
perf stat -x, -p "$pid" -o "$out/stat" \
    -e probe_libc:malloc,probe_libc:realloc,probe_libc:calloc,raw_syscalls:sys_enter \
    -e syscalls:sys_enter_futex,syscalls:sys_enter_epoll_wait,context-switches \
    -- sleep "$secs"
n=$(($(requests) - before))
echo "$row (pid $pid): $n requests in ${secs}s (the probes slow the proxy)"
awk -F, -v n="$n" '/^[0-9]/{printf "  %-26s %9d  %6.2f per request\n", $3, $1, $1 / n}' "$out/stat"
wait "$bench"
rm -rf "$out"
