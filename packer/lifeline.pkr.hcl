# Lifeline appliance image.
#
# Built offline from Debian's packages: there is no ISO to boot, so a
# "null" source (no VM, no communicator) carries shell-local provisioners
# that run debootstrap into a loop-mounted disk on the build machine
# (scripts/build-image.sh, as root), install the lifeline binary and the
# files in files/, and put extlinux on the disk. Outputs, in output_dir:
#   lifeline.qcow2              the appliance for KVM (bootable, cloud-init)
#   lifeline-libvirt.box        the same with a vagrant user, for vagrant/
#
#   make image                  (builds bin/lifeline, then runs packer build)
#   packer build -var binary=bin/lifeline -var output_dir=build/image packer/

variable "binary" {
  type        = string
  description = "the lifeline binary to install (make build)"
  default     = "bin/lifeline"
}

variable "output_dir" {
  type    = string
  default = "build/image"
}

variable "suite" {
  type    = string
  default = "bookworm"
}

variable "mirror" {
  type        = string
  description = "Debian mirror that debootstrap and apt use"
  default     = "http://deb.debian.org/debian"
}

variable "disk_size" {
  type    = string
  default = "4G"
}

variable "version" {
  type    = string
  default = "dev"
}

variable "vagrant_box" {
  type        = bool
  description = "also build the libvirt Vagrant box"
  default     = true
}

variable "cache_dir" {
  type    = string
  default = "/var/tmp/lifeline-image-cache"
}

source "null" "debian" {
  communicator = "none"
}

build {
  name    = "lifeline"
  sources = ["source.null.debian"]

  provisioner "shell-local" {
    inline = [
      "set -e",
      "test -x '${var.binary}' || { echo 'no lifeline binary at ${var.binary}: run make build' >&2; exit 1; }",
      "'${path.root}/scripts/build-image.sh'",
    ]
    inline_shebang = "/bin/bash -e"
    environment_vars = [
      "OUT_DIR=${var.output_dir}",
      "BINARY=${var.binary}",
      "SUITE=${var.suite}",
      "MIRROR=${var.mirror}",
      "DISK_SIZE=${var.disk_size}",
      "VERSION=${var.version}",
      "CACHE_DIR=${var.cache_dir}",
      "VAGRANT_VARIANT=${var.vagrant_box ? "1" : "0"}",
    ]
  }

  post-processor "shell-local" {
    inline = [
      "cd '${var.output_dir}' && sha256sum *.qcow2 *.box 2>/dev/null > SHA256SUMS; cat SHA256SUMS",
    ]
  }
}
