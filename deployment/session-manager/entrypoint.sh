#!/bin/sh
# `session-manager` in the service image: the container's entrypoint, and the command
# `docker compose exec session-manager session-manager …` runs, in front of the binary
# (installed as session-manager-bin; run natively, e.g. by the tests, the `session-manager`
# on PATH is the binary itself). So every invocation sees the same keys:
# - `serve` (the default) first makes sure what a development stack needs exists. TLS:
#   without certificates in $TLS_DIR, a development CA and server certificate are issued
#   there (`certs`) for the proxy and the broker's TLS listener; bring your own by putting
#   server.pem/server.key there (see docs/DEPLOYMENT.md). The client CA (client-ca.pem,
#   client-ca.key; `certs client-ca`) is issued there too when missing, in every mode, and
#   used for client certificates.
# - `serve` and `export-public-key` in dev_jwt_auth without a configured key: a signing key
#   pair is generated once per algorithm into the keys volume ($KEYS_DIR/RS256/,
#   $KEYS_DIR/ES256/; `keygen`) and used from then on, so changing ISM_JWT_ALG switches keys
#   instead of failing, and an exported public key is the one the service signs with. A
#   $KEYS_DIR/private_key.pem from older versions is still used when it is for the
#   requested algorithm.
# Other subcommands (keygen, certs, hash-admin-key) run unchanged.
set -eu

# Compose passes unset .env entries as empty strings; to the service (and the AWS SDK) an
# empty variable is not the same as an absent one.
for name in $(env | sed -n 's/^\(\(ISM\|AWS\)_[A-Z0-9_]*\|MQTT_AUTH_MODE\|RUST_LOG\)=$/\1/p'); do
    unset "$name"
done

bin=session-manager-bin
command -v "$bin" >/dev/null 2>&1 || bin=session-manager

[ "$#" -gt 0 ] || set -- serve
if [ "$1" = serve ]; then
    tls_dir=${TLS_DIR:-/tls}
    # Bring-your-own certificates may sit in a directory only root can enter (the broker
    # and nginx read them as root); then there is nothing for us to issue or check.
    if [ "${TLS_AUTOGENERATE:-true}" = true ] && [ -d "$tls_dir" ] && [ ! -x "$tls_dir" ]; then
        echo "entrypoint: $tls_dir is not readable by uid $(id -u); leaving its certificates alone" >&2
    elif [ "${TLS_AUTOGENERATE:-true}" = true ] && [ ! -e "$tls_dir/server.pem" ] \
        && [ ! -e "$tls_dir/server.key" ]; then
        hosts=""
        for host in ${TLS_HOSTS:-}; do hosts="$hosts --host $host"; done
        # shellcheck disable=SC2086 # one word per host is intended
        "$bin" certs --out "$tls_dir" $hosts >/dev/null
        echo "entrypoint: development TLS certificates issued into $tls_dir" >&2
    fi
    # The client CA, for every mode (also with certificates of your own): created once
    # where it is missing, then used unless ISM_CLIENT_CA_* name other files.
    # Not being able to issue it only leaves client certificates off.
    if [ "${TLS_AUTOGENERATE:-true}" = true ] && [ -d "$tls_dir" ] && [ -x "$tls_dir" ] \
        && [ -w "$tls_dir" ] && [ ! -e "$tls_dir/client-ca.pem" ] \
        && [ ! -e "$tls_dir/client-ca.key" ]; then
        if "$bin" certs client-ca --out "$tls_dir" >/dev/null; then
            echo "entrypoint: client CA issued into $tls_dir" >&2
        else
            echo "entrypoint: could not issue a client CA into $tls_dir; no client certificates" >&2
        fi
    fi
    if [ -z "${ISM_CLIENT_CA_CERT_FILE:-}" ] && [ -z "${ISM_CLIENT_CA_KEY_FILE:-}" ] \
        && [ -r "$tls_dir/client-ca.pem" ] && [ -r "$tls_dir/client-ca.key" ]; then
        export ISM_CLIENT_CA_CERT_FILE="$tls_dir/client-ca.pem" ISM_CLIENT_CA_KEY_FILE="$tls_dir/client-ca.key"
    fi
fi
if [ "$1" = serve ] || [ "$1" = export-public-key ]; then
    if [ "${MQTT_AUTH_MODE:-dev_jwt_auth}" = dev_jwt_auth ] \
        && [ -z "${ISM_SIGNING_KEY:-}" ] && [ -z "${ISM_SIGNING_KEY_FILE:-}" ]; then
        keys_dir=${KEYS_DIR:-/var/lib/session-manager-keys}
        alg=$(printf '%s' "${ISM_JWT_ALG:-RS256}" | tr '[:lower:]' '[:upper:]')
        case "$alg" in
            RS256 | ES256) ;;
            *) echo "entrypoint: ISM_JWT_ALG must be RS256 or ES256, not $alg" >&2; exit 64 ;;
        esac
        key="$keys_dir/$alg/private_key.pem"
        # Older versions kept one key at the top of the volume; keygen wrote its jwks.json
        # next to it, which names the algorithm.
        if [ ! -e "$key" ] && [ -e "$keys_dir/private_key.pem" ] \
            && grep -q "\"alg\": *\"$alg\"" "$keys_dir/jwks.json" 2>/dev/null; then
            key="$keys_dir/private_key.pem"
        fi
        if [ ! -e "$key" ]; then
            "$bin" keygen --out "$keys_dir/$alg" --alg "$alg" >/dev/null
            echo "entrypoint: $alg signing key generated into $keys_dir/$alg" >&2
        fi
        export ISM_SIGNING_KEY_FILE="$key"
    fi
fi
exec "$bin" "$@"
