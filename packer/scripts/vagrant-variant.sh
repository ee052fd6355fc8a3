#!/bin/bash
# Runs inside the image (chroot) for the Vagrant box only: the vagrant user
# with vagrant's well-known insecure key (vagrant swaps it for a new key on
# first "vagrant up") and passwordless sudo, and SSH through the firewall.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
apt-get update -qq
apt-get install -y -qq --no-install-recommends sudo rsync >/dev/null
rm -f /usr/sbin/policy-rc.d
useradd --create-home --shell /bin/bash vagrant
echo 'vagrant:vagrant' | chpasswd
install -d -m 0700 -o vagrant -g vagrant /home/vagrant/.ssh
install -m 0600 -o vagrant -g vagrant /tmp/vagrant.pub /home/vagrant/.ssh/authorized_keys
echo 'vagrant ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/vagrant
chmod 0440 /etc/sudoers.d/vagrant
echo 'add rule inet lifeline extra tcp dport 22 accept comment "SSH (Vagrant box only)"' > /etc/nftables.d/ssh.nft
# Vagrant has no cloud-init seed: do not wait for one.
touch /etc/cloud/cloud-init.disabled
echo "vagrant variant" >> /usr/share/doc/lifeline/VERSION
rm -f /var/cache/apt/*.bin
rm -rf /var/lib/apt/lists/*
