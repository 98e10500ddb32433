#!/bin/bash
# The container health check: GET /health on loopback, succeeding on HTTP 200. The image has
# no curl; bash's /dev/tcp is enough. The port is KEEL_BIND's (0.0.0.0 is no destination).
set -eu
bind="${KEEL_BIND:-0.0.0.0:8080}"
exec 3<>"/dev/tcp/127.0.0.1/${bind##*:}"
printf 'GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' >&3
read -r -t 3 _ status _ <&3
[ "$status" = 200 ]
