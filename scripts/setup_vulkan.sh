#!/usr/bin/env bash
# lavapipe, Mesa's Vulkan on the CPU (Debian's mesa-vulkan-drivers), and the Vulkan loader: the
# device the wgpu tests (tests/integration/wgpu.rs, `--features wgpu`) run burn's cubecl kernels on.
set -euo pipefail
if [ ! -f /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ] || [ ! -e /usr/lib/x86_64-linux-gnu/libvulkan.so.1 ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
fi
