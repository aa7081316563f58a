#!/usr/bin/env bash
# Installs a Vulkan loader and Mesa's software Vulkan driver (lavapipe: a real Vulkan device
# that runs on the CPU) for the GPU path's tests (crates/model/tests/gpu.rs, which run in the
# workspace's tests since the CLI's default `wgpu` feature turns them on). Idempotent: when
# both are in place it only checks them. Debian's packages mesa-vulkan-drivers and libvulkan1.
set -euo pipefail

icd=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else echo "setup-vulkan: run as root (or install sudo) to install: $*" >&2; exit 1
  fi
}
if [ -f "$icd" ] && ldconfig -p | grep -q 'libvulkan\.so\.1'; then
  echo "setup-vulkan: lavapipe and the Vulkan loader are installed"
  exit 0
fi
echo "setup-vulkan: installing Mesa's software Vulkan driver (mesa-vulkan-drivers, libvulkan1)"
as_root apt-get update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
[ -f "$icd" ] || { echo "setup-vulkan: $icd missing after the install" >&2; exit 1; }
ldconfig -p | grep -q 'libvulkan\.so\.1' || { echo "setup-vulkan: libvulkan.so.1 missing after the install" >&2; exit 1; }
echo "setup-vulkan: installed"
