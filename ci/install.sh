#!/usr/bin/env bash
# Installs what esp-smoltcp-hil needs on Debian 12: lab tools (apt), a Rust toolchain (rustup) for the
# virtual board's smoltcp firmware, and the Python package (pip).
# Idempotent. Core tools always; PostgreSQL and Chromium (used by the results-store and dashboard
# tests) only with --all or in CI (CI=true), because Debian's postgresql starts a server.
# --no-rust skips Rust: enough for a machine that only drives real boards (--board esp32p4).
set -euo pipefail
cd "$(dirname "$0")/.."

CORE=(python3 python3-venv python3-pip git iproute2 iperf3 iputils-ping mosquitto openssl busybox procps
      gcc libc6-dev libmbedtls-dev ethtool gdb-multiarch gcc-riscv64-linux-gnu binutils-riscv64-linux-gnu tcpdump)
EXTRA=(postgresql chromium)
packages=("${CORE[@]}")
all=false
rust=true
for arg in "$@"; do
  case "$arg" in
    --all) all=true ;;
    --no-rust) rust=false ;;
    *) echo "usage: ci/install.sh [--all] [--no-rust]" >&2; exit 2 ;;
  esac
done
if [[ "$all" == true || "${CI:-}" == "true" ]]; then packages+=("${EXTRA[@]}"); fi
if [[ "$rust" == true ]]; then packages+=(curl ca-certificates); fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then SUDO=(sudo); fi

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if (( ${#missing[@]} )); then
  echo "ci/install.sh: installing ${missing[*]}"
  "${SUDO[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Rust for firmware/host/stack: rustup (minimal profile + clippy) when cargo is missing or older than the
# crate's rust-version. Debian 12's own cargo (1.63) is too old for smoltcp 0.12.
if [[ "$rust" == true ]]; then
  export PATH="$HOME/.cargo/bin:$PATH"
  msrv=$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' firmware/host/stack/Cargo.toml)
  have=$(cargo --version 2>/dev/null | awk '{print $2}' || true)
  if [[ -z "$have" || "$(printf '%s\n%s\n' "$msrv" "$have" | sort -V | head -1)" != "$msrv" ]]; then
    echo "ci/install.sh: installing Rust (rustup, minimal profile; found cargo '${have:-none}', need >= $msrv)"
    if command -v rustup >/dev/null; then
      rustup toolchain install stable --profile minimal --component clippy
      rustup default stable
    else
      curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
        | sh -s -- -y --profile minimal --default-toolchain stable --component clippy
    fi
  elif ! cargo clippy --version >/dev/null 2>&1 && command -v rustup >/dev/null; then
    rustup component add clippy
  fi
fi

# Debian's own python3 refuses system-wide pip installs (PEP 668): use a project venv there.
PYTHON=python3
if python3 - <<'PY'
import os, sys, sysconfig
sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)
PY
then
  [[ -x .venv/bin/python ]] || python3 -m venv .venv
  PYTHON=.venv/bin/python
fi
# Exact versions for reproducible CI (pyproject.toml declares ranges; ci/constraints.txt pins them). The dev
# extra includes `farm`: labgrid (coordinator, exporter, client; the farm tests run them on loopback) and
# pytest-xdist (`hil run -n N`).
"$PYTHON" -m pip install -q --disable-pip-version-check -c ci/constraints.txt -e ".[dev]"
rust_version=$([[ "$rust" == true ]] && cargo --version || echo "Rust skipped")
labgrid_version=$("$PYTHON" -c 'import labgrid; print("labgrid", labgrid.__version__)')
echo "ci/install.sh: ready ($("$PYTHON" --version), $(iperf3 --version | head -1), $rust_version, $labgrid_version)"
