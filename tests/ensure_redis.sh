#!/usr/bin/env bash
# Make sure a Redis answers on 127.0.0.1:6379 for the tests; start one (nothing persisted) if not.
set -euo pipefail
if redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; then
  echo "redis: already answering on 127.0.0.1:6379"
  exit 0
fi
command -v redis-server >/dev/null || { echo "redis-server is not installed" >&2; exit 1; }
mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
dir=/var/lib/redis; [ -w "$dir" ] || dir=$(mktemp -d)
log=/var/log/redis/ci.log; [ -w "$(dirname "$log")" ] || log="$dir/redis.log"
redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir "$dir" --logfile "$log"
for _ in $(seq 50); do
  redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG && { echo "redis: started"; exit 0; }
  sleep 0.1
done
echo "redis did not start" >&2
exit 1
