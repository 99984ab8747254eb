#!/usr/bin/env bash
# Screenshot TensorBoard's scalars (or time-series) dashboard for the runs under a folder.
#
# Usage: scripts/tensorboard_screenshot.sh RUN_PARENT_DIR OUT.png [TAG_FILTER]
#   RUN_PARENT_DIR  folder whose subfolders are train.py runs (runs/, not runs/NAME)
#   OUT.png         the screenshot (1400 x 1000 px unless TB_WINDOW_SIZE says otherwise)
#   TAG_FILTER      optional regex over scalar tags, e.g. 'driving/driving_score|eval/'
#
# Starts TensorBoard from the project's venv on 127.0.0.1 only, waits until it lists every run,
# has headless Chromium render the page, and stops both again (also on errors or Ctrl-C).
# Needs Chromium and curl: `apt-get install chromium curl` on Debian. Environment overrides:
# TB_DASHBOARD (scalars: the legacy dashboard, charts only; timeseries: the newer one, whose
# settings pane stays open in a fresh browser profile), TB_PORT (6099), TB_WINDOW_SIZE
# (1400,1000), TB_RENDER_MS (virtual time for the page to draw [ms], 15000), TB_START_TIMEOUT
# [s] (120), TENSORBOARD, CHROMIUM (the executables).
set -euo pipefail

if [[ $# -lt 2 || $# -gt 3 ]]; then
    echo "usage: $0 RUN_PARENT_DIR OUT.png [TAG_FILTER]" >&2
    exit 2
fi
logdir=$1
out=$2
tag_filter=${3:-}
dashboard=${TB_DASHBOARD:-scalars}
port=${TB_PORT:-6099}
window=${TB_WINDOW_SIZE:-1400,1000}
render_ms=${TB_RENDER_MS:-15000}
start_timeout=${TB_START_TIMEOUT:-120}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tensorboard=${TENSORBOARD:-$root/.venv/bin/tensorboard}
chromium=${CHROMIUM:-chromium}

if [[ ! -d $logdir ]]; then
    echo "$0: $logdir is not a folder; pass the parent of train.py run folders (e.g. runs)" >&2
    exit 2
fi
# TensorBoard's runs are the folders holding event files.
runs=$(find "$logdir" -name 'events.out.tfevents.*' -printf '%h\n' | sort -u | wc -l)
if ((runs == 0)); then
    echo "$0: no events.out.tfevents.* under $logdir; pass the parent of train.py run folders" >&2
    exit 2
fi
for exe in "$tensorboard" "$chromium" curl; do
    if ! command -v "$exe" > /dev/null; then
        echo "$0: $exe not found (TensorBoard: the project venv; Chromium: apt-get install chromium)" >&2
        exit 2
    fi
done
if [[ $dashboard != timeseries && $dashboard != scalars ]]; then
    echo "$0: TB_DASHBOARD=$dashboard; use timeseries or scalars" >&2
    exit 2
fi
encode='import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))'
encoded_filter=$(python3 -c "$encode" "$tag_filter")
if curl -s -o /dev/null "http://127.0.0.1:$port/"; then
    echo "$0: something already answers on port $port; choose another with TB_PORT=..." >&2
    exit 2
fi

work=$(mktemp -d)
tb_pid=""
chromium_pid=""
stop() { # PID: TERM, then KILL after 10 s
    [[ -n $1 ]] && kill -0 "$1" 2> /dev/null || return 0
    kill "$1" 2> /dev/null || true
    for _ in $(seq 20); do
        kill -0 "$1" 2> /dev/null || break
        sleep 0.5
    done
    kill -9 "$1" 2> /dev/null || true
    wait "$1" 2> /dev/null || true
}
cleanup() {
    stop "$chromium_pid"
    stop "$tb_pid"
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$tensorboard" --logdir "$logdir" --host 127.0.0.1 --port "$port" --reload_interval 0 \
    > "$work/tensorboard.log" 2>&1 &
tb_pid=$!

# TensorBoard answers before it has read the event files: wait until /data/runs lists them all.
listed_runs() {
    curl -s "http://127.0.0.1:$port/data/runs" | python3 -c '
import json, sys
try:
    print(len(json.load(sys.stdin)))
except ValueError:
    print(0)'
}
deadline=$((SECONDS + start_timeout))
until (($(listed_runs) >= runs)); do
    if ! kill -0 "$tb_pid" 2> /dev/null; then
        echo "$0: TensorBoard exited; its log:" >&2
        cat "$work/tensorboard.log" >&2
        exit 1
    fi
    if ((SECONDS >= deadline)); then
        echo "$0: TensorBoard listed fewer than $runs runs within ${start_timeout} s; its log:" >&2
        cat "$work/tensorboard.log" >&2
        exit 1
    fi
    sleep 1
done

# forceSVG: the time-series charts draw with WebGL by default, and headless Chromium without a
# GPU leaves them empty (axes, no lines). The time-series dashboard reads the tag filter from
# the query, the legacy scalars one from the fragment.
url="http://127.0.0.1:$port/?forceSVG=true"
if [[ $dashboard == timeseries ]]; then
    url+="${tag_filter:+&tagFilter=$encoded_filter}#timeseries"
else
    url+="#scalars${tag_filter:+&tagFilter=$encoded_filter}"
fi
out_dir=$(dirname "$out")
mkdir -p "$out_dir"
shot=$work/screenshot.png
# A private profile in $work, so nothing is left in ~/.config. Chromium refuses to run as root
# with its sandbox. In the background, so that a TERM reaches the trap at once.
flags=(--headless=new --disable-gpu --hide-scrollbars --user-data-dir="$work/profile")
if ((EUID == 0)); then
    flags+=(--no-sandbox)
fi
timeout 180 "$chromium" "${flags[@]}" --window-size="$window" \
    --virtual-time-budget="$render_ms" --screenshot="$shot" "$url" > "$work/chromium.log" 2>&1 &
chromium_pid=$!
wait "$chromium_pid" || true
chromium_pid=""
if [[ ! -s $shot ]]; then
    echo "$0: Chromium wrote no screenshot of $url; its log:" >&2
    cat "$work/chromium.log" >&2
    exit 1
fi
mv "$shot" "$out"
echo "wrote $out ($url)"
