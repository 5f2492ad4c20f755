#!/usr/bin/env bash
# Prepare a Linux machine as a HIL runner for one or more ESP32-P4-Nano boards (see ci/RUNNER.md).
#
#   sudo ci/setup-runner.sh --user gha --board desk --serial 5A7B123456 --nic enx00e04c680001 [--idf v5.5.1]
#
# Idempotent: rerun it with another --board/--serial/--nic to add a second board.
set -euo pipefail

RUNNER_USER=""; BOARD=""; SERIAL=""; NIC=""; IDF_VERSION="v5.5.1"; IDF_DIR="/opt/esp-idf"
RUST_TOOLCHAIN="nightly"; REPO_DIR="$(cd "$(dirname "$0")/.." && pwd)"
usage() { sed -n '2,7p' "$0"; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --user) RUNNER_USER="$2"; shift 2 ;;
    --board) BOARD="$2"; shift 2 ;;
    --serial) SERIAL="$2"; shift 2 ;;
    --nic) NIC="$2"; shift 2 ;;
    --idf) IDF_VERSION="$2"; shift 2 ;;
    --rust-toolchain) RUST_TOOLCHAIN="$2"; shift 2 ;;
    -h|--help) usage ;;
    *) echo "unknown option $1" >&2; usage ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "run as root (sudo)" >&2; exit 1; }
[ -n "$RUNNER_USER" ] || { echo "--user <runner account> is required" >&2; exit 1; }
[[ "$NIC" =~ ^[^[:space:]/:]{0,15}$ ]] || { echo "--nic: not an interface name" >&2; exit 1; }
[[ "$BOARD" =~ ^[A-Za-z0-9_-]*$ ]] || { echo "--board: letters, digits, - and _ only" >&2; exit 1; }

# 1. Lab tools and the harness's own dependencies.
"$REPO_DIR/ci/install.sh" --all

# 2. Serial: the CH343 bridge of each board gets a stable name /dev/hil-p4-<board>, group dialout.
usermod -aG dialout "$RUNNER_USER"
if [ -n "$BOARD" ] && [ -n "$SERIAL" ]; then
  cat > "/etc/udev/rules.d/70-hil-p4-$BOARD.rules" <<RULE
# ESP32-P4-Nano "$BOARD": WCH CH343 USB-UART with serial number $SERIAL
SUBSYSTEM=="tty", ATTRS{idVendor}=="1a86", ATTRS{idProduct}=="55d3", ATTRS{serial}=="$SERIAL", SYMLINK+="hil-p4-$BOARD", GROUP="dialout", MODE="0660"
RULE
  udevadm control --reload-rules && udevadm trigger --subsystem-match=tty
  echo "serial: /dev/hil-p4-$BOARD -> board $BOARD (CH343 serial $SERIAL)"
fi

# 3. The NIC reserved for the DUT: nothing else may configure it.
if [ -n "$NIC" ]; then
  if [ -d /etc/NetworkManager/conf.d ]; then
    cat > "/etc/NetworkManager/conf.d/90-hil-$NIC.conf" <<NM
[keyfile]
unmanaged-devices=interface-name:$NIC
NM
    systemctl reload NetworkManager 2>/dev/null || true
  fi
  if [ -d /etc/systemd/network ]; then
    cat > "/etc/systemd/network/05-hil-$NIC.network" <<NET
# The HIL lab owns $NIC: no DHCP client, no addresses from systemd-networkd.
[Match]
Name=$NIC

[Link]
Unmanaged=yes
NET
  fi
  echo "nic: $NIC is reserved for the DUT (unmanaged)"
fi

# 4. Privileges: the runner user may run only the project's hil wrapper as root (see harness/privileges.py).
cat > /etc/sudoers.d/hil-runner <<SUDO
# esp-smoltcp-hil: network namespaces need CAP_SYS_ADMIN (mount under /run/netns, setns), plus
# CAP_NET_ADMIN, CAP_NET_RAW and CAP_NET_BIND_SERVICE; only the harness wrapper gets them.
Defaults!$REPO_DIR/hil env_keep += "IDF_PATH PATH ESPBAUD"
$RUNNER_USER ALL=(root) NOPASSWD: $REPO_DIR/hil
SUDO
chmod 0440 /etc/sudoers.d/hil-runner
visudo -cf /etc/sudoers.d/hil-runner
install -d -o "$RUNNER_USER" /var/lib/hil

# 5. ESP-IDF and Rust (as the runner user).
if [ ! -d "$IDF_DIR" ]; then
  git clone --depth 1 --branch "$IDF_VERSION" --recursive --shallow-submodules \
    https://github.com/espressif/esp-idf.git "$IDF_DIR"
  chown -R "$RUNNER_USER" "$IDF_DIR"
fi
sudo -u "$RUNNER_USER" -H bash -c "'$IDF_DIR/install.sh' esp32p4"
sudo -u "$RUNNER_USER" -H bash -c "
  command -v rustup >/dev/null || curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  . \"\$HOME/.cargo/env\"
  rustup toolchain install '$RUST_TOOLCHAIN' --component rust-src
  rustup target add --toolchain '$RUST_TOOLCHAIN' riscv32imafc-unknown-none-elf
"
echo "IDF_PATH=$IDF_DIR" > /etc/profile.d/hil-idf.sh

echo "done. Next: register the CI runner with label esp32p4-nano, then run: sudo $REPO_DIR/hil doctor"
