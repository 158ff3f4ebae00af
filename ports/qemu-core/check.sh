#!/usr/bin/env bash
# Runs the QEMU Core against a real cloud and checks every step: the RSA handshake and Hello, Describe, the four
# Tinker functions and two variables through the `spark` CLI, an event that `spark subscribe` sees, an OTA image
# sent with `spark flash --cloud` and checked by the firmware, and the firmware's own report (stack high-water mark,
# no heap). The last line gives flash and RAM against the Core's 128 KiB / 20 KiB. Exits non-zero on any failure.
#
#   SPARK_CLOUD_BIN  the cloud binary (default: the workspace's release `spark-cloud`)
#   SPARK_BIN        the CLI binary (default: the workspace's release `spark`)
#   QEMU_TIMEOUT     seconds QEMU may run (default 180)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
cloud_bin="${SPARK_CLOUD_BIN:-$target_dir/release/spark-cloud}"
spark_bin="${SPARK_BIN:-$target_dir/release/spark}"
qemu_timeout="${QEMU_TIMEOUT:-180}"

step() { echo "check: $*"; }
fail() { echo "check: FAILED: $*" >&2; exit 1; }

for bin in "$cloud_bin" "$spark_bin"; do
    [[ -x "$bin" ]] || fail "$bin is missing (build it with cargo build --release, or set SPARK_CLOUD_BIN / SPARK_BIN)"
done
for tool in openssl curl python3 llvm-objcopy llvm-size; do
    command -v "$tool" >/dev/null || fail "$tool is required"
done
if ! command -v qemu-system-arm >/dev/null; then
    step "installing qemu-system-arm"
    apt-get update >/dev/null && apt-get install -y qemu-system-arm >/dev/null || fail "cannot install qemu-system-arm"
fi

work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# The cloud, on free loopback ports.
"$cloud_bin" --dir "$work/cloud" --http 127.0.0.1:0 --device 127.0.0.1:0 >"$work/cloud.out" 2>"$work/cloud.err" &
pids+=($!)
for _ in $(seq 100); do [[ -s "$work/cloud.out" ]] && break; sleep 0.1; done
[[ -s "$work/cloud.out" ]] || fail "the cloud did not start: $(cat "$work/cloud.err")"
field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$work/cloud.out" "$1"; }
http="$(field http)"
device_port="$(field device)"
step "cloud at http://$http, devices at $device_port"

# A user, a token, a device key provisioned for a fresh id.
curl -sf -X POST "http://$http/v1/users" -d username=qemu@example.com -d password=qemu-core-check >/dev/null \
    || fail "cannot create a user"
token="$(curl -sf -u spark:spark -X POST "http://$http/oauth/token" -d grant_type=password \
    -d username=qemu@example.com -d password=qemu-core-check \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')" || fail "cannot get a token"
export SPARK_API_URL="http://$http" PARTICLE_ACCESS_TOKEN="$token"
device_id="$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
openssl genrsa -out "$work/device.pem" 1024 2>/dev/null
openssl rsa -in "$work/device.pem" -outform DER -out "$work/device.der" 2>/dev/null
openssl rsa -in "$work/device.pem" -pubout -out "$work/device.pub.pem" 2>/dev/null
curl -sf -H "Authorization: Bearer $token" -X POST "http://$http/v1/provisioning/$device_id" \
    --data-urlencode "publicKey@$work/device.pub.pem" >/dev/null || fail "cannot provision $device_id"
openssl pkey -pubin -in "$work/cloud/default_key.pub.pem" -outform DER -out "$work/server.der"
step "device $device_id provisioned"

# The firmware, with the keys and id in its flash.
step "building the firmware"
QEMU_CORE_DEVICE_KEY="$work/device.der" QEMU_CORE_SERVER_KEY="$work/server.der" QEMU_CORE_DEVICE_ID="$device_id" \
    cargo build --quiet --locked --release --target thumbv7m-none-eabi --manifest-path "$here/Cargo.toml" \
        --target-dir "$target_dir" \
    || fail "the firmware does not build"
elf="$target_dir/thumbv7m-none-eabi/release/qemu-core"

# A subscriber first, so that it sees the events the device publishes.
"$spark_bin" subscribe qemu-core --count 2 >"$work/events.jsonl" 2>"$work/subscribe.err" &
subscriber=$!
pids+=($subscriber)
sleep 1

: >"$work/qemu.log"
timeout "$qemu_timeout" qemu-system-arm -M mps2-an385 -nographic -monitor none \
    -semihosting-config enable=on,target=native -icount shift=0 \
    -serial "tcp:$device_port" -kernel "$elf" >"$work/qemu.log" 2>&1 &
qemu=$!
pids+=($qemu)

for _ in $(seq 300); do grep -q 'connected' "$work/qemu.log" && break; sleep 0.1; done
grep -q 'connected' "$work/qemu.log" || fail "no handshake: $(cat "$work/qemu.log")"
step "handshake and Hello done"

info="$("$spark_bin" info "$device_id")" || fail "spark info: $info"
for name in digitalread digitalwrite analogread analogwrite; do
    grep -q "int $name(String args)" <<<"$info" || fail "Describe lacks $name: $info"
done
for name in "uptime (int32)" "board (string)"; do
    grep -qF "$name" <<<"$info" || fail "Describe lacks $name: $info"
done
step "Describe lists the four Tinker functions and both variables"

expect_call() {
    local got
    got="$("$spark_bin" call "$device_id" "$1" "$2")" || fail "spark call $1 $2: $got"
    [[ "$got" == "$3" ]] || fail "spark call $1 $2 gave $got, expected $3"
}
expect_call digitalwrite D7,HIGH 1
expect_call digitalread D7 1
expect_call digitalwrite D7,LOW 1
expect_call digitalread D7 0
expect_call analogwrite A0,200 1
expect_call analogread A0 3211
expect_call digitalwrite X1,HIGH -3
step "Tinker: digitalwrite, digitalread, analogwrite, analogread answer as Tinker does"

board="$("$spark_bin" get "$device_id" board)" || fail "spark get board: $board"
[[ "$board" == "qemu mps2-an385" ]] || fail "board reads $board"
uptime="$("$spark_bin" get "$device_id" uptime)" || fail "spark get uptime: $uptime"
[[ "$uptime" =~ ^[0-9]+$ ]] || fail "uptime reads $uptime"
step "variables: board = $board, uptime = $uptime"

# OTA: the firmware's own image, which passes its check (a vector table for this board).
llvm-objcopy -O binary "$elf" "$work/image.bin"
size="$(stat -c %s "$work/image.bin")"
crc="$(python3 -c 'import sys,zlib; print("%08x" % zlib.crc32(open(sys.argv[1],"rb").read()))' "$work/image.bin")"
# --force: the image is this board's firmware (linked at 0x0), not a Core application at 0x08005000.
"$spark_bin" flash --cloud --force "$device_id" "$work/image.bin" >"$work/flash.out" 2>&1 || fail "spark flash: $(cat "$work/flash.out")"
step "spark flash --cloud sent $size bytes (CRC-32 $crc)"

status=0
wait "$qemu" || status=$?
[[ $status -eq 0 ]] || fail "the firmware exited with $status: $(cat "$work/qemu.log")"
grep -q "update finished, $size bytes, checked Some(($size, $((16#$crc))))" "$work/qemu.log" \
    || fail "the firmware did not receive and check the image: $(cat "$work/qemu.log")"
step "the firmware received the image, checked its vector table and CRC-32, and stopped to boot it"

for _ in $(seq 50); do [[ "$(wc -l <"$work/events.jsonl")" -ge 2 ]] && break; sleep 0.1; done
grep -q '"qemu-core/online"' "$work/events.jsonl" || fail "spark subscribe did not see qemu-core/online: $(cat "$work/events.jsonl" "$work/subscribe.err")"
grep -q "\"ok $size $crc\"" "$work/events.jsonl" || fail "spark subscribe did not see the OTA result: $(cat "$work/events.jsonl")"
step "spark subscribe saw qemu-core/online and qemu-core/ota (ok $size $crc)"

sed -n 's/^qemu-core: //p' "$work/qemu.log" | grep -E 'stack|heap|RAM|instructions|DeviceConnection' | sed 's/^/  /'
grep -q 'heap: 0 B' "$work/qemu.log" || fail "the firmware did not report its heap"
# The private operation's instruction count must not depend on the data: three messages, one count (to SysTick's
# 40-instruction resolution and one SysTick interrupt of the difference).
read -r -a private_ops <<<"$(sed -n 's/.*private operation on three messages: \([0-9 ]*\) instructions/\1/p' "$work/qemu.log")"
[[ ${#private_ops[@]} -eq 3 ]] || fail "the firmware did not time its private operation"
spread=$(printf '%s\n' "${private_ops[@]}" | sort -n | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print hi - lo }')
(( spread <= 120 )) || fail "the private operation's instruction count depends on the message: ${private_ops[*]}"
step "the private operation takes ${private_ops[0]} instructions whatever the message (spread $spread)"

sizes="$(llvm-size -A "$elf")"
section() { awk -v s="$1" '$1 == s { print $2 }' <<<"$sizes"; }
flash=$(( $(section .vector_table) + $(section .text) + $(section .rodata) + $(section .data) ))
ram_line="$(grep 'RAM: statics' "$work/qemu.log")"
ram="$(sed -E 's/.* = ([0-9]+) B of.*/\1/' <<<"$ram_line")"
(( flash <= 128 * 1024 )) || fail "flash $flash B is over 128 KiB"
(( ram <= 20 * 1024 )) || fail "RAM $ram B is over 20 KiB"
echo "check: ok: flash $flash B of 131072 B ($(( flash * 100 / 131072 ))%), RAM $ram B of 20480 B ($(( ram * 100 / 20480 ))%, statics and painted stack)"
