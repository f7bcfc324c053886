#!/usr/bin/env bash
# Start PostgreSQL and Redis on 127.0.0.1 if they are not answering (installing them from
# Debian's packages when missing and running as root), then create the test role's database.
# Also installs Debian's chromium and chromium-driver for the browser tests when missing.
set -euo pipefail

pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
redis_up() { (exec 3<>/dev/tcp/127.0.0.1/6379 && printf 'PING\r\n' >&3 && head -c5 <&3 | grep -q PONG) 2>/dev/null; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }

if ! pg_up; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "services: installing PostgreSQL" >&2
    as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  version=$(ls /etc/postgresql | sort -V | tail -n1)
  conf=/etc/postgresql/$version/main/pg_hba.conf
  if ! grep -q "notifyhub-trust" "$conf"; then
    as_root sed -i '1i host all all 127.0.0.1/32 trust # notifyhub-trust\nhost all all ::1/128 trust # notifyhub-trust' "$conf"
  fi
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
fi
pg_up || { echo "services: PostgreSQL did not start" >&2; exit 1; }

if ! redis_up; then
  command -v redis-server >/dev/null || {
    echo "services: installing Redis" >&2
    as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  }
  mkdir -p /tmp/notifyhub-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp/notifyhub-redis --logfile /tmp/notifyhub-redis/redis.log
  for _ in $(seq 1 30); do redis_up && break; sleep 0.5; done
fi
redis_up || { echo "services: Redis did not start" >&2; exit 1; }
echo "services: PostgreSQL and Redis are up" >&2

# Browser tests (tests/test_docs_browser.py and later ones) drive Debian's headless Chromium
# through Debian's chromedriver; with NOTIFYHUB_REQUIRE_SERVICES=1 they fail without them.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  echo "services: installing chromium and chromium-driver" >&2
  if ! { as_root apt-get update -qq &&
         as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }; then
    echo "services: could not install chromium/chromium-driver; the browser tests will fail" >&2
  fi
fi
