#!/usr/bin/env bash
# Installs what esp-smoltcp-hil needs on Debian 12: lab tools (apt) and the Python package (pip).
# Idempotent. Core tools always; PostgreSQL and Chromium (used by the results-store and dashboard
# tests) only with --all or in CI (CI=true), because Debian's postgresql starts a server.
set -euo pipefail
cd "$(dirname "$0")/.."

CORE=(python3 python3-venv python3-pip git iproute2 iperf3 iputils-ping mosquitto openssl busybox procps
      gcc libc6-dev libmbedtls-dev ethtool gcc-riscv64-linux-gnu binutils-riscv64-linux-gnu tcpdump)
EXTRA=(postgresql chromium)
packages=("${CORE[@]}")
if [[ "${1:-}" == "--all" || "${CI:-}" == "true" ]]; then packages+=("${EXTRA[@]}"); fi

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
# Exact versions for reproducible CI (pyproject.toml declares ranges; ci/constraints.txt pins them).
"$PYTHON" -m pip install -q --disable-pip-version-check -c ci/constraints.txt -e ".[dev]"
echo "ci/install.sh: ready ($("$PYTHON" --version), $(iperf3 --version | head -1))"
