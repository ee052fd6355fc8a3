#!/bin/bash
# Builds the Lifeline appliance disk image from Debian's packages alone:
# a raw disk with one ext4 partition, debootstrap, the lifeline binary and
# the files in packer/files, extlinux as the boot loader; then converts it
# to qcow2. Runs as root (loop devices, mount, chroot). Packer calls it
# through shell-local; it also runs by hand:
#
#   sudo OUT_DIR=build/image BINARY=bin/lifeline packer/scripts/build-image.sh
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
: "${OUT_DIR:?OUT_DIR: where the image goes}"
: "${BINARY:?BINARY: the lifeline binary to install}"
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
DISK_SIZE=${DISK_SIZE:-4G}
IMAGE_NAME=${IMAGE_NAME:-lifeline}
VERSION=${VERSION:-dev}
# Reused across builds: a rebuild downloads only the package indexes.
CACHE_DIR=${CACHE_DIR:-/var/tmp/lifeline-image-cache}
# A second image with a "vagrant" user (the well-known insecure key, which
# vagrant replaces on first boot) and SSH open, for the Vagrant box only.
VAGRANT_VARIANT=${VAGRANT_VARIANT:-1}

[ "$(id -u)" = 0 ] || { echo "build-image.sh: run as root (loop devices, mount, chroot)" >&2; exit 1; }
for tool in debootstrap sfdisk mkfs.ext4 extlinux qemu-img losetup; do
	command -v "$tool" >/dev/null || { echo "build-image.sh: $tool missing; apt-get install debootstrap fdisk e2fsprogs extlinux qemu-utils mount" >&2; exit 1; }
done
[ -x "$BINARY" ] || { echo "build-image.sh: no binary at $BINARY (make build)" >&2; exit 1; }
file "$BINARY" 2>/dev/null | grep -q 'statically linked' || echo "build-image.sh: note: $BINARY is not static; it needs the image's libc" >&2

mkdir -p "$OUT_DIR" "$CACHE_DIR/debootstrap" "$CACHE_DIR/apt"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
work=$(mktemp -d /var/tmp/lifeline-image.XXXXXX)
raw="$work/disk.raw"
mnt="$work/root"
loop=""

cleanup() {
	set +e
	for m in var/cache/apt/archives dev/pts dev proc sys run; do
		mountpoint -q "$mnt/$m" && umount -l "$mnt/$m"
	done
	mountpoint -q "$mnt" && umount "$mnt"
	[ -n "$loop" ] && losetup -d "$loop"
	rm -rf "$work"
}
trap cleanup EXIT

step() { echo "==> $(date +%T) $*"; }

step "disk: $DISK_SIZE raw, MBR, one ext4 partition"
truncate -s "$DISK_SIZE" "$raw"
echo 'label: dos
start=2048, type=83, bootable' | sfdisk -q "$raw"
# The partition through a loop device at its offset: partition scanning
# (losetup -P) needs udev, which build containers often lack.
part_start=2048
loop=$(losetup -f --show -o $((part_start * 512)) "$raw")
part="$loop"
# extlinux reads ext4 without the 64bit feature.
mkfs.ext4 -q -L lifeline-root -O ^64bit "$part"
mkdir -p "$mnt"
mount "$part" "$mnt"

step "debootstrap $SUITE from $MIRROR"
debootstrap --variant=minbase --cache-dir="$CACHE_DIR/debootstrap" \
	--include=systemd,systemd-sysv,dbus,ca-certificates \
	"$SUITE" "$mnt" "$MIRROR" >"$work/debootstrap.log" 2>&1 || { tail -30 "$work/debootstrap.log"; exit 1; }

step "packages and configuration inside the image"
mount -t proc proc "$mnt/proc"
mount -t sysfs sys "$mnt/sys"
mount --bind /dev "$mnt/dev"
mount --bind /dev/pts "$mnt/dev/pts"
mount -t tmpfs tmpfs "$mnt/run"
# The image's resolv.conf points into /run (systemd-resolved); the build
# resolves names the host's way.
mkdir -p "$mnt/run/systemd/resolve" && cp -L /etc/resolv.conf "$mnt/run/systemd/resolve/stub-resolv.conf"
mount --bind "$CACHE_DIR/apt" "$mnt/var/cache/apt/archives"
install -d -m 0755 "$mnt/tmp/lifeline-files"
cp -a "$here/files/." "$mnt/tmp/lifeline-files/"
install -m 0755 "$BINARY" "$mnt/tmp/lifeline-files/lifeline"
cp "$here/cloud-init/user-data.example" "$mnt/tmp/lifeline-files/user-data.example"
cp "$here/README.md" "$mnt/tmp/lifeline-files/README.md"
install -m 0755 "$here/scripts/provision.sh" "$mnt/tmp/provision.sh"
root_uuid=$(blkid -s UUID -o value "$part")
chroot "$mnt" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
	MIRROR="$MIRROR" SUITE="$SUITE" ROOT_UUID="$root_uuid" VERSION="$VERSION" \
	/bin/bash /tmp/provision.sh

step "boot loader: extlinux"
extlinux --install "$mnt/boot/extlinux" 2>&1 | grep -v '^$' || true
dd if=/usr/lib/EXTLINUX/mbr.bin of="$raw" bs=440 count=1 conv=notrunc status=none
# extlinux learns the partition's first sector from the kernel, which
# reports 0 for an offset loop device: write it into the boot sector's
# "hidden sectors" field (BPB offset 0x1C) itself.
printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $((part_start & 255)) $((part_start >> 8 & 255)) $((part_start >> 16 & 255)) $((part_start >> 24 & 255)))" |
	dd of="$part" bs=1 seek=$((0x1C)) count=4 conv=notrunc status=none

# A last check of the unmounted file system; right after umount the loop
# device can still be busy for a moment.
fsck_root() {
	sync
	for _ in 1 2 3 4 5; do
		e2fsck -fp "$part" >/dev/null 2>&1 && return 0
		sleep 1
	done
	echo "note: e2fsck could not check the root file system (device busy); it was unmounted cleanly" >&2
}

step "product image"
umount "$mnt/var/cache/apt/archives"
rm -rf "$mnt/tmp/"* "$mnt/var/lib/apt/lists/"*
rm -f "$mnt/var/cache/apt/"*.bin
sync
umount "$mnt/dev/pts" "$mnt/dev" "$mnt/proc" "$mnt/sys" "$mnt/run"
fstrim "$mnt" 2>/dev/null || true
umount "$mnt"
fsck_root
qemu-img convert -c -O qcow2 "$raw" "$OUT_DIR/$IMAGE_NAME.qcow2"

if [ "$VAGRANT_VARIANT" = 1 ]; then
	step "vagrant variant: vagrant user, SSH allowed"
	mount "$part" "$mnt"
	mount -t proc proc "$mnt/proc"
	mount --bind /dev "$mnt/dev"
	mount --bind /dev/pts "$mnt/dev/pts"
	mount -t tmpfs tmpfs "$mnt/run"
	mkdir -p "$mnt/run/systemd/resolve" && cp -L /etc/resolv.conf "$mnt/run/systemd/resolve/stub-resolv.conf"
	mount --bind "$CACHE_DIR/apt" "$mnt/var/cache/apt/archives"
	key=$(ls /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub 2>/dev/null | head -1 || true)
	[ -n "$key" ] || { echo "build-image.sh: vagrant's insecure public key not found (apt-get install vagrant)" >&2; exit 1; }
	install -m 0644 "$key" "$mnt/tmp/vagrant.pub"
	install -m 0755 "$here/scripts/vagrant-variant.sh" "$mnt/tmp/vagrant-variant.sh"
	chroot "$mnt" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root /bin/bash /tmp/vagrant-variant.sh
	rm -rf "$mnt/tmp/"*
	umount "$mnt/var/cache/apt/archives" "$mnt/run" "$mnt/dev/pts" "$mnt/dev" "$mnt/proc"
	fstrim "$mnt" 2>/dev/null || true
	umount "$mnt"
	fsck_root
	qemu-img convert -c -O qcow2 "$raw" "$work/vagrant.qcow2"
	step "vagrant box (libvirt)"
	"$here/scripts/make-box.sh" "$work/vagrant.qcow2" "$OUT_DIR/$IMAGE_NAME-libvirt.box"
fi

losetup -d "$loop"; loop=""
chmod 0644 "$OUT_DIR/"*
step "done"
ls -l "$OUT_DIR"
qemu-img info "$OUT_DIR/$IMAGE_NAME.qcow2" | grep -E 'virtual size|disk size'
