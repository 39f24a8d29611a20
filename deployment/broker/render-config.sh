#!/bin/sh
# Renders the broker configuration for one environment into OUT_DIR: mosquitto.conf and,
# depending on MQTT_AUTH_MODE, either the plugin's JWKS (fetched from the session manager)
# or the dev_no_auth ACL file. The broker image's entrypoint and scripts/dev-stack both use
# it, so the native test stack runs exactly the configuration the containers run.
#
# usage: render-config.sh OUT_DIR
# Environment (defaults in brackets):
#   MQTT_AUTH_MODE [dev_jwt_auth]     dev_no_auth | dev_jwt_auth | kms_jwt_auth
#   ISM_ISSUER [ism]                  `iss` tokens must carry
#   BROKER_USER [mosquitto]           user mosquitto drops to when started as root
#   BROKER_BIND_ADDRESS [0.0.0.0]     address of all three listeners
#   BROKER_MQTT_PORT [1883] BROKER_TLS_PORT [8883] BROKER_WS_PORT [9001]
#   BROKER_TLS_CERT, BROKER_TLS_KEY   server certificate (chain) and key, PEM
#   BROKER_CLIENT_CA_FILE []          the client CA (client-ca.pem); set, the JWT modes get a
#                                     TLS listener for client certificates on BROKER_CERT_PORT
#   BROKER_CERT_PORT [8884]
#   BROKER_PERSISTENCE_DIR [/var/lib/mosquitto]
#   BROKER_LOG_DEST [stdout]          or e.g. "file /path/to/mosquitto.log"
#   BROKER_PLUGIN_PATH [/usr/lib/mosquitto-session-auth/libmosquitto_session_auth.so]
#   BROKER_ALLOW_ANY_CLIENT_ID [false]  devices may use any free client id, not just the
#                                     scoped id or their name (first-come among sessions);
#                                     the older BROKER_REQUIRE_CLIENT_ID_MATCH=false means true
#   BROKER_STATE_FILE [BROKER_PERSISTENCE_DIR/mosquitto-session-auth.state]
#                                     the plugin's closed sessions and persistent-session owners
#   BROKER_JWKS_URL                   where to fetch the JWKS (JWT modes), e.g.
#                                     http://session-manager:8888/.well-known/jwks.json
#   BROKER_JWKS_FILE [OUT_DIR/jwks.json]
#   BROKER_JWKS_WAIT_SECS [60]        how long to wait for the service to answer
set -eu
here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
out=${1:?usage: render-config.sh OUT_DIR}
mkdir -p "$out"
out=$(CDPATH='' cd -- "$out" && pwd)

MQTT_AUTH_MODE=${MQTT_AUTH_MODE:-dev_jwt_auth}
ISM_ISSUER=${ISM_ISSUER:-ism}
BROKER_USER=${BROKER_USER:-mosquitto}
BROKER_BIND_ADDRESS=${BROKER_BIND_ADDRESS:-0.0.0.0}
BROKER_MQTT_PORT=${BROKER_MQTT_PORT:-1883}
BROKER_TLS_PORT=${BROKER_TLS_PORT:-8883}
BROKER_WS_PORT=${BROKER_WS_PORT:-9001}
BROKER_TLS_CERT=${BROKER_TLS_CERT:?BROKER_TLS_CERT must name the server certificate}
BROKER_TLS_KEY=${BROKER_TLS_KEY:?BROKER_TLS_KEY must name the server key}
BROKER_CLIENT_CA_FILE=${BROKER_CLIENT_CA_FILE:-}
BROKER_CERT_PORT=${BROKER_CERT_PORT:-8884}
BROKER_PERSISTENCE_DIR=${BROKER_PERSISTENCE_DIR:-/var/lib/mosquitto}
BROKER_LOG_DEST=${BROKER_LOG_DEST:-stdout}
BROKER_PLUGIN_PATH=${BROKER_PLUGIN_PATH:-/usr/lib/mosquitto-session-auth/libmosquitto_session_auth.so}
case "${BROKER_REQUIRE_CLIENT_ID_MATCH:-true}" in
false | no | off | 0) allow_any_default=true ;;
*) allow_any_default=false ;;
esac
BROKER_ALLOW_ANY_CLIENT_ID=${BROKER_ALLOW_ANY_CLIENT_ID:-$allow_any_default}
BROKER_STATE_FILE=${BROKER_STATE_FILE:-$BROKER_PERSISTENCE_DIR/mosquitto-session-auth.state}
BROKER_JWKS_FILE=${BROKER_JWKS_FILE:-$out/jwks.json}
BROKER_CONF_DIR=$out
export MQTT_AUTH_MODE ISM_ISSUER BROKER_USER BROKER_BIND_ADDRESS BROKER_MQTT_PORT \
    BROKER_TLS_PORT BROKER_WS_PORT BROKER_TLS_CERT BROKER_TLS_KEY BROKER_PERSISTENCE_DIR \
    BROKER_LOG_DEST BROKER_PLUGIN_PATH BROKER_ALLOW_ANY_CLIENT_ID BROKER_STATE_FILE \
    BROKER_JWKS_FILE BROKER_CONF_DIR BROKER_CLIENT_CA_FILE BROKER_CERT_PORT

# Only our variables are substituted; anything else that looks like one stays as written.
variables='${ISM_ISSUER} ${BROKER_USER} ${BROKER_BIND_ADDRESS} ${BROKER_MQTT_PORT}
${BROKER_TLS_PORT} ${BROKER_WS_PORT} ${BROKER_TLS_CERT} ${BROKER_TLS_KEY}
${BROKER_PERSISTENCE_DIR} ${BROKER_LOG_DEST} ${BROKER_PLUGIN_PATH}
${BROKER_ALLOW_ANY_CLIENT_ID} ${BROKER_STATE_FILE} ${BROKER_JWKS_FILE} ${BROKER_CONF_DIR}
${BROKER_CLIENT_CA_FILE} ${BROKER_CERT_PORT}'

mkdir -p "$BROKER_PERSISTENCE_DIR"
conf="$out/mosquitto.conf"
envsubst "$variables" <"$here/mosquitto.conf.template" >"$conf.tmp"
case "$MQTT_AUTH_MODE" in
dev_no_auth)
    cp "$here/acl-no-auth" "$out/acl-no-auth"
    envsubst "$variables" <"$here/auth-none.conf.template" >>"$conf.tmp"
    ;;
dev_jwt_auth | kms_jwt_auth)
    if [ -n "${BROKER_JWKS_URL:-}" ]; then
        status=0
        "$here/fetch-jwks.sh" "$BROKER_JWKS_URL" "$BROKER_JWKS_FILE" \
            "${BROKER_JWKS_WAIT_SECS:-60}" || status=$?
        [ "$status" -eq 0 ] || [ "$status" -eq 3 ] || exit 1
    fi
    if [ ! -s "$BROKER_JWKS_FILE" ]; then
        echo "render-config: $BROKER_JWKS_FILE is missing; set BROKER_JWKS_URL or provide the file" >&2
        exit 1
    fi
    if [ -n "$BROKER_CLIENT_CA_FILE" ]; then
        envsubst "$variables" <"$here/cert-listener.conf.template" >>"$conf.tmp"
    fi
    envsubst "$variables" <"$here/auth-jwt.conf.template" >>"$conf.tmp"
    ;;
*)
    echo "render-config: unknown MQTT_AUTH_MODE '$MQTT_AUTH_MODE' (dev_no_auth, dev_jwt_auth, kms_jwt_auth)" >&2
    exit 2
    ;;
esac
mv -f "$conf.tmp" "$conf"
echo "$conf"
