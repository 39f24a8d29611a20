#!/bin/sh
# Downloads the session manager's JWKS (its token-verification public keys) into FILE,
# replacing FILE atomically and only with a document that holds at least one key.
#
# usage: fetch-jwks.sh URL FILE [WAIT_SECS]
# Retries for up to WAIT_SECS (default 60) while the service is starting.
# Exit status: 0 FILE was written with new content, 3 FILE already had this content,
# 1 no usable JWKS could be fetched.
set -eu
url=${1:?usage: fetch-jwks.sh URL FILE [WAIT_SECS]}
file=${2:?usage: fetch-jwks.sh URL FILE [WAIT_SECS]}
wait_secs=${3:-60}
tmp="$file.download.$$"
trap 'rm -f "$tmp"' EXIT

deadline=$(( $(date +%s) + wait_secs ))
while :; do
    if curl -fsS --max-time 5 -o "$tmp" "$url" 2>/dev/null && grep -q '"kid"' "$tmp"; then
        break
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "fetch-jwks: no JWKS with a key at $url after ${wait_secs}s" >&2
        exit 1
    fi
    sleep 1
done

if [ -f "$file" ] && cmp -s "$tmp" "$file"; then
    exit 3
fi
chmod 0644 "$tmp"
mv -f "$tmp" "$file"
echo "fetch-jwks: keys from $url written to $file" >&2
