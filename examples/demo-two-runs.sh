#!/usr/bin/env bash
# Two real runs of the embedded default (config.toml) with different model seeds, and a third with another workload
# seed, then time travel and comparison across them:
#
#   examples/demo-two-runs.sh [WORKDIR]        (default: a new folder under /tmp; about 2-3 minutes on 2 cores)
#
# Each run goes through Stage A (the reference workload against the tiny model: deaths, recoveries, traps) and
# Stage B (the recursive audit and the operator's gate, signed here with `phasef approve`); `--until B` stops there,
# the cheapest part of the cycle that has both a death tick and a gate. Then:
#   - `phasef compare run-seed7 run-seed8`: the two baselines paired per episode (the same task set);
#   - `phasef compare run-seed7 other-tasks`: refused with the reason (another task set), exit 2;
#   - `phasef sessions`: all three;
# and it prints the `phasef replay` command to step from the first event to the gate and to a death tick.
# PHASEF may name the phasef command (default: the repository's .venv/bin/phasef, else `phasef` on PATH).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -n "${PHASEF:-}" ]]; then
    read -r -a phasef <<<"$PHASEF"
elif [[ -x "$here/.venv/bin/phasef" ]]; then
    phasef=("$here/.venv/bin/phasef")
else
    phasef=(phasef)
fi
work="${1:-$(mktemp -d /tmp/phasef-demo.XXXXXX)}"
mkdir -p "$work"
cd "$work"
if [[ -e sessions/run-seed7 || -e sessions/run-seed8 || -e sessions/other-tasks ]]; then
    echo "error: $work already holds the demo's sessions; give another folder" >&2
    exit 2
fi

# the embedded default as it is (model seed 7, workload seed 1), and two variants of it
cp "$here/config.toml" config.toml
cp -r "$here/docs" docs
sed 's/params = { dir = "models\/tiny", seed = 7 }/params = { dir = "models\/tiny", seed = 8 }/' config.toml >seed8.toml
awk '!done && $0 == "seed = 1" { print "seed = 2"; done = 1; next } { print }' config.toml >other-tasks.toml
grep -q 'seed = 8 }' seed8.toml && grep -q '^seed = 2$' other-tasks.toml || {
    echo "error: config.toml no longer has the model or workload seed this demo changes" >&2
    exit 1
}

start() { # SESSION CONFIG UNTIL: a headless run in the background ($! is its pid), its output in SESSION.log
    "${phasef[@]}" run --headless --plain -c "$2" --session "$1" --until "$3" >"$1.log" 2>&1 &
}

echo "== three runs of the embedded default in $work (logs: *.log)"
start run-seed7 config.toml B
pid7=$!
start run-seed8 seed8.toml B
pid8=$!
start other-tasks other-tasks.toml A
pido=$!

sign_gate() { # SESSION PID: wait for the baseline gate, sign it GO (an override of the offline audit)
    local session=$1 pid=$2 waited=0
    until "${phasef[@]}" status "$session" --json 2>/dev/null | grep -q '"state": "waiting"'; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "error: run $session ended before its gate opened; see $work/$session.log" >&2
            return 1
        fi
        if ((waited >= 1200)); then
            echo "error: no gate in $session after 20 minutes; see $work/$session.log" >&2
            return 1
        fi
        sleep 2
        waited=$((waited + 2))
    done
    "${phasef[@]}" approve "$session" B.baseline-gate --decision go --as demo \
        --reason "demo: offline auditors cannot give a verdict; continue"
}

sign_gate run-seed7 "$pid7"
sign_gate run-seed8 "$pid8"
status=0
for pid in "$pid7" "$pid8" "$pido"; do
    wait "$pid" || status=$?
done
if ((status != 0)); then
    echo "error: a run failed (exit $status); see $work/*.log" >&2
    exit 1
fi

echo
echo "== phasef compare run-seed7 run-seed8 (models of different seeds, the same task set)"
"${phasef[@]}" compare run-seed7 run-seed8
echo
echo "== phasef compare run-seed7 other-tasks (another workload seed: refused, exit 2)"
set +e
"${phasef[@]}" compare run-seed7 other-tasks
echo "(exit $?)"
set -e
echo
echo "== phasef sessions"
"${phasef[@]}" sessions
echo
cat <<EOF
Now step through a run as it was (nothing is re-run):
  cd $work && ${phasef[*]} replay run-seed7
keys: m picks the landmark kind (failure, gate, stage, death), > / < the next / previous one of that kind,
      . / , one event on / back, z play, J jump to a time, F the newest event; 1-5 the screens, q quits.
      m m > : the gate opening (the board and the audit verdict as they were then);
      m m < : from there, the last death tick before it (the evaluation still running).
EOF
