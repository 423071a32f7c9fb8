#!/usr/bin/env bash
# Installs the Debian packages swiftvm's build and tests use, when missing.
#   scripts/install-deps.sh            build essentials for swiftvm and the test guest
#   scripts/install-deps.sh --kernel   also what building a guest kernel needs
set -euo pipefail

packages=(gcc make binutils e2fsprogs busybox-static acpica-tools device-tree-compiler liburing-dev libseccomp-dev
  iproute2 python3)
if [[ "${1:-}" == "--kernel" ]]; then
  packages+=(linux-source-6.1 flex bison bc libelf-dev libssl-dev xz-utils patch)
fi

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -ne 0 ]]; then
  echo "swiftvm needs these Debian packages: ${missing[*]}" >&2
  echo "install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing: ${missing[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
