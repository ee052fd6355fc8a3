#!/bin/bash
# Checks the Vagrant box without Vagrant or libvirt: boots its disk under
# QEMU (user networking, loopback port forwards only), logs in over SSH as
# "vagrant" with Vagrant's insecure key, checks passwordless sudo, runs
# this directory's Vagrantfile provisioner for a one-node cluster, and
# waits for /healthz 200 and the operator token to work.
#
#   vagrant/box-test.sh build/image/lifeline-libvirt.box bin/lifeline
set -euo pipefail
box=$(readlink -f "${1:?usage: box-test.sh BOX LIFELINE_BINARY}")
cli=$(readlink -f "${2:?usage: box-test.sh BOX LIFELINE_BINARY}")
here=$(cd "$(dirname "$0")" && pwd)
BOOT_TIMEOUT=${BOOT_TIMEOUT:-900}
ACCEL=${ACCEL:-tcg}
key=$(ls /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant 2>/dev/null | head -1 || true)
[ -n "$key" ] || { echo "box-test: Vagrant's insecure key not found (apt-get install vagrant)" >&2; exit 1; }

work=$(mktemp -d /var/tmp/lifeline-box-test.XXXXXX)
qemu_pid=""
cleanup() {
	[ -n "$qemu_pid" ] && kill "$qemu_pid" 2>/dev/null && wait "$qemu_pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "box-test FAILED: $*" >&2; tail -40 "$work/console.log" >&2 || true; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

tar -xzf "$box" -C "$work" metadata.json box.img
grep -q '"provider": *"libvirt"' "$work/metadata.json" || fail "metadata.json: $(cat "$work/metadata.json")"
install -m 0600 "$key" "$work/key"
P_SSH=$(free_port) P_HTTP=$(free_port) P_SMTP=$(free_port)
start=$(date +%s)
qemu-system-x86_64 -machine q35 -accel "$ACCEL" -cpu max -smp 2 -m 1024 \
	-drive "file=$work/box.img,if=virtio,format=qcow2" \
	-netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$P_SSH-:22,hostfwd=tcp:127.0.0.1:$P_HTTP-:8080,hostfwd=tcp:127.0.0.1:$P_SMTP-:25" \
	-device virtio-net-pci,netdev=n0 -display none -serial "file:$work/console.log" -monitor none 2>"$work/qemu.log" &
qemu_pid=$!
ssh_vm() {
	ssh -i "$work/key" -p "$P_SSH" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
		-o LogLevel=ERROR -o ConnectTimeout=10 -o BatchMode=yes vagrant@127.0.0.1 "$@"
}
echo "booting the box: SSH 127.0.0.1:$P_SSH, HTTP 127.0.0.1:$P_HTTP"
until ssh_vm true 2>/dev/null; do
	kill -0 "$qemu_pid" 2>/dev/null || fail "QEMU exited: $(cat "$work/qemu.log")"
	[ $(( $(date +%s) - start )) -lt "$BOOT_TIMEOUT" ] || fail "no SSH within ${BOOT_TIMEOUT}s"
	sleep 5
done
echo "SSH as vagrant with the insecure key after $(( $(date +%s) - start ))s"
ssh_vm 'sudo -n true' || fail "no passwordless sudo"
echo "unconfigured: $(curl -s "http://127.0.0.1:$P_HTTP/healthz")"

# The Vagrantfile's provisioner, for one node at the VM's user-network address.
export LIFELINE_VAGRANT_SECRETS="$work/secrets"
ruby -e '
module Vagrant; def self.configure(*); end; end
ENV["LIFELINE_NODES"] = "1"
load ARGV[0]
puts provision_script({ name: "mx1", ip: "10.0.2.15", index: 1 })
' "$here/Vagrantfile" > "$work/provision.sh"
ssh_vm 'sudo bash -s' < "$work/provision.sh" || fail "the provisioner failed"
until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P_HTTP/healthz")" = 200 ]; do
	[ $(( $(date +%s) - start )) -lt "$BOOT_TIMEOUT" ] || fail "no /healthz 200 within ${BOOT_TIMEOUT}s"
	sleep 2
done
echo "healthy after $(( $(date +%s) - start ))s"
LIFELINE_SERVER="http://127.0.0.1:$P_HTTP" LIFELINE_TOKEN=$(cat "$work/secrets/admin.token") "$cli" status || fail "status with the Vagrantfile's token"
ssh_vm 'sudo systemctl is-active lifeline && sudo nft list chain inet lifeline extra' || fail "service or SSH rule"
echo "box-test passed"
