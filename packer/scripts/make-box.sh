#!/bin/bash
# Packs a qcow2 disk as a Vagrant box for the libvirt provider
# (box format: box.img, metadata.json, Vagrantfile in a tar.gz).
set -euo pipefail
img=$1 out=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$img" "$tmp/box.img"
vsize=$(qemu-img info --output=json "$img" | python3 -c 'import json,sys; print((json.load(sys.stdin)["virtual-size"] + (1<<30) - 1) >> 30)')
cat > "$tmp/metadata.json" <<META
{"provider": "libvirt", "format": "qcow2", "virtual_size": $vsize}
META
cat > "$tmp/Vagrantfile" <<'VF'
Vagrant.configure("2") do |config|
  config.vm.synced_folder ".", "/vagrant", disabled: true
  config.vm.provider :libvirt do |libvirt|
    libvirt.driver = "kvm"
    libvirt.disk_bus = "virtio"
    libvirt.nic_model_type = "virtio"
  end
end
VF
tar -C "$tmp" -czf "$out" metadata.json Vagrantfile box.img
echo "box: $out"
