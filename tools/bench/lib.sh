# tools/bench/lib.sh — shell functions shared by tools/bench/run and tools/bench/http2.
# Sourced (at top level: master_pid must be global), never run. Needs bash 4.3+.
#
#   log MESSAGE...          "[TAG HH:MM:SS] MESSAGE" on stderr; TAG is $bench_log_tag
#                           (default "bench")
#   free_port               a TCP port on 127.0.0.1 that is free now
#   wait_http URL           polls until URL answers 200 (10 s at most)
#   start NAME LOG CMD...   runs CMD in the background, remembers its pid as NAME
#   stop NAME               SIGTERM to it, SIGKILL after 5 s
#   pids_of NAME            its pid and its children's (nginx/poolgate workers)
#   cpu_ticks PID...        utime + stime summed over the processes (all their threads)
#   upstream_established PORT
#                           established TCP connections to PORT (dport), from anyone

log() { printf '[%s %(%H:%M:%S)T] %s\n' "${bench_log_tag:-bench}" -1 "$*" >&2; }

# Under set -e a failed command ends the bench; say which one, and where, rather than
# stop without a word (-E: also for a command inside a function).
set -E
trap 'status=$?; log "stopped: \"$BASH_COMMAND\" failed (status $status) at ${BASH_SOURCE[0]##*/}:$LINENO"' ERR

# Prints a TCP port on 127.0.0.1 that is free now.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_http URL: polls until URL answers 200 (10 s at most). An https:// URL is not
# checked against a CA (the --tls certificate is self-signed).
wait_http() {
  local url=$1 attempt
  for attempt in $(seq 100); do
    [[ $(curl -sk -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true) == 200 ]] && return 0
    sleep 0.1
  done
  echo "bench: $url did not answer 200" >&2
  return 1
}

declare -A master_pid=()   # name -> pid of the process we started

# start NAME LOGFILE COMMAND...: runs COMMAND in the background, remembers its pid.
start() {
  local name=$1 logfile=$2
  shift 2
  "$@" >"$logfile" 2>&1 &
  master_pid[$name]=$!
}

# stop NAME: SIGTERM to the process we started, SIGKILL after 5 s.
stop() {
  local name=$1 pid=${master_pid[$1]:-} attempt
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for attempt in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "master_pid[$name]"
}

# pids_of NAME: the started process and its children (nginx/poolgate workers).
pids_of() {
  local pid=${master_pid[$1]}
  echo "$pid"
  ps -o pid= --ppid "$pid" | tr -d ' ' || true
}

# cpu_ticks PID...: utime + stime summed over the processes (all their threads).
# No process per PID (read, not sed): the readings around a run stay close to it, even
# for an app server with dozens of workers.
cpu_ticks() {
  local pid total=0 fields
  for pid in "$@"; do
    { read -r fields <"/proc/$pid/stat"; } 2>/dev/null || continue
    # Fields after "pid (comm) ": state is 1st, utime 12th, stime 13th.
    read -r -a stat <<<"${fields##*) }"
    total=$(( total + stat[11] + stat[12] ))
  done
  echo "$total"
}

# upstream_established PORT: established TCP connections to the upstream's PORT, from
# anyone (in economy mode each proxy has a port of its own).
upstream_established() {
  ss -tnH state established "( dport = :$1 )" | wc -l
}
