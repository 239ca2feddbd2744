#!/usr/bin/env bash
# A POS terminal in a shell script: one purchase over MQTT (JSON codec, QoS 1), then a
# duplicate-safe retry of the same purchase (same idempotency key, repeat flag set).
# Needs mosquitto_rr (mosquitto-clients 2.x) and openssl. See docs/protocol.md and docs/mqtt.md.
#
# usage: POSH_PASSWORD=... POSH_MAC_KEY=... mqtt-terminal.sh HOST PORT USER TERMINAL_ID [AMOUNT] [PAN]
# POSH_PASSWORD is the terminal's broker password and POSH_MAC_KEY its "mac_key" (hex), both
# from the key file `posharness acquirer serve` wrote. Secrets come from the environment
# (readable by this user only), never from the command line (/proc/PID/cmdline is readable
# by everyone): mosquitto_rr reads the password from a config file in a private temporary
# directory, and the HMAC is computed from SHA-256 with the key only ever on a pipe.
set -euo pipefail
if [ $# -lt 4 ] || [ -z "${POSH_PASSWORD:-}" ] || [ -z "${POSH_MAC_KEY:-}" ]; then
  echo "usage: POSH_PASSWORD=... POSH_MAC_KEY=HEX $0 HOST PORT USER TERMINAL_ID [AMOUNT] [PAN]" >&2
  exit 2
fi
if ! [[ $POSH_MAC_KEY =~ ^([0-9a-fA-F]{2}){1,64}$ ]]; then
  echo "POSH_MAC_KEY: not a hex key of 1 to 64 bytes" >&2
  exit 2
fi
host=$1 port=$2 user=$3 tid=$4 key=$POSH_MAC_KEY
amount=${5:-1250} pan=${6:-4000000000000002}
mid=M000000000001 stan=1 idem="$tid-sh-$$-$(date +%s)"
conf=$(mktemp -d)  # 0700: mosquitto_rr's config file, with the password, lives here
trap 'rm -rf "$conf"' EXIT
printf -- '-h %s\n-p %s\n-u %s\n-P %s\n' "$host" "$port" "$user" "$POSH_PASSWORD" >"$conf/mosquitto_rr"

pad() {  # the key, zero-padded to SHA-256's 64-byte block, XORed with $1, as printf escapes
  local i b out=""
  for ((i = 0; i < 64; i++)); do
    b=0
    if ((2 * i < ${#key})); then b=$((16#${key:2*i:2})); fi
    out+=$(printf '\\x%02x' $((b ^ $1)))
  done
  printf '%s' "$out"
}

hex_esc() {  # hex digits on stdin -> printf escapes
  sed 's/../\\x&/g'
}

mac() {  # HMAC-SHA256 over the canonical form (docs/protocol.md); first 16 hex digits
  local inner
  inner=$({ printf "$(pad 0x36)"; printf 'posh-mac-v2\n%s' "$1"; } |
    openssl dgst -sha256 -binary | od -An -v -tx1 | tr -d ' \n')
  { printf "$(pad 0x5c)"; printf "$(hex_esc <<<"$inner")"; } |
    openssl dgst -sha256 -binary | od -An -v -tx1 | tr -d ' \n' | cut -c1-16
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
  if ! resp=$(XDG_CONFIG_HOME=$conf mosquitto_rr -q 1 -t "posh/$tid/req" -e "posh/$tid/resp" \
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
