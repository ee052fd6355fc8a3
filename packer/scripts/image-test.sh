#!/bin/bash
# Boots the appliance image under QEMU (KVM when /dev/kvm works, software
# emulation otherwise) and checks it from the host through forwarded
# loopback ports:
#   1. with a cloud-init NoCloud seed for a single node: SMTP answers 220,
#      /healthz is 200, the operator token from the seed works, a message
#      to a protected domain gets 250, and a port the firewall closes (SSH)
#      does not answer;
#   2. with no seed: the node says it is not configured, on its console
#      and at its web address, and /healthz is 503.
# Prints the image size and the boot-to-healthy time.
#
#   packer/scripts/image-test.sh build/image/lifeline.qcow2 bin/lifeline
set -euo pipefail
image=${1:?usage: image-test.sh IMAGE.qcow2 LIFELINE_BINARY}
cli=${2:?usage: image-test.sh IMAGE.qcow2 LIFELINE_BINARY}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-900}
TEST_UNCONFIGURED=${TEST_UNCONFIGURED:-1}
ACCEL=${ACCEL:-}
image=$(readlink -f "$image")
cli=$(readlink -f "$cli")
for tool in qemu-system-x86_64 qemu-img cloud-localds openssl curl python3; do
	command -v "$tool" >/dev/null || { echo "image-test: $tool missing; apt-get install qemu-system-x86 qemu-utils cloud-image-utils openssl curl" >&2; exit 1; }
done

work=$(mktemp -d /var/tmp/lifeline-image-test.XXXXXX)
qemu_pid=""
stop_vm() {
	if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
		kill "$qemu_pid"; wait "$qemu_pid" 2>/dev/null || true
	fi
	qemu_pid=""
}
cleanup() { stop_vm; rm -rf "$work"; }
trap cleanup EXIT

if [ -z "$ACCEL" ]; then
	if [ -w /dev/kvm ] && python3 -c 'import os,fcntl; fcntl.ioctl(os.open("/dev/kvm", os.O_RDWR), 0xAE00)' 2>/dev/null; then
		ACCEL=kvm
	else
		ACCEL=tcg
	fi
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "image: $image"
qemu-img info "$image" | grep -E 'virtual size|disk size'
echo "image file: $(du -h --apparent-size "$image" | cut -f1) ($(stat -c %s "$image") bytes); accelerator: $ACCEL"

# boot NAME [SEED]: starts a VM on a copy-on-write overlay of the image.
boot() {
	local name=$1 seed=${2:-}
	qemu-img create -q -f qcow2 -F qcow2 -b "$image" "$work/$name.qcow2"
	P_SMTP=$(free_port); P_HTTP=$(free_port); P_SSH=$(free_port)
	local cpu=max
	[ "$ACCEL" = kvm ] && cpu=host
	local args=(-name "lifeline-$name" -machine q35 -accel "$ACCEL" -cpu "$cpu" -smp 2 -m 1024
		-drive "file=$work/$name.qcow2,if=virtio,format=qcow2"
		-netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$P_SMTP-:25,hostfwd=tcp:127.0.0.1:$P_HTTP-:8080,hostfwd=tcp:127.0.0.1:$P_SSH-:22"
		-device virtio-net-pci,netdev=n0
		-display none -serial "file:$work/$name-console.log" -monitor none)
	[ -n "$seed" ] && args+=(-drive "file=$seed,if=virtio,format=raw,readonly=on")
	BOOT_START=$(date +%s.%N)
	qemu-system-x86_64 "${args[@]}" 2>"$work/$name-qemu.log" &
	qemu_pid=$!
	echo "booting $name: SMTP 127.0.0.1:$P_SMTP, HTTP 127.0.0.1:$P_HTTP, SSH 127.0.0.1:$P_SSH (console: $work/$name-console.log)"
}

# wait_http CODE: waits until /healthz answers CODE; prints the seconds.
wait_http() {
	local want=$1 code deadline=$(( $(date +%s) + BOOT_TIMEOUT ))
	while [ "$(date +%s)" -lt "$deadline" ]; do
		kill -0 "$qemu_pid" 2>/dev/null || { echo "QEMU exited:" >&2; cat "$work"/*-qemu.log >&2; return 1; }
		# QEMU stays up, paused, after a KVM emulation failure.
		if grep -q "KVM internal error" "$work"/*-qemu.log 2>/dev/null; then
			echo "KVM internal error" >&2; return 1
		fi
		code=$(curl -s -o "$work/healthz" -w '%{http_code}' --max-time 5 "http://127.0.0.1:$P_HTTP/healthz" || true)
		if [ "$code" = "$want" ]; then
			python3 -c "import time; print('%.1f' % (time.time() - $BOOT_START))"
			return 0
		fi
		sleep 2
	done
	echo "timed out after ${BOOT_TIMEOUT}s waiting for /healthz $want (last: $code)" >&2
	return 1
}

fail() {
	echo "image-test FAILED: $*" >&2
	echo "--- console (last 60 lines) ---" >&2
	tail -60 "$work"/*-console.log >&2 || true
	exit 1
}

smtp_banner() { # port: prints the server's greeting
	python3 -c "
import socket, sys
s = socket.create_connection(('127.0.0.1', $1), timeout=30)
print(s.makefile('rb').readline().decode().strip())
s.sendall(b'QUIT\r\n')"
}

# --- 1. a configured single node -------------------------------------------
token=$(openssl rand -hex 32)
key=$(openssl rand -hex 32)
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=mx1.lifeline.test" \
	-keyout "$work/tls.key" -out "$work/tls.crt" 2>/dev/null
indent() { sed 's/^/      /'; }
cat > "$work/user-data" <<UD
#cloud-config
hostname: mx1
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
  - path: /etc/lifeline/tls.crt
    owner: root:lifeline
    permissions: "0644"
    content: |
$(indent < "$work/tls.crt")
  - path: /etc/lifeline/tls.key
    owner: root:lifeline
    permissions: "0640"
    content: |
$(indent < "$work/tls.key")
  - path: /etc/lifeline/lifeline.conf
    owner: root:lifeline
    permissions: "0640"
    content: |
      id = mx1
      hostname = mx1.lifeline.test
      bootstrap-expect = 1
      smtp-addr = :25
      http-addr = :8080
      raft-addr = :7000
      gossip-addr = :7946
      cluster-key-file = /etc/lifeline/cluster.key
      admin-token-file = /etc/lifeline/admin.token
      tls-cert = /etc/lifeline/tls.crt
      tls-key = /etc/lifeline/tls.key
UD
printf 'instance-id: lifeline-image-test-1\nlocal-hostname: mx1\n' > "$work/meta-data"
cloud-localds "$work/seed.iso" "$work/user-data" "$work/meta-data"

boot configured "$work/seed.iso"
if ! healthy=$(wait_http 200); then
	# Nested KVM without unrestricted-guest support cannot run the boot
	# loader's real-mode code ("KVM internal error ... emulation
	# failure"); software emulation can.
	if [ "$ACCEL" = kvm ] && grep -q "KVM internal error" "$work/configured-qemu.log" 2>/dev/null; then
		echo "KVM cannot run this boot loader here; retrying under TCG"
		stop_vm
		rm -f "$work/configured.qcow2" "$work/configured-console.log"
		ACCEL=tcg
		boot configured "$work/seed.iso"
		healthy=$(wait_http 200) || fail "the configured node never became healthy"
	else
		fail "the configured node never became healthy"
	fi
fi
echo "boot to healthy: ${healthy}s"
cat "$work/healthz"; echo

banner=$(smtp_banner "$P_SMTP")
case "$banner" in
220*) echo "SMTP: $banner" ;;
*) fail "SMTP did not answer 220: $banner" ;;
esac
ehlo=$(python3 - "$P_SMTP" <<'PY'
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=30)
s.ehlo("image-test.example")
print("STARTTLS" if s.has_extn("starttls") else "no STARTTLS")
s.quit()
PY
)
echo "SMTP EHLO offers: $ehlo"
[ "$ehlo" = STARTTLS ] || fail "the TLS certificate from cloud-init is not used (no STARTTLS)"

export LIFELINE_SERVER="http://127.0.0.1:$P_HTTP" LIFELINE_TOKEN="$token"
"$cli" status || fail "lifeline status with the operator token from the seed"
"$cli" admin domain add customer.test --destination 127.0.0.1:1 || fail "adding a domain"
reply=$(python3 - "$P_SMTP" <<'PY'
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=60)
s.ehlo("image-test.example")
code, msg = s.mail("sender@example.net")
assert code == 250, (code, msg)
code, msg = s.rcpt("user@customer.test")
assert code == 250, (code, msg)
code, msg = s.data(b"From: sender@example.net\r\nTo: user@customer.test\r\nSubject: image test\r\n\r\nhello from the host\r\n")
print(code, msg.decode())
s.quit()
PY
) || fail "SMTP transaction"
echo "SMTP DATA: $reply"
case "$reply" in 250*) ;; *) fail "message not queued: $reply" ;; esac
"$cli" admin queue list | tail -1

# The firewall: sshd runs in the image, but port 22 is closed.
if timeout 8 python3 -c "
import socket,sys
s=socket.create_connection(('127.0.0.1',$P_SSH),timeout=6)
s.settimeout(6)
sys.exit(0 if s.recv(64).startswith(b'SSH-') else 1)" 2>/dev/null; then
	fail "SSH answered through the firewall"
fi
echo "firewall: SSH (22) closed"
unset LIFELINE_SERVER LIFELINE_TOKEN
stop_vm

# --- 2. no configuration ----------------------------------------------------
if [ "$TEST_UNCONFIGURED" = 1 ]; then
	boot unconfigured
	t=$(wait_http 503) || fail "the unconfigured node never answered /healthz"
	grep -q unconfigured "$work/healthz" || fail "/healthz of an unconfigured node: $(cat "$work/healthz")"
	curl -s "http://127.0.0.1:$P_HTTP/" | grep -q "not configured" || fail "the web page does not say the node is not configured"
	for _ in $(seq 60); do grep -q "NOT CONFIGURED" "$work/unconfigured-console.log" && break; sleep 2; done
	grep -q "NOT CONFIGURED" "$work/unconfigured-console.log" || fail "the console does not say the node is not configured"
	echo "unconfigured node: /healthz 503 and a notice page after ${t}s; console: $(grep -a -m1 'NOT CONFIGURED' "$work/unconfigured-console.log" | tr -d '\r' | cut -c1-120)"
	stop_vm
fi

echo "image-test passed: boot to healthy ${healthy}s ($ACCEL), image $(stat -c %s "$image") bytes"
