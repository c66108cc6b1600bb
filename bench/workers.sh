#!/bin/bash
# Capacity of one worker (pinned to core 1) at 50 events/s per stream, and --workers 2 vs 1
# (not pinned); upstream + load generator on core 0.  Loopback only, about 2 minutes:
#   bash bench/workers.sh > bench/results/workers.txt
cd "$(dirname "$0")/.."
taskset -c 0 .venv/bin/python bench/upstream.py --port 18083 > /dev/null 2>&1 &
UP=$!
sleep 1
run() {  # $1 label, $2 url, $3 streams, $4 pid or -
  local pidarg=""; [ "$4" != "-" ] && pidarg="--pid $4"
  taskset -c 0 .venv/bin/python bench/load.py --url $2 --streams $3 --events 200 --interval-ms 20 --batch 1 --ramp 1 $pidarg --json \
   | python3 -c "import sys,json; d=json.loads(sys.stdin.read()); print('$1', 'streams', $3, 'ev/s', round(d['events_per_s']), 'lat p50/p99', round(d['lat_p50_ms'],1), round(d['lat_p99_ms'],1), 'cpu/ev', d.get('proxy_cpu_us_per_event'), 'err', d['errors'])"
}
proxy() {  # $1 port, $2 extra args, $3 pin (core or -)
  if [ "$3" = "-" ]; then (.venv/bin/python -m sse_fixup --upstream http://127.0.0.1:18083 --port $1 --log-level warning $2 > /dev/null 2>&1 &)
  else (taskset -c $3 .venv/bin/python -m sse_fixup --upstream http://127.0.0.1:18083 --port $1 --log-level warning $2 > /dev/null 2>&1 &); fi
  sleep 1.5
}
echo "# one worker on core 1: capacity at 50 events/s per stream"
proxy 18190 "" 1
P=$(pgrep -f "port 18190" | head -1)
for n in 100 200 300 400 500 600; do
  run direct http://127.0.0.1:18083 $n -
  run 1-worker http://127.0.0.1:18190 $n $P
done
pkill -f "port 18190"; sleep 1
echo "# --workers 1 vs 2, not pinned (the load and upstream share core 0 with them)"
for w in 1 2; do
  proxy 18191 "--workers $w" -
  P=$(pgrep -f "port 18191" | head -1)
  for n in 500 700; do run "workers-$w" http://127.0.0.1:18191 $n $P; done
  pkill -f "port 18191"; sleep 1.5
done
kill $UP
