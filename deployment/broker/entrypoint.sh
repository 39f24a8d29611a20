#!/bin/sh
# Broker container entrypoint (runs as root, mosquitto drops to the `mosquitto` user):
# copies the TLS certificate (and the client CA, when there is one) where mosquitto can
# read it, renders the configuration for
# MQTT_AUTH_MODE (fetching the service's JWKS in the JWT modes), keeps the JWKS fresh for
# key rotation, then becomes mosquitto.
set -eu
conf_dir=/run/mosquitto-ism
tls_dir=${TLS_DIR:-/tls}

install -d -o mosquitto -g mosquitto -m 0750 "$conf_dir" "$conf_dir/tls"
install -o mosquitto -g mosquitto -m 0644 "$tls_dir/server.pem" "$conf_dir/tls/server.pem"
install -o mosquitto -g mosquitto -m 0600 "$tls_dir/server.key" "$conf_dir/tls/server.key"
export BROKER_TLS_CERT="$conf_dir/tls/server.pem" BROKER_TLS_KEY="$conf_dir/tls/server.key"
# The client CA (the session manager's entrypoint creates it): the certificate listener.
if [ -s "$tls_dir/client-ca.pem" ]; then
    install -o mosquitto -g mosquitto -m 0644 "$tls_dir/client-ca.pem" "$conf_dir/tls/client-ca.pem"
    export BROKER_CLIENT_CA_FILE="$conf_dir/tls/client-ca.pem"
fi
export BROKER_PERSISTENCE_DIR=${BROKER_PERSISTENCE_DIR:-/var/lib/mosquitto}
# stderr, not stdout: Mosquitto block-buffers stdout on a pipe, so `docker logs` would see
# its lines only kilobytes later; stderr is unbuffered.
export BROKER_USER=mosquitto BROKER_LOG_DEST=stderr

/etc/mosquitto-ism/render-config.sh "$conf_dir" >/dev/null
if [ "${MQTT_AUTH_MODE:-dev_jwt_auth}" = dev_no_auth ]; then
    echo "broker: MQTT_AUTH_MODE=dev_no_auth: anonymous clients, no token checks, no isolation between sessions (development only)" >&2
fi
chown -R mosquitto:mosquitto "$BROKER_PERSISTENCE_DIR" "$conf_dir"

# Key rotation: poll the JWKS; when it changes, SIGHUP makes the plugin reload its keys
# (clients whose key was withdrawn are disconnected). After `exec` below, $$ is mosquitto.
refresh_secs=${BROKER_JWKS_REFRESH_SECS:-5}
if [ "${MQTT_AUTH_MODE:-dev_jwt_auth}" != dev_no_auth ] && [ -n "${BROKER_JWKS_URL:-}" ] \
    && [ "$refresh_secs" -gt 0 ]; then
    broker_pid=$$
    (
        while sleep "$refresh_secs"; do
            status=0
            /etc/mosquitto-ism/fetch-jwks.sh "$BROKER_JWKS_URL" "$conf_dir/jwks.json" 5 || status=$?
            [ "$status" -eq 0 ] && kill -HUP "$broker_pid"
        done
    ) &
fi

exec mosquitto -c "$conf_dir/mosquitto.conf"
