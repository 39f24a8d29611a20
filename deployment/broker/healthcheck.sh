#!/bin/sh
# Broker health, without a connection: Mosquitto logs every connection, so a probe that
# connected would write two log lines per interval. Healthy = mosquitto is PID 1 and its
# plain MQTT listener (BROKER_MQTT_PORT, 1883) is in the kernel's table of listening sockets.
set -eu
port=$(printf '%04X' "${BROKER_MQTT_PORT:-1883}")
[ "$(cat /proc/1/comm)" = mosquitto ] || exit 1
# /proc/net/tcp columns: sl local_address rem_address st ...; st 0A = LISTEN.
awk -v port=":$port" '$4 == "0A" && substr($2, length($2) - 4) == port { found = 1 }
    END { exit !found }' /proc/net/tcp /proc/net/tcp6
