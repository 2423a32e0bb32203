# Shared by scripts/cluster.sh and scripts/cluster-bench.sh (sourced, not run): a free loopback port, and
# the start and end of a local cluster's Redis and secret.

pids=()
secret=""

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# cluster_begin: a fresh cluster secret file ($secret) and redis-server on a free loopback port
# ($redis_port), waited for; $pids lists what was started, for cluster_end (add the processes to it).
cluster_begin() {
    command -v redis-server >/dev/null || { echo "$0: redis-server not found (apt-get install redis-server)" >&2; exit 2; }
    secret=$(mktemp)
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$secret"
    redis_port=$(free_port)
    redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
    pids+=($!)
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$redis_port") 2>/dev/null && break
        sleep 0.05
    done
}

# cluster_end: SIGTERM to everything in $pids (each drains), wait for them, remove the secret.
cluster_end() {
    [ "${#pids[@]}" -eq 0 ] || kill -TERM "${pids[@]}" 2>/dev/null || true
    [ "${#pids[@]}" -eq 0 ] || wait "${pids[@]}" 2>/dev/null || true
    [ -z "$secret" ] || rm -f "$secret"
}
