#!/usr/bin/env bash
# engine_bench: every figure of issue 11 (the engine) in one run, this build
# against a baseline coved binary, each benchmark printing its own table:
#   exec_bench          sessionless exec vs host `bash -c true`; session round trips/s at 1/8/64 clients
#   files_bench         /api/write + /api/read of 1 MiB (utf-8, base64) and 32 MiB
#   process_log_bench   a 100 MB log followed and read late, vs a host pipe
#   egress_bench        proxy and preview latency and throughput vs direct and tinyproxy
#
#   bench/engine_bench.sh [--baseline PATH/TO/coved] [--quick]
# Needs root, a built tree (ninja -C build), and nginx-light, tinyproxy, wrk.
set -euo pipefail
cd "$(dirname "$0")/.."
baseline=/work/wt-base/build/bin/coved
n=20 seconds=5 mb=100
while [ $# -gt 0 ]; do
  case $1 in
    --baseline) baseline=$2; shift 2 ;;
    --quick) n=5 seconds=2 mb=20; shift ;;
    *) echo "usage: $0 [--baseline PATH/TO/coved] [--quick]" >&2; exit 2 ;;
  esac
done
[ -x "$baseline" ] || { echo "engine_bench: no baseline coved at $baseline" >&2; exit 2; }
echo "# engine_bench $(date -u +%FT%TZ), $(git rev-parse --short HEAD) against $baseline; load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo; echo "## exec"; build/bin/exec_bench --n $((n * 25)) --seconds "$seconds" --baseline "$baseline"
echo; echo "## files"; build/bin/files_bench --n "$n" --type standard-3 --baseline "$baseline"
echo; echo "## process logs"; /usr/bin/python3 bench/process_log_bench.py --mb "$mb" --baseline "$baseline"
echo; echo "## proxy and preview"; /usr/bin/python3 bench/egress_bench.py --seconds "$seconds" --baseline "$baseline"
