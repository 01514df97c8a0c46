#!/usr/bin/env bash
# Installs what building cove, running coved and running its tests need, on
# Debian 12 as root: the Debian packages below (only those missing; apt-get
# update runs only when something is missing) and the npm packages of the
# terminal page (xterm.js, compiled into coved) and of the conformance suite
# (npm ci, only when a package-lock.json changed). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  # build
  build-essential cmake ninja-build ccache pkg-config git
  libboost-dev libboost-system-dev libboost-context-dev nlohmann-json3-dev libfmt-dev
  libcli11-dev libseccomp-dev libcap-dev libsqlite3-dev libssl-dev libcurl4-openssl-dev
  libarchive-dev libzstd-dev libgtest-dev libgmock-dev libnl-3-dev libnl-route-3-dev libnftables-dev
  # coved at run time: sandbox networking
  nftables iproute2
  # coved at run time: images, quotas, file types, mounts
  file e2fsprogs xfsprogs btrfs-progs util-linux procps ca-certificates curl
  # the default image's tools for agents (the sandbox sees the host's /usr):
  # the Python code interpreter's rich outputs, plus git and curl above
  python3-numpy python3-pandas python3-matplotlib python3-ipython
  python3-pip  # pip install in a sandbox (its /usr is writable, its own)
  # tests
  bubblewrap python3 python3-pytest python3-pytest-timeout python3-requests python3-yaml
  python3-jsonschema tmux
  chromium  # the terminal page's test in a real browser (tests/conformance, playwright-core)
  python3-ipykernel python3-jupyter-client  # bench/interpreter_bench.py's Jupyter baseline
)

missing=()
for p in "${PACKAGES[@]}"; do
  if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != "installed" ]; then
    missing+=("$p")
  fi
done
# Node >= 20.6 runs the conformance suite (module.register); Debian's nodejs is older.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  missing+=(nodejs npm)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number);
               process.exit(a > 20 || (a == 20 && b >= 6) ? 0 : 1)'; then
  echo "install-deps: warning: node $(node --version) is older than 20.6; the conformance suite needs module.register" >&2
fi

# npm packages: xterm.js for the terminal page (read by CMake at build time),
# acorn and sucrase for the code interpreter's Node runner (copied next to coved
# at build time), and the conformance suite's; reinstall only when a lock file changed.
for dir in web/terminal interpreter tests/conformance; do
  if [ ! -f "$dir/node_modules/.package-lock.json" ] ||
     [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    echo "install-deps: npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
done
