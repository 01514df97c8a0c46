#!/usr/bin/env bash
# Installs what is missing, builds cove, and starts coved in the background on its
# defaults (API on 127.0.0.1:7070, state in /var/lib/cove); logs go to
# /var/log/cove/coved.log. Running it again restarts coved on the new build.
# Environment: COVE_LISTEN (host:port), COVE_PREVIEW_LISTEN (host:port of the preview
# URLs, default 127.0.0.1:7071) and COVE_STATE_DIR override the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cmake -S . -B build -G Ninja >/dev/null
ninja -C build

state_dir=${COVE_STATE_DIR:-/var/lib/cove}
listen=${COVE_LISTEN:-127.0.0.1:7070}
preview_listen=${COVE_PREVIEW_LISTEN:-127.0.0.1:7071}
log_dir=/var/log/cove
pid_file=/run/cove/coved.pid
mkdir -p "$log_dir" /run/cove

if [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
  old=$(cat "$pid_file")
  echo "stopping the running coved (pid $old)"
  kill -TERM "$old"
  for _ in $(seq 100); do kill -0 "$old" 2>/dev/null || break; sleep 0.1; done
fi

args=()
[ -n "${COVE_LISTEN:-}" ] && args+=(--listen "$listen")
[ -n "${COVE_STATE_DIR:-}" ] && args+=(--state-dir "$state_dir")
[ -n "${COVE_PREVIEW_LISTEN:-}" ] && args+=(--preview-listen "$preview_listen")
setsid build/bin/coved "${args[@]}" >>"$log_dir/coved.log" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$pid_file"

for _ in $(seq 300); do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "coved exited; the end of $log_dir/coved.log:" >&2
    tail -n 30 "$log_dir/coved.log" >&2
    exit 1
  fi
  if [ -s "$state_dir/api-token" ] &&
     curl -fsS -o /dev/null -H "Authorization: Bearer $(cat "$state_dir/api-token")" \
       "http://$listen/v1/sandboxes"; then
    break
  fi
  sleep 0.1
done

cat <<MSG
coved is running (pid $pid) on http://$listen
  token:  $state_dir/api-token   (send it as "Authorization: Bearer TOKEN")
  log:    $log_dir/coved.log
  stop:   kill \$(cat $pid_file)
  CLI:    $(pwd)/build/bin/cove create   (reads the token file itself)
  preview URLs: http://PORT-ID-TOKEN.localhost:${preview_listen##*:}   (cove port expose ID PORT)
MSG
