"""The fuzz campaign: bursts of fuzzed frames, a liveness check after each, every failure kept as a case.

A campaign sends bursts of frames built from the layer templates of `harness.lab.fuzz` (one template per
burst, in an order and with values drawn from the seed) on the lab's side of the cable. After every burst the
DUT must still be alive: its console answers `stats`, it reported no crash or unplanned reset, it answers an
ICMP echo, an ICMPv6 echo to its link-local address and a TCP connect to one of its open ports (a different
one each burst). A burst after which it is not is a *case*: its frames go to a pcap, the DUT is reset, and the
case is reproduced (the burst alone, else the frames sent since the last reset) and, when the burst alone
does it, reduced by bisection to the fewest frames that still do it. Then the campaign goes on with the next
burst. `replay` sends a case's pcap again, in this run or a later one (addresses are mapped to the current
DUT's, checksums kept as right or wrong as they were), and checks the DUT the same way.

The DUT is anything with the `FuzzDut` methods: `BoardDut` wraps a `Board`, so the campaign runs on every
board; the harness's own tests use a native firmware process and a deliberately fragile responder.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from harness.boards.board import Board
from harness.console.protocol import COUNTER_FIELDS, counter_deltas
from harness.console.verdict import judge
from harness.errors import BoardError, HilError, LabError
from harness.lab import fuzz as frames_lab
from harness.lab.fuzz import BURST_FRAMES, TEMPLATES, Template
from harness.lab.netns import Namespace
from harness.lab.robustness import Target, open_raw_socket

CALL_TIMEOUT_S = 60.0
REDUCE_TRIALS_MAX = 14  # bisection of a 32-frame burst takes 5, then the single frame, then a few removals
REDUCED_CASES_MAX = 5  # reduction costs a reset per trial: reduce the first few distinct cases only
CASES_MAX = 50  # pcaps kept; further cases are counted
HISTORY_FRAMES_MAX = 8192  # what a case keeps of the frames sent since the last reset: the last 256 bursts
# HIL_HELLO.services keys (firmware/PROTOCOL.md) of the TCP and UDP services, and the ports the protocol gives
# them when a board does not list its services.
TCP_SERVICES = {"http": 80, "https": 443, "tcp_echo": 7, "select_echo_tcp": 7000, "iperf3": 5201}
UDP_SERVICES = {"udp_echo": 7, "mcast_echo": 5007}
SELECT_ECHO_UDP = (7001, 4)


class FuzzError(HilError):
    """The campaign cannot go on (the DUT was not alive to begin with, or did not come back after a reset)."""


@dataclass(frozen=True)
class DutAddresses:
    """Where the DUT can be reached, and its open ports."""

    ip: str
    mac: str
    ipv6_ll: str = ""
    tcp_ports: tuple[int, ...] = ()
    udp_ports: tuple[int, ...] = ()


class FuzzDut(Protocol):
    """What a campaign needs of the DUT."""

    def checkpoint(self) -> Any:
        """A point in the DUT's history (a console mark) that `crashes_since` looks back to."""

    def counters(self) -> Mapping[str, Any] | None:
        """The HIL_STATS counters now, or None when the DUT does not answer."""

    def crashes_since(self, checkpoint: Any) -> str:
        """What the DUT reported since ``checkpoint``: crashes and unplanned resets, as text ("" when none)."""

    def restart(self) -> None:
        """Reset the DUT and wait until it is online again (raises HilError when it does not come back)."""

    def addresses(self) -> DutAddresses:
        """The DUT's current addresses and open ports."""


def service_ports(services: Mapping[str, Any]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """TCP and UDP ports from HIL_HELLO's ``services`` (the protocol's ports when the board lists none)."""
    listed = dict(services) or {
        **TCP_SERVICES,
        **UDP_SERVICES,
        "select_echo_udp": SELECT_ECHO_UDP[0],
        "select_echo_udp_count": SELECT_ECHO_UDP[1],
    }
    tcp = tuple(int(listed[name]) for name in TCP_SERVICES if isinstance(listed.get(name), int))
    udp = [int(listed[name]) for name in UDP_SERVICES if isinstance(listed.get(name), int)]
    first, count = listed.get("select_echo_udp"), listed.get("select_echo_udp_count", 1)
    if isinstance(first, int) and isinstance(count, int):
        udp += range(first, first + count)
    return tuple(dict.fromkeys(tcp)), tuple(dict.fromkeys(udp))


class BoardDut:
    """A `Board` as a campaign's DUT: console counters, console crash events, `reset`, `ip`."""

    def __init__(self, board: Board) -> None:
        self.board = board

    def checkpoint(self) -> tuple[int, int]:
        """The console mark and the count of restarts the harness asked for so far."""
        return self.board.monitor.mark(), self.board.planned_restarts

    def counters(self) -> Mapping[str, Any] | None:
        """HIL_STATS, or None when the console does not answer `stats`."""
        try:
            return self.board.stats()
        except BoardError:  # DutTimeoutError included
            return None

    def crashes_since(self, checkpoint: tuple[int, int]) -> str:
        """Crash events and unplanned resets on the console since ``checkpoint``."""
        mark, planned = checkpoint
        verdict = judge(self.board.monitor.events_between(mark), self.board.planned_restarts - planned)
        return verdict.message() if verdict.failed else ""

    def restart(self) -> None:
        """Pulse the board's reset and wait for its address."""
        self.board.reset(wait_online=True)

    def addresses(self) -> DutAddresses:
        """From `ip` and HIL_HELLO."""
        ip = self.board.wait_for_ip()
        info = self.board.ip_info()
        tcp, udp = service_ports(self.board.hello.get("services") or {})
        return DutAddresses(ip, str(info.get("mac") or self.board.hello.get("mac", "")).lower(),
                            str(info.get("ipv6_ll") or ""), tcp, udp)  # fmt: skip


@dataclass(frozen=True)
class Failure:
    """Why the DUT counts as not alive after some frames: ``crash`` (it said so) or ``wedge`` (it went silent)."""

    kind: str
    detail: str

    def line(self) -> str:
        """The first line of the detail."""
        return self.detail.splitlines()[0] if self.detail else ""

    def signature(self) -> tuple[str, str]:
        """What makes two failures the same failure: the kind and the first line without console line numbers."""
        return self.kind, re.sub(r"console line \d+", "console line N", self.line())


class FuzzBench:
    """The DUT and the lab's side of the cable, as a campaign or a replay uses them.

    Args:
        dut: the DUT.
        host: the lab's host namespace (frames are sent and probes run there only).
        ifname: the lab's end of the cable in ``host``.
        host_ip: the lab host's address on the cable.
    """

    def __init__(self, dut: FuzzDut, host: Namespace, ifname: str, host_ip: str) -> None:
        self.dut = dut
        self.host = host
        self.ifname = ifname
        self.host_ip = host_ip
        self.target: Target | None = None
        self._sock: socket.socket | None = None
        self._probes = 0
        self.last_counters: Mapping[str, Any] | None = None
        self.totals: dict[str, int] = dict.fromkeys(COUNTER_FIELDS, 0)

    def connect(self) -> Target:
        """Learn both ends' addresses, open the sending socket and check the DUT is alive to begin with.

        Raises:
            FuzzError: the DUT is not alive before anything was sent.
        """
        self.target = self._target()
        if self._sock is None:
            self._sock = self.host.call(open_raw_socket, self.ifname, False, timeout=CALL_TIMEOUT_S)
        self.last_counters = None
        failure = self.check(self.dut.checkpoint())
        if failure is not None:
            raise FuzzError(f"the DUT is not alive before fuzzing: {failure.detail}")
        return self.target

    def _target(self) -> Target:
        dut = self.dut.addresses()
        host_mac, host_ll = self.host.call(frames_lab.host_addresses, self.ifname, timeout=CALL_TIMEOUT_S)
        return Target(dut.ip, dut.mac, self.host_ip, host_mac, dut.ipv6_ll, host_ll, dut.tcp_ports, dut.udp_ports)

    @property
    def sock(self) -> socket.socket:
        """The sending socket (created in the host namespace, so it sends there from any thread)."""
        if self._sock is None:
            raise LabError("the fuzz bench is not connected")
        return self._sock

    def send_burst(self, template: Template, seed: int, index: int, count: int) -> list[bytes]:
        """Build and send burst ``index`` in the host namespace; returns its frames."""
        assert self.target is not None
        return self.host.call(frames_lab.send_burst, self.sock, template, self.target, seed, index, count,
                              timeout=CALL_TIMEOUT_S)  # fmt: skip

    def send(self, frames: Sequence[bytes]) -> int:
        """Send recorded frames as they are."""
        return frames_lab.send_frames(self.sock, frames)

    def check(self, checkpoint: Any) -> Failure | None:
        """Whether the DUT is alive: console counters, no crash since ``checkpoint``, ICMP(v6) echo, a TCP connect."""
        assert self.target is not None
        counters = self.dut.counters()
        crash = self.dut.crashes_since(checkpoint)
        if crash:
            return Failure("crash", crash)
        if counters is None:
            return Failure("wedge", "the DUT did not answer `stats` on its console")
        self._count(counters)
        ports = self.target.tcp_ports
        port = ports[self._probes % len(ports)] if ports else None
        self._probes += 1
        target = self.target
        problem = self.host.call(frames_lab.probe, target.dut_ip, port, self._probes * 8, target.dut_ipv6_ll,
                                 self.ifname, timeout=CALL_TIMEOUT_S)  # fmt: skip
        if problem:
            crash = self.dut.crashes_since(checkpoint)  # it may have crashed while it was probed
            return Failure("crash", crash) if crash else Failure("wedge", problem)
        return None

    def _count(self, counters: Mapping[str, Any]) -> None:
        if self.last_counters is not None:
            for name, delta in counter_deltas(dict(self.last_counters), dict(counters)).items():
                self.totals[name] += max(0, delta)
        self.last_counters = counters

    def restart(self) -> Target:
        """Reset the DUT, wait until it is online, and learn its addresses again (a new lease may differ).

        Raises:
            FuzzError: it did not come back.
        """
        try:
            self.dut.restart()
            self.target = self._target()
        except HilError as exc:
            raise FuzzError(f"the DUT did not come back after a reset: {exc}") from exc
        self.last_counters = self.dut.counters()
        return self.target

    def close(self) -> None:
        """Close the sending socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


# --- cases and the report ------------------------------------------------------------------------------------


@dataclass
class Case:
    """One frame sequence after which the DUT was not alive.

    Attributes:
        number: 1, 2, ... in the order found.
        failure: what was wrong after the burst.
        burst: the burst's number; ``template``: its template.
        pcap: the burst's frames.
        history_pcap: what was sent since the DUT's last reset, at most the last `HISTORY_FRAMES_MAX` frames
            (written when more than the burst).
        reproduced: ``burst`` (the burst alone does it again after a reset), ``history`` (only with what came
            before it), ``no``, or ``not tried`` (the campaign's time was up, or the failure repeats one that
            was already replayed twice: then ``same_as`` names its first case).
        reduced_pcap: the fewest frames of the burst found to still do it (when the burst reproduced it).
        reduced_frames: how many frames that is.
        replay: the command that replays the best reproducer.
    """

    number: int
    failure: Failure
    burst: int
    template: str
    pcap: Path
    history_pcap: Path | None = None
    reproduced: str = "not tried"
    reduced_pcap: Path | None = None
    reduced_frames: int | None = None
    same_as: int | None = None
    replay: str = ""

    @property
    def reproducer(self) -> Path:
        """The pcap to replay: the reduced one, else the one that reproduced it, else the burst."""
        if self.reduced_pcap is not None:
            return self.reduced_pcap
        if self.reproduced == "history" and self.history_pcap is not None:
            return self.history_pcap
        return self.pcap

    def describe(self) -> str:
        """One paragraph for the failure message."""
        how = {
            "burst": "the burst alone reproduced it after a reset",
            "history": "only the frames sent before it since the last reset reproduced it",
            "no": "it did not reproduce on replay after a reset",
            "not tried": "not replayed (the campaign's time was up)",
        }[self.reproduced]
        if self.same_as is not None:
            how = f"the same failure as case {self.same_as} (not replayed again)"
        reduced = f", reduced to {self.reduced_frames} frame(s)" if self.reduced_frames is not None else ""
        return (f"case {self.number}: {self.failure.kind} after burst {self.burst} ({self.template}): "
                f"{self.failure.line()}; {how}{reduced}; pcap {self.reproducer}; replay: {self.replay}")  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "number": self.number,
            "kind": self.failure.kind,
            "detail": self.failure.detail,
            "burst": self.burst,
            "template": self.template,
            "pcap": str(self.pcap),
            "history_pcap": str(self.history_pcap) if self.history_pcap else None,
            "reproduced": self.reproduced,
            "reduced_pcap": str(self.reduced_pcap) if self.reduced_pcap else None,
            "reduced_frames": self.reduced_frames,
            "same_as": self.same_as,
            "replay": self.replay,
        }


@dataclass
class CampaignReport:
    """What a campaign did and found."""

    seed: int
    burst_frames: int
    seconds: float = 0.0
    bursts: int = 0
    frames: int = 0
    restarts: int = 0
    cases_found: int = 0
    per_template: dict[str, dict[str, int]] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    cases: list[Case] = field(default_factory=list)
    fatal: str = ""

    def summary(self) -> str:
        """One line."""
        counters = self.counters
        return (f"fuzz campaign seed {self.seed}: {self.bursts} bursts, {self.frames} frames in {self.seconds:.0f} s, "
                f"{self.cases_found} case(s), {self.restarts} reset(s); DUT rx_frames +{counters.get('rx_frames', 0)}, "
                f"frame_pool_drops +{counters.get('frame_pool_drops', 0)}")  # fmt: skip

    def failure_message(self) -> str:
        """Why the campaign fails its test ("" when it found nothing and could go on to the end)."""
        if not self.cases_found and not self.fatal:
            return ""
        lines = [self.summary()]
        lines += [case.describe() for case in self.cases]
        if self.cases_found > len(self.cases):
            lines.append(f"... and {self.cases_found - len(self.cases)} more case(s) counted without a pcap")
        if self.fatal:
            lines.append(f"the campaign stopped early: {self.fatal}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """JSON form (`campaign.json`)."""
        return {
            "seed": self.seed,
            "burst_frames": self.burst_frames,
            "seconds": round(self.seconds, 3),
            "bursts": self.bursts,
            "frames": self.frames,
            "restarts": self.restarts,
            "cases_found": self.cases_found,
            "per_template": self.per_template,
            "counters": self.counters,
            "cases": [case.as_dict() for case in self.cases],
            "fatal": self.fatal,
        }


# --- the campaign --------------------------------------------------------------------------------------------


def burst_order(templates: Sequence[Template], seed: int) -> list[Template]:
    """The templates in the order the campaign cycles through them (a shuffle drawn from the seed)."""
    import random

    order = list(templates)
    random.Random(f"hil-fuzz-order/{seed}").shuffle(order)
    return order


@dataclass
class _Sent:
    burst: int
    index: int
    frame: bytes


class Campaign:
    """A fuzz campaign against one DUT.

    Args:
        bench: the DUT and the lab's side of the cable.
        out_dir: where pcaps, case files and `campaign.json` go.
        seed: the seed every random value is drawn from.
        templates: the layer templates (default: all of `harness.lab.fuzz.TEMPLATES` the DUT can be aimed at).
        burst_frames: frames per burst.
        replay_command: the command line that replays a pcap (recorded with each case).
        log: where progress lines go (cases as they are found).
        reduce: reduce cases by bisection (each trial resets the DUT).
    """

    def __init__(
        self,
        bench: FuzzBench,
        out_dir: Path,
        seed: int,
        *,
        templates: Sequence[Template] = TEMPLATES,
        burst_frames: int = BURST_FRAMES,
        replay_command: Callable[[Path], str] = lambda pcap: f"hil fuzz replay {pcap}",
        log: Callable[[str], None] = lambda line: None,
        reduce: bool = True,
    ) -> None:
        self.bench = bench
        self.out_dir = out_dir
        self.seed = seed
        self.templates = tuple(templates)
        self.burst_frames = burst_frames
        self.replay_command = replay_command
        self.log = log
        self.reduce = reduce
        self.report = CampaignReport(seed, burst_frames)
        self._history: deque[_Sent] = deque(maxlen=HISTORY_FRAMES_MAX)
        self._deadline = 0.0
        self._reduced_signatures: set[tuple[str, str]] = set()
        self._first_case: dict[tuple[str, str], int] = {}  # failure signature -> the case that first showed it
        self._sources: dict[str, list[list[int]]] = {}  # pcap name -> [burst, frame] of each of its frames

    def run(self, seconds: float, max_bursts: int | None = None) -> CampaignReport:
        """Fuzz for ``seconds`` (reproduction and reduction included) or ``max_bursts`` bursts, whichever ends
        first; the report is also written to `campaign.json`."""
        started = time.monotonic()
        self._deadline = started + seconds
        try:
            target = self.bench.connect()
            order = burst_order(frames_lab.usable(self.templates, target), self.seed)
            if not order:
                raise FuzzError("no template can be aimed at this DUT")
            index = 0
            while time.monotonic() < self._deadline and (max_bursts is None or index < max_bursts):
                index += 1
                self._burst(order[(index - 1) % len(order)], index)
        except HilError as exc:  # the DUT did not come back, or the lab failed: what was found so far stands
            self.report.fatal = str(exc)
        finally:
            self.report.seconds = time.monotonic() - started
            self.report.counters = dict(self.bench.totals)
            self.save()
        return self.report

    def save(self) -> Path:
        """Write `campaign.json`."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / "campaign.json"
        path.write_text(json.dumps(self.report.as_dict(), indent=2) + "\n")
        return path

    def _burst(self, template: Template, index: int) -> None:
        checkpoint = self.bench.dut.checkpoint()
        try:
            frames = self.bench.send_burst(template, self.seed, index, self.burst_frames)
        except frames_lab.PrepareError as exc:
            self._case(Failure("wedge", str(exc)), template, index, [])
            return
        self._history += [_Sent(index, position, frame) for position, frame in enumerate(frames)]
        self.report.bursts += 1
        self.report.frames += len(frames)
        counts = self.report.per_template.setdefault(template.name, {"bursts": 0, "frames": 0})
        counts["bursts"] += 1
        counts["frames"] += len(frames)
        failure = self.bench.check(checkpoint)
        if failure is not None:
            self._case(failure, template, index, [sent for sent in self._history if sent.burst == index])

    # --- a case ---------------------------------------------------------------------------------------------

    def _case(self, failure: Failure, template: Template, index: int, burst: list[_Sent]) -> None:
        self.report.cases_found += 1
        history = list(self._history)
        self._history.clear()
        number = self.report.cases_found
        if number > CASES_MAX:
            self.log(f"fuzz: case {number}: {failure.kind} after burst {index} ({template.name}) (not kept)")
            self._restart()
            return
        stem = self.out_dir / f"case-{number:03d}"
        case = Case(number, failure, index, template.name, self._write(stem, "", burst))
        if len(history) > len(burst):
            case.history_pcap = self._write(stem, ".history", history)
        self.report.cases.append(case)
        self._restart()
        first = self._first_case.setdefault(failure.signature(), number)
        if first != number and sum(c.failure.signature() == failure.signature() for c in self.report.cases) > 2:
            case.same_as = first  # a failure seen twice already: keep its pcaps, spend no more resets on it
        elif time.monotonic() < self._deadline:
            self._reproduce(case, burst, history, stem)
        case.replay = self.replay_command(case.reproducer)
        self._write_case_file(stem, case)
        self.log(f"fuzz: {case.describe()}")

    def _write(self, stem: Path, suffix: str, sent: Sequence[_Sent]) -> Path:
        path = stem.with_name(stem.name + suffix + ".pcap")
        frames_lab.write_pcap(path, [item.frame for item in sent])
        self._sources[path.name] = [[item.burst, item.index] for item in sent]
        return path

    def _write_case_file(self, stem: Path, case: Case) -> None:
        assert self.bench.target is not None
        pcaps = [path for path in (case.pcap, case.history_pcap, case.reduced_pcap) if path is not None]
        record = {
            **case.as_dict(),
            "seed": self.seed,
            "target": asdict(self.bench.target),
            "frames": {path.name: self._sources.get(path.name, []) for path in pcaps},
        }
        stem.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")

    def _restart(self) -> None:
        self.bench.restart()
        self.report.restarts += 1

    def _fails(self, sent: Sequence[_Sent]) -> Failure | None:
        """Send ``sent`` to a DUT fresh from a reset; what failed (the DUT is reset again afterwards)."""
        checkpoint = self.bench.dut.checkpoint()
        self.bench.send([item.frame for item in sent])
        failure = self.bench.check(checkpoint)
        self._restart()
        return failure

    def _reproduce(self, case: Case, burst: list[_Sent], history: list[_Sent], stem: Path) -> None:
        if burst and self._fails(burst) is not None:
            case.reproduced = "burst"
            signature = case.failure.signature()
            fresh = signature not in self._reduced_signatures
            if self.reduce and fresh and len(self._reduced_signatures) < REDUCED_CASES_MAX:
                self._reduced_signatures.add(signature)
                reduced = self._reduce(burst)
                if len(reduced) < len(burst):
                    case.reduced_pcap = self._write(stem, ".min", reduced)
                    case.reduced_frames = len(reduced)
            return
        if len(history) > len(burst) and time.monotonic() < self._deadline and self._fails(history) is not None:
            case.reproduced = "history"
            return
        case.reproduced = "no"

    def _reduce(self, frames: list[_Sent]) -> list[_Sent]:
        """The fewest frames of a failing burst found to fail still (bisection on the prefix, then removals)."""
        trials = 0

        def fails(candidate: list[_Sent]) -> bool:
            nonlocal trials
            trials += 1
            return self._fails(candidate) is not None

        def budget() -> bool:
            return trials < REDUCE_TRIALS_MAX and time.monotonic() < self._deadline

        passing, failing = 0, len(frames)  # the shortest failing prefix lies in (passing, failing]
        while failing - passing > 1 and budget():
            middle = (passing + failing) // 2
            if fails(frames[:middle]):
                failing = middle
            else:
                passing = middle
        best = frames[:failing]
        if len(best) > 1 and budget() and fails(best[-1:]):
            return best[-1:]
        chunk = len(best) // 2
        while chunk >= 1 and len(best) > 1 and budget():
            start = 0
            while start < len(best) - 1 and budget():
                candidate = best[:start] + best[start + chunk :]
                if candidate and candidate[-1] is best[-1] and fails(candidate):
                    best = candidate
                else:
                    start += chunk
            chunk //= 2
        return best


# --- replay --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayResult:
    """What replaying a pcap did."""

    pcap: Path
    frames: int
    retargeted: bool
    failure: Failure | None


def recorded_target(pcap: Path) -> Target | None:
    """The addresses a case's pcap was recorded for (from its `case-NNN.json`), or None for a foreign pcap."""
    case_file = pcap.with_name(pcap.name.split(".", 1)[0] + ".json")
    if not case_file.is_file():
        return None
    try:
        fields = json.loads(case_file.read_text())["target"]
        return Target(**{**fields, "tcp_ports": tuple(fields["tcp_ports"]), "udp_ports": tuple(fields["udp_ports"])})
    except (ValueError, KeyError, TypeError) as exc:
        raise LabError(f"{case_file} is not a fuzz case file: {exc}") from exc


def replay(bench: FuzzBench, pcap: Path) -> ReplayResult:
    """Send a pcap's frames to the DUT (mapped onto its current addresses) and check it is still alive."""
    frames = frames_lab.read_pcap(pcap)
    target = bench.connect()
    recorded = recorded_target(pcap)
    mapping = frames_lab.address_mapping(recorded, target) if recorded is not None else {}
    retargeted = [frames_lab.retarget(frame, mapping) for frame in frames]
    checkpoint = bench.dut.checkpoint()
    bench.send(retargeted)
    return ReplayResult(pcap, len(frames), bool(mapping), bench.check(checkpoint))
