#!/bin/bash
# Three VMs from the appliance image form one cluster from cloud-init data
# alone, as on a real deployment (what vagrant/ does with libvirt, here
# with plain QEMU). Each VM has two NICs: QEMU user networking with
# loopback port forwards for the checks from the host, and a private
# segment between the three VMs (10.99.0.0/24), carried by QEMU as UDP
# multicast on the host's loopback, so no traffic leaves the machine.
# Checks: all three /healthz 200, three voters, a message sent to one node
# is committed and visible on another.
#
#   packer/scripts/image-cluster-test.sh build/image/lifeline.qcow2 bin/lifeline
set -euo pipefail
image=$(readlink -f "${1:?usage: image-cluster-test.sh IMAGE LIFELINE_BINARY}")
cli=$(readlink -f "${2:?usage: image-cluster-test.sh IMAGE LIFELINE_BINARY}")
BOOT_TIMEOUT=${BOOT_TIMEOUT:-1500}
ACCEL=${ACCEL:-tcg}
work=$(mktemp -d /var/tmp/lifeline-cluster-test.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
fail() {
	echo "image-cluster-test FAILED: $*" >&2
	for i in 1 2 3; do echo "--- mx$i console (last 25 lines) ---" >&2; tail -25 "$work/mx$i-console.log" >&2 || true; done
	exit 1
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

token=$(openssl rand -hex 32)
key=$(openssl rand -hex 32)
mcast=$(python3 -c 'import random; print(random.randint(20000, 60000))')
declare -A HTTP SMTP
start=$(date +%s)
for i in 1 2 3; do
	ip=10.99.0.1$i
	join=""
	for j in 1 2 3; do [ "$j" = "$i" ] || join="$join      join = 10.99.0.1$j:7946
"; done
	cat > "$work/mx$i-user-data" <<UD
#cloud-config
hostname: mx$i
write_files:
  - path: /etc/lifeline/cluster.key
    owner: root:lifeline
    permissions: "0640"
    content: |
      $key
  - path: /etc/lifeline/admin.token
    owner: root:lifeline
    permissions: "0640"
    content: |
      $token
  - path: /etc/lifeline/lifeline.conf
    owner: root:lifeline
    permissions: "0640"
    content: |
      id = mx$i
      hostname = mx$i.lifeline.test
      raft-addr = $ip:7000
      gossip-addr = $ip:7946
${join}      bootstrap-expect = 3
      cluster-key-file = /etc/lifeline/cluster.key
      admin-token-file = /etc/lifeline/admin.token
UD
	cat > "$work/mx$i-network" <<NC
version: 2
ethernets:
  nat:
    match: {macaddress: "52:54:00:12:00:0$i"}
    dhcp4: true
  cluster:
    match: {macaddress: "52:54:00:12:01:0$i"}
    addresses: [$ip/24]
NC
	printf 'instance-id: mx%s-cluster-test\nlocal-hostname: mx%s\n' "$i" "$i" > "$work/mx$i-meta-data"
	cloud-localds --network-config="$work/mx$i-network" "$work/mx$i-seed.iso" "$work/mx$i-user-data" "$work/mx$i-meta-data"
	qemu-img create -q -f qcow2 -F qcow2 -b "$image" "$work/mx$i.qcow2"
	HTTP[$i]=$(free_port); SMTP[$i]=$(free_port)
	qemu-system-x86_64 -name "lifeline-mx$i" -machine q35 -accel "$ACCEL" -cpu max -smp 1 -m 768 \
		-drive "file=$work/mx$i.qcow2,if=virtio,format=qcow2" \
		-drive "file=$work/mx$i-seed.iso,if=virtio,format=raw,readonly=on" \
		-netdev "user,id=n0,hostfwd=tcp:127.0.0.1:${SMTP[$i]}-:25,hostfwd=tcp:127.0.0.1:${HTTP[$i]}-:8080" \
		-device "virtio-net-pci,netdev=n0,mac=52:54:00:12:00:0$i" \
		-netdev "socket,id=n1,mcast=230.0.0.1:$mcast,localaddr=127.0.0.1" \
		-device "virtio-net-pci,netdev=n1,mac=52:54:00:12:01:0$i" \
		-display none -serial "file:$work/mx$i-console.log" -monitor none 2>"$work/mx$i-qemu.log" &
	pids+=($!)
	echo "mx$i: $ip, HTTP 127.0.0.1:${HTTP[$i]}, SMTP 127.0.0.1:${SMTP[$i]}"
done

for i in 1 2 3; do
	until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:${HTTP[$i]}/healthz")" = 200 ]; do
		for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || fail "a QEMU exited"; done
		[ $(( $(date +%s) - start )) -lt "$BOOT_TIMEOUT" ] || fail "mx$i not healthy within ${BOOT_TIMEOUT}s"
		sleep 3
	done
	echo "mx$i healthy after $(( $(date +%s) - start ))s"
done
export LIFELINE_TOKEN=$token
status=$(LIFELINE_SERVER="http://127.0.0.1:${HTTP[1]}" "$cli" status) || fail "status"
echo "$status"
[ "$(echo "$status" | grep -c ' voter$')" = 3 ] || fail "not three voters"
# Under software emulation three VMs share the host's cores, and a slow
# heartbeat can start an election: retry a write that met one.
ok=""
for _ in $(seq 30); do
	if LIFELINE_SERVER="http://127.0.0.1:${HTTP[1]}" "$cli" admin domain add customer.test --destination 127.0.0.1:1; then ok=1; break; fi
	sleep 2
done
[ -n "$ok" ] || fail "domain add"
reply=$(python3 - "${SMTP[2]}" <<'PY'
import smtplib, sys, time
for _ in range(30):
    try:
        s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=60)
        s.ehlo("cluster-test.example")
        s.mail("sender@example.net")
        code, msg = s.rcpt("user@customer.test")
        if code != 250:   # the domain not applied on this node yet
            s.quit(); time.sleep(1); continue
        code, msg = s.data(b"Subject: cluster test\r\n\r\nhello\r\n")
        s.quit()
        if code == 250:   # 451 while an election runs: send again
            print(code, msg.decode()); break
        time.sleep(1)
    except Exception as e:
        time.sleep(1)
PY
)
echo "SMTP to mx2: $reply"
case "$reply" in 250*) ;; *) fail "message not queued on mx2: $reply" ;; esac
id=${reply##* }
for _ in $(seq 30); do
	LIFELINE_SERVER="http://127.0.0.1:${HTTP[3]}" "$cli" admin queue show "$id" >/dev/null 2>&1 && break
	sleep 1
done
LIFELINE_SERVER="http://127.0.0.1:${HTTP[3]}" "$cli" admin queue show "$id" | head -3 || fail "message $id not visible on mx3"
echo "image-cluster-test passed: three VMs formed a cluster from cloud-init data in $(( $(date +%s) - start ))s ($ACCEL)"
