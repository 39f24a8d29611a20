#!/bin/sh
# Proxy container entrypoint: renders the configuration for DEPLOYMENT_MODE, checks it,
# then becomes nginx (in the foreground, logging to stdout/stderr).
set -eu
conf=$(/etc/nginx-ism/render-config.sh /etc/nginx-ism/rendered)
nginx -t -q -c "$conf"
exec nginx -c "$conf" -g 'daemon off;'
