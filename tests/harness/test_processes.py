"""Helpers the harness forks die with it: parent-death signal, launcher thread, process groups."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from harness.processes import cpu_seconds, spawn, start_time, stop_group
from harness.testing import wait_for


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_helper_dies_when_its_parent_is_killed_with_sigkill(tmp_path: Path) -> None:
    # The parent forks a helper (from a thread that ends at once, as the supervisor's boot thread does),
    # reports its pid, and is then SIGKILLed: nothing of it runs any teardown.
    script = textwrap.dedent(
        """
        import sys, threading, time
        from harness.processes import spawn
        pids = []
        thread = threading.Thread(target=lambda: pids.append(spawn(["sleep", "300"]).pid))
        thread.start(); thread.join()
        print(pids[0], flush=True)
        time.sleep(300)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        helper = int(parent.stdout.readline())
        assert _alive(helper), "the helper died with the thread that started it"
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        assert wait_for(lambda: not _alive(helper), timeout_s=5), "the helper outlived its SIGKILLed parent"
    finally:
        if parent.poll() is None:
            parent.kill()


def test_a_helper_can_clean_up_after_a_dead_parent_with_sigterm(tmp_path: Path) -> None:
    marker = tmp_path / "cleaned"
    helper = f"""
import pathlib, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: (pathlib.Path({str(marker)!r}).write_text("x"), sys.exit(0)))
print("ready", flush=True)
time.sleep(300)
"""
    parent = f"""
import signal, subprocess, sys
from harness.processes import spawn
helper = spawn([sys.executable, "-c", {helper!r}], death_signal=signal.SIGTERM, stdout=subprocess.PIPE, text=True)
helper.stdout.readline()
"""
    subprocess.run([sys.executable, "-c", parent], check=True, timeout=30)  # exits as soon as the helper is up
    assert wait_for(marker.exists, timeout_s=5), "the helper got no SIGTERM when its parent exited"


def test_stop_group_takes_the_helpers_own_children() -> None:
    leader = spawn(["sh", "-c", "sleep 300 & echo $!; wait"], stdout=subprocess.PIPE, text=True)
    assert leader.stdout is not None
    child = int(leader.stdout.readline())
    assert stop_group(leader, timeout=5) is not None
    assert wait_for(lambda: not _alive(child), timeout_s=5)


def test_start_time_names_one_process_and_cpu_seconds_reads_it() -> None:
    assert start_time(os.getpid()) == start_time(os.getpid()) is not None
    assert start_time(2**22 + 12345) is None
    assert cpu_seconds() >= 0
