# shellcheck shell=bash
# Starting and stopping the cluster's processes by recorded PID. Sourced after lib.sh.
#
# Each component is started detached (own session, no terminal) and recorded in
# $PID_DIR/NAME.pid as "PID STARTTIME EXE". A PID is only ever signalled while its start time
# and executable still match the record, so a recycled PID is never hit.

proc_starttime() { awk '{print $22}' "/proc/$1/stat" 2>/dev/null; }

# start_component NAME BINARY ARGS...: start it in the background, logging to $LOG_DIR/NAME.log.
# With IN_NODE=NODE-NAME set, it runs in that node's namespaces (nsenter execs in place too), and
# with ENV_VARS="K=V ..." set, with those variables (env execs in place).
start_component() {
  local name=$1 exe=$2
  shift 2
  mkdir -p "$PID_DIR" "$LOG_DIR"
  local prefix=()
  [[ -z ${IN_NODE:-} ]] || prefix=(nsenter --net="$NODE_NS_DIR/$IN_NODE.net" --mount="$NODE_NS_DIR/$IN_NODE.mnt" --uts="$NODE_NS_DIR/$IN_NODE.uts" --)
  # shellcheck disable=SC2206
  [[ -z ${ENV_VARS:-} ]] || prefix+=(env $ENV_VARS)
  # Not a process-group leader here, so setsid runs the binary in place (no fork): $! is its PID.
  setsid "${prefix[@]}" "$exe" "$@" </dev/null >>"$LOG_DIR/$name.log" 2>&1 &
  local pid=$!
  local st=""
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    st=$(proc_starttime "$pid")
    [[ -n $st ]] && break
    sleep 0.05
  done
  [[ -n $st ]] || die "$name exited at once; see $LOG_DIR/$name.log"
  # nsenter and env exec the binary in place; wait until they have.
  for _ in $(seq 40); do [[ "$(readlink -f "/proc/$pid/exe" 2>/dev/null)" == "$(readlink -f "$exe")" ]] && break; sleep 0.05; done
  st=$(proc_starttime "$pid")
  echo "$pid $st $(readlink -f "$exe")" >"$PID_DIR/$name.pid"
}

# recorded_alive NAME: true when NAME's recorded process is still the one we started.
recorded_alive() {
  local f="$PID_DIR/$1.pid" pid st exe
  [[ -f $f ]] || return 1
  read -r pid st exe <"$f"
  [[ -n $pid && "$(proc_starttime "$pid")" == "$st" && "$(readlink -f "/proc/$pid/exe" 2>/dev/null)" == "$exe" ]]
}

# stop_component NAME: SIGTERM the recorded process, SIGKILL after 10 s, forget it.
stop_component() {
  local name=$1 f="$PID_DIR/$1.pid" pid st exe
  [[ -f $f ]] || return 0
  read -r pid st exe <"$f"
  if recorded_alive "$name"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do recorded_alive "$name" || break; sleep 0.1; done
    if recorded_alive "$name"; then
      log "$name ($pid) ignored SIGTERM: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      for _ in $(seq 50); do recorded_alive "$name" || break; sleep 0.1; done
    fi
  fi
  rm -f "$f"
}
