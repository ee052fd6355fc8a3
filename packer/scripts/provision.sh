#!/bin/bash
# Runs inside the image (chroot) during build-image.sh: installs the
# packages of the appliance and puts Lifeline's files in place.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
f=/tmp/lifeline-files

cat > /etc/apt/sources.list <<SRC
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb ${MIRROR%/debian}/debian-security $SUITE-security main
SRC
# Kernel symlinks in /boot, where extlinux.conf points.
echo "do_symlinks = yes
link_in_boot = yes" > /etc/kernel-img.conf
echo lifeline > /etc/hostname
cat > /etc/fstab <<FSTAB
UUID=$ROOT_UUID / ext4 errors=remount-ro,noatime 0 1
FSTAB
# No daemons start inside the chroot.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
chmod +x /usr/sbin/policy-rc.d

apt-get update -qq
apt-get install -y -qq --no-install-recommends \
	linux-image-amd64 initramfs-tools udev kmod \
	systemd-timesyncd systemd-resolved \
	cloud-init nftables iproute2 iputils-ping netbase \
	openssh-server python3 procps less ca-certificates \
	>/tmp/apt.log 2>&1 || { tail -40 /tmp/apt.log; exit 1; }
rm -f /usr/sbin/policy-rc.d

# Boot loader configuration (extlinux itself is installed from the host).
mkdir -p /boot/extlinux
cat > /boot/extlinux/extlinux.conf <<EXT
DEFAULT lifeline
TIMEOUT 10
PROMPT 0
SERIAL 0 115200
LABEL lifeline
	MENU LABEL Lifeline ($VERSION)
	LINUX /boot/vmlinuz
	INITRD /boot/initrd.img
	APPEND root=UUID=$ROOT_UUID ro console=tty0 console=ttyS0,115200n8 no_timer_check
EXT

# The service user and its files.
useradd --system --user-group --home-dir /var/lib/lifeline --no-create-home --shell /usr/sbin/nologin lifeline
install -m 0755 $f/lifeline /usr/bin/lifeline
install -d -m 0750 -o root -g lifeline /etc/lifeline
install -d -m 0755 /usr/lib/lifeline /usr/share/doc/lifeline /etc/nftables.d
install -m 0755 $f/unconfigured.py /usr/lib/lifeline/unconfigured.py
install -m 0755 $f/console-banner /usr/lib/lifeline/console-banner
install -m 0644 $f/user-data.example $f/README.md /usr/share/doc/lifeline/
echo "$VERSION" > /usr/share/doc/lifeline/VERSION
for u in lifeline.service lifeline.path lifeline-unconfigured.service lifeline-console.service; do
	install -m 0644 $f/$u /lib/systemd/system/$u
done

# Firewall, logs, time, network, kernel settings, cloud-init.
install -m 0755 $f/nftables.conf /etc/nftables.conf
install -D -m 0644 $f/journald.conf /etc/systemd/journald.conf.d/lifeline.conf
install -D -m 0644 $f/timesyncd.conf /etc/systemd/timesyncd.conf.d/lifeline.conf
install -m 0644 $f/99-lifeline-dhcp.network /etc/systemd/network/99-lifeline-dhcp.network
install -m 0644 $f/sysctl-lifeline.conf /etc/sysctl.d/90-lifeline.conf
install -m 0644 $f/cloud.cfg /etc/cloud/cloud.cfg.d/90_lifeline.cfg
mkdir -p /var/log/journal

# SSH host keys are made per machine at its first start; the firewall keeps
# port 22 closed unless /etc/nftables.d opens it.
rm -f /etc/ssh/ssh_host_*
mkdir -p /etc/systemd/system/ssh.service.d
printf '[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n' > /etc/systemd/system/ssh.service.d/lifeline-hostkeys.conf
sed -i 's/^#\?PasswordAuthentication.*/PasswordAuthentication no/' /etc/ssh/sshd_config

systemctl enable systemd-networkd systemd-resolved systemd-timesyncd nftables \
	lifeline.service lifeline.path lifeline-unconfigured.service lifeline-console.service >/dev/null 2>&1
systemctl enable systemd-networkd-wait-online.service >/dev/null 2>&1 || true
# Online as soon as one interface is: a second NIC without DHCP must not
# hold the node back for two minutes.
mkdir -p /etc/systemd/system/systemd-networkd-wait-online.service.d
printf '[Service]\nExecStart=\nExecStart=/lib/systemd/systemd-networkd-wait-online --any --timeout=60\n' \
	> /etc/systemd/system/systemd-networkd-wait-online.service.d/lifeline-any.conf
ln -sf /run/systemd/resolve/stub-resolv.conf /etc/resolv.conf

# Each VM gets its own identity at first boot.
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
# No "apt-get clean": the archives are the build cache, bind-mounted from
# the host and unmounted before the image is finished.
rm -rf /var/lib/apt/lists/* /var/log/*.log /var/log/apt/* /tmp/apt.log
echo "provisioned: $(dpkg -l | grep -c '^ii') packages, kernel $(ls /lib/modules)"
