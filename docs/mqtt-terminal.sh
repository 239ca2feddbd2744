#!/usr/bin/env bash
# A POS terminal in a shell script: one purchase over MQTT (JSON codec, QoS 1), then a
# duplicate-safe retry of the same purchase (same idempotency key, repeat flag set).
# Needs mosquitto_pub, mosquitto_sub and openssl. See docs/mqtt.md.
#
# usage: mqtt-terminal.sh HOST PORT USER PASSWORD TERMINAL_ID MAC_KEY [AMOUNT] [PAN]
set -euo pipefail
host=$1 port=$2 user=$3 pass=$4 tid=$5 key=$6
amount=${7:-1250} pan=${8:-4000000000000002}
mid=M000000000001 stan=1 idem="$tid-sh-$$-$(date +%s)"
auth=(-h "$host" -p "$port" -u "$user" -P "$pass")
client="$tid-sh"

mac() {  # HMAC-SHA256 over every field but the MAC, in Message field order; first 16 hex
  printf '%s' "$1" | openssl dgst -sha256 -hmac "$key" | sed 's/^.*= //' | cut -c1-16
}

request() {  # $1 = repeat flag: False for the first send, True for a retry
  local repeat=$1 payload
  payload="mti=0200|terminal_id=$tid|merchant_id=$mid|stan=$stan|pan=$pan|processing_code=000000"
  payload+="|amount=$amount|currency=978|rrn=|rc=|auth_code=|idem_key=$idem|repeat=$repeat"
  payload+="|orig_stan=0|orig_key=|debit_count=0|debit_amount=0|credit_count=0|credit_amount=0"
  payload+="|batch_no=0|items="
  local json_repeat=""
  [ "$repeat" = True ] && json_repeat=',"repeat":true'
  printf '{"amount":%s,"idem_key":"%s","mac":"%s","merchant_id":"%s","mti":"0200","pan":"%s"%s,"stan":%s,"terminal_id":"%s"}' \
    "$amount" "$idem" "$(mac "$payload")" "$mid" "$pan" "$json_repeat" "$stan" "$tid"
}

field() { grep -o "\"$1\":\"[^\"]*\"" | cut -d'"' -f4; }

# Register a persistent session first, so no response can be missed.
mosquitto_sub "${auth[@]}" -i "$client" -c -q 1 -t "posh/$tid/resp" -E
for repeat in False True; do
  mosquitto_pub "${auth[@]}" -q 1 -t "posh/$tid/req" -m "$(request $repeat)"
  resp=$(mosquitto_sub "${auth[@]}" -i "$client" -c -q 1 -t "posh/$tid/resp" -C 1 -W 10)
  rc=$(field rc <<<"$resp") rrn=$(field rrn <<<"$resp")
  [ "$repeat" = False ] && label=first || label=retry
  echo "$label rc=$rc rrn=$rrn"
done
