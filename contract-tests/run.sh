#!/usr/bin/env bash
# Run LaunchDarkly's SSE contract suite against eventstream, through service.py.
#
#   contract-tests/run.sh [PATH/TO/sse-contract-tests] [suite flags, e.g. -debug]
#
# Default suite path: ../shared/tools/sse-contract-tests/sse-contract-tests from the
# repository root.  Starts the test service on a free loopback port, runs the suite
# against it, and stops the service (and its streams) whatever happens.  The exit
# status is the suite's: 0 when every test that ran passed.
set -euo pipefail
cd "$(dirname "$0")/.."

suite=${1:-../shared/tools/sse-contract-tests/sse-contract-tests}
shift || true
python=${PYTHON:-python}

work=$(mktemp -d)
service_pid=""
cleanup() {
    if [ -n "$service_pid" ] && kill -0 "$service_pid" 2>/dev/null; then
        kill -TERM "$service_pid" 2>/dev/null || true
        wait "$service_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$python" contract-tests/service.py --port-file "$work/port" </dev/null &
service_pid=$!
for _ in $(seq 100); do
    [ -s "$work/port" ] && break
    kill -0 "$service_pid" 2>/dev/null || { echo "contract tests: the service died" >&2; exit 1; }
    sleep 0.1
done
[ -s "$work/port" ] || { echo "contract tests: the service did not start in 10 s" >&2; exit 1; }
port=$(cat "$work/port")
# A free port for the suite's own listener (its callback and stream endpoints).
harness_port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')

"$suite" -url "http://127.0.0.1:$port" -host 127.0.0.1 -port "$harness_port" "$@"
