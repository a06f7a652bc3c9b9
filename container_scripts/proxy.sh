#!/usr/bin/env bash
# odstack proxy: nginx (Debian's package) in front of the serving client; dockerfiles/proxy/nginx.conf says
# why. Same script in the proxy image and with RUNNER=local (when nginx is installed).
#   PROXY_LISTEN   address:port nginx listens on (default 127.0.0.1:8080)
#   PROXY_UPSTREAM gunicorn's address:port (default 127.0.0.1:8081)
#   MAX_UPLOAD_MB  request body cap, the client's setting (default 16)
#   PROXY_RUN_DIR  pid file, temp files and the filled-in config (default /tmp/odstack-proxy)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
listen=${PROXY_LISTEN:-127.0.0.1:8080}
upstream=${PROXY_UPSTREAM:-127.0.0.1:8081}
max_mb=${MAX_UPLOAD_MB:-16}
run=${PROXY_RUN_DIR:-/tmp/odstack-proxy}
max_kb=$(awk -v mb="$max_mb" 'BEGIN { printf "%d", mb * 1024 }')
mkdir -p "$run"
chmod 755 "$run"  # run as root, nginx's workers are "nobody" and keep request bodies in $run/body
sed -e "s|@LISTEN@|$listen|g" -e "s|@UPSTREAM@|$upstream|g" -e "s|@MAX_BODY@|${max_kb}k|g" \
    -e "s|@MAX_UPLOAD_MB@|$max_mb|g" -e "s|@RUN@|$run|g" "$root/dockerfiles/proxy/nginx.conf" > "$run/nginx.conf"
nginx=$(command -v nginx || echo /usr/sbin/nginx)
"$nginx" -t -q -e stderr -p "$run" -c "$run/nginx.conf"
echo "odstack proxy: nginx on $listen -> $upstream (body cap ${max_mb} MB)" >&2
exec "$nginx" -e stderr -p "$run" -c "$run/nginx.conf" -g "daemon off;"
