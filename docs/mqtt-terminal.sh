#!/usr/bin/env bash
# A POS terminal in a shell script: one purchase over MQTT (JSON codec, QoS 1), then a
# duplicate-safe retry of the same purchase (same idempotency key, repeat flag set).
# Needs mosquitto_rr (mosquitto-clients 2.x) and openssl. See docs/mqtt.md.
#
# usage: mqtt-terminal.sh HOST PORT USER PASSWORD TERMINAL_ID MAC_KEY_HEX [AMOUNT] [PAN]
# MAC_KEY_HEX is the terminal's "mac_key" in the key file `posharness acquirer serve` wrote.
# (A demonstration: PASSWORD and MAC_KEY_HEX show on command lines, as mosquitto_rr's -P does.)
set -euo pipefail
host=$1 port=$2 user=$3 pass=$4 tid=$5 key=$6
amount=${7:-1250} pan=${8:-4000000000000002}
mid=M000000000001 stan=1 idem="$tid-sh-$$-$(date +%s)"
auth=(-h "$host" -p "$port" -u "$user" -P "$pass")

mac() {  # HMAC-SHA256 over the canonical form (docs/mqtt.md); first 16 hex digits
  printf 'posh-mac-v2\n%s' "$1" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$key" | sed 's/^.*= //' | cut -c1-16
}

lp() {  # one field, length-prefixed: "<bytes>:<value>" (the values here are ASCII)
  local v
  for v in "$@"; do printf '%d:%s' "${#v}" "$v"; done
}

request() {  # $1 = repeat flag: 0 for the first send, 1 for a retry
  local repeat=$1 payload sent_ms
  sent_ms=$(date +%s%3N)  # transmission time, MAC-covered: the host refuses stale frames
  # Every field but the MAC, in Message field order; items is its count (0).
  payload=$(lp 0200 "$tid" "$mid" "$stan" "$pan" 000000 "$amount" 978 "" "" "" "$idem" \
    "$repeat" 0 "" 0 0 0 0 0 0 "$sent_ms")
  local json_repeat=""
  [ "$repeat" = 1 ] && json_repeat=',"repeat":true'
  printf '{"amount":%s,"idem_key":"%s","mac":"%s","merchant_id":"%s","mti":"0200","pan":"%s"%s,"sent_ms":%s,"stan":%s,"terminal_id":"%s"}' \
    "$amount" "$idem" "$(mac "$payload")" "$mid" "$pan" "$json_repeat" "$sent_ms" "$stan" "$tid"
}

# A missing field is empty, not an error (an RC 30 answer carries no rrn).
field() { { grep -o "\"$1\":\"[^\"]*\"" || true; } | cut -d'"' -f4; }

# One connection per send (the broker allows one per login: its client id is the user
# name): mosquitto_rr subscribes to the response topic, publishes, waits for one answer.
for repeat in 0 1; do
  [ "$repeat" = 0 ] && label=first || label=retry
  if ! resp=$(mosquitto_rr "${auth[@]}" -q 1 -t "posh/$tid/req" -e "posh/$tid/resp" \
    -m "$(request $repeat)" -W 10); then
    echo "$label: no answer within 10 s (wrong credentials, key or clock? see the host's log)" >&2
    exit 1
  fi
  rc=$(field rc <<<"$resp") rrn=$(field rrn <<<"$resp")
  echo "$label rc=$rc rrn=$rrn"
  if [ "$rc" != 00 ]; then
    echo "$label: refused: $resp" >&2
    exit 1
  fi
done
