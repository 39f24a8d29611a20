#!/bin/sh
# Renders the proxy configuration for one environment into OUT_DIR (nginx.conf, server.conf,
# locations.conf and the static include files, json-errors.conf among them). The proxy
# image's entrypoint and scripts/dev-stack both use it, so the native test stack runs
# exactly the configuration the container runs. Start nginx with `nginx -c OUT_DIR/nginx.conf`.
#
# usage: render-config.sh OUT_DIR
# Environment (defaults in brackets):
#   DEPLOYMENT_MODE [dev]             dev (plain HTTP) | prod (HTTPS, HTTP redirects)
#   PROXY_HTTP_LISTEN [80]            nginx `listen` value of the HTTP server
#   PROXY_HTTPS_LISTEN [443]          nginx `listen` value of the HTTPS server (prod)
#   PROXY_HTTPS_PUBLIC_PORT [443]     port in redirects to HTTPS (as clients see it)
#   PROXY_TLS_CERT, PROXY_TLS_KEY     certificate chain and key (prod)
#   PROXY_PUBLIC_UPSTREAM [session-manager:8888]  the service's public port
#   PROXY_MQTT_WS_UPSTREAM [broker:9001]          the broker's WebSocket listener
#   PROXY_WWW_DIR [directory of this script/www]  the static page
#   PROXY_RUNTIME_DIR [/run/nginx-ism]            pid file and temp files
#   PROXY_ACCESS_LOG [/dev/stdout] PROXY_ERROR_LOG [/dev/stderr]
#   PROXY_MAX_BODY_SIZE [16k] PROXY_WORKER_PROCESSES [auto]
set -eu
here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
out=${1:?usage: render-config.sh OUT_DIR}
mkdir -p "$out"
out=$(CDPATH='' cd -- "$out" && pwd)

DEPLOYMENT_MODE=${DEPLOYMENT_MODE:-dev}
PROXY_HTTP_LISTEN=${PROXY_HTTP_LISTEN:-80}
PROXY_HTTPS_LISTEN=${PROXY_HTTPS_LISTEN:-443}
PROXY_HTTPS_PUBLIC_PORT=${PROXY_HTTPS_PUBLIC_PORT:-443}
PROXY_TLS_CERT=${PROXY_TLS_CERT:-/tls/server.pem}
PROXY_TLS_KEY=${PROXY_TLS_KEY:-/tls/server.key}
PROXY_PUBLIC_UPSTREAM=${PROXY_PUBLIC_UPSTREAM:-session-manager:8888}
PROXY_MQTT_WS_UPSTREAM=${PROXY_MQTT_WS_UPSTREAM:-broker:9001}
PROXY_WWW_DIR=${PROXY_WWW_DIR:-$here/www}
PROXY_RUNTIME_DIR=${PROXY_RUNTIME_DIR:-/run/nginx-ism}
PROXY_ACCESS_LOG=${PROXY_ACCESS_LOG:-/dev/stdout}
PROXY_ERROR_LOG=${PROXY_ERROR_LOG:-/dev/stderr}
PROXY_MAX_BODY_SIZE=${PROXY_MAX_BODY_SIZE:-16k}
PROXY_WORKER_PROCESSES=${PROXY_WORKER_PROCESSES:-auto}
PROXY_CONF_DIR=$out
if [ "$PROXY_HTTPS_PUBLIC_PORT" = 443 ]; then
    PROXY_HTTPS_PORT_SUFFIX=""
else
    PROXY_HTTPS_PORT_SUFFIX=":$PROXY_HTTPS_PUBLIC_PORT"
fi
export PROXY_HTTP_LISTEN PROXY_HTTPS_LISTEN PROXY_HTTPS_PORT_SUFFIX PROXY_TLS_CERT \
    PROXY_TLS_KEY PROXY_PUBLIC_UPSTREAM PROXY_MQTT_WS_UPSTREAM PROXY_WWW_DIR \
    PROXY_RUNTIME_DIR PROXY_ACCESS_LOG PROXY_ERROR_LOG PROXY_MAX_BODY_SIZE \
    PROXY_WORKER_PROCESSES PROXY_CONF_DIR

case "$DEPLOYMENT_MODE" in
dev | prod) ;;
*)
    echo "render-config: unknown DEPLOYMENT_MODE '$DEPLOYMENT_MODE' (dev, prod)" >&2
    exit 2
    ;;
esac

# Only our variables are substituted: nginx's own $variables stay as written.
variables='${PROXY_HTTP_LISTEN} ${PROXY_HTTPS_LISTEN} ${PROXY_HTTPS_PORT_SUFFIX}
${PROXY_TLS_CERT} ${PROXY_TLS_KEY} ${PROXY_PUBLIC_UPSTREAM} ${PROXY_MQTT_WS_UPSTREAM}
${PROXY_WWW_DIR} ${PROXY_RUNTIME_DIR} ${PROXY_ACCESS_LOG} ${PROXY_ERROR_LOG}
${PROXY_MAX_BODY_SIZE} ${PROXY_WORKER_PROCESSES} ${PROXY_CONF_DIR}'

mkdir -p "$PROXY_RUNTIME_DIR"
envsubst "$variables" <"$here/nginx.conf.template" >"$out/nginx.conf"
envsubst "$variables" <"$here/server-$DEPLOYMENT_MODE.conf.template" >"$out/server.conf"
envsubst "$variables" <"$here/locations.conf.template" >"$out/locations.conf"
cp "$here/proxy-headers.conf" "$here/security-headers.conf" "$here/json-errors.conf" "$out/"
echo "$out/nginx.conf"
