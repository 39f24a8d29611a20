# Shared by the service benchmarks (sourced, not run): start the release binary with default
# settings, create sessions, read its CPU time.
#
# Needs: $work (a scratch directory) and $bin (the binary). The caller's EXIT trap calls
# bench_stop_service.

# Starts the service pinned to CPU 0 with default settings apart from port 0 and the data
# directory (extra VAR=value arguments are added to its environment); sets $pid, $admin,
# $public.
bench_start_service() {
    mkdir -p "$work"
    env ISM_DATA_DIR="$work/data" ISM_ADMIN_ADDR=127.0.0.1:0 ISM_PUBLIC_ADDR=127.0.0.1:0 "$@" \
        taskset -c 0 "$bin" serve >"$work/addrs" 2>"$work/log" &
    pid=$!
    for _ in $(seq 200); do grep -q public_addr "$work/addrs" 2>/dev/null && break; sleep 0.1; done
    grep -q public_addr "$work/addrs" || { echo "the service did not start:" >&2; cat "$work/log" >&2; exit 1; }
    local addrs
    addrs=$(grep public_addr "$work/addrs" | head -n1)
    admin=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["admin_addr"])' "$addrs")
    public=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["public_addr"])' "$addrs")
}

bench_stop_service() {
    if [ -n "${pid:-}" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=; fi
}

# bench_create_sessions FILE COUNT: creates COUNT sessions (default max_clients) and writes
# "id pin" lines to FILE; then joins "bench-device" into each (re-join mode uses that name).
bench_create_sessions() {
    python3 - "$admin" "$public" "$1" "$2" <<'PY'
import json, sys, urllib.request
from concurrent.futures import ThreadPoolExecutor
admin, public, path, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())
def create(_):
    s = post(f"http://{admin}/api/v1/sessions", {})
    post(f"http://{public}/api/v1/sessions/{s['id']}/join", {"pin": s["pin"], "client": "bench-device"})
    return f"{s['id']} {s['pin']}\n"
with ThreadPoolExecutor(4) as pool:
    lines = list(pool.map(create, range(count)))
open(path, "w").writelines(lines)
PY
}

# CPU time (user + system) the service has used so far, in clock ticks.
bench_cpu_ticks() {
    awk '{print $14 + $15}' "/proc/$pid/stat"
}

bench_clock_ticks_per_sec() {
    getconf CLK_TCK
}

# The signing rate of one core (CPU 0) for "rsa2048" or "ecdsap256", sign/s.
bench_openssl_sign_rate() {
    taskset -c 0 openssl speed -seconds 5 "$1" 2>/dev/null \
        | awk -v a="$1" '$0 ~ /sign\/s/ {next} ($1 ~ /^rsa$/ && $2 == "2048") {print $(NF-1)} ($0 ~ /256 bits ecdsa \(nistp256\)/) {print $(NF-1)}' | head -n1
}
