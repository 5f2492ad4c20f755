"""The holder of one labgrid place: reserves and acquires it on the coordinator, releases it when the run ends.

``python -m harness.boards.place.holder --coordinator HOST:PORT --owner NAME (--place P | --tag K=V ...)``

The coordinator is the only one that knows who holds a board; this process is how a run takes part. It
uses labgrid's own mechanisms: a *reservation* (filtered by the place's name or by tags, so the
coordinator's scheduler decides who gets which board, in order, and a run that finds its place taken
waits in the coordinator's queue), then *acquire* with that reservation. It reports on stdout, one JSON
object per line: ``{"event": "waiting", ...}`` while the place is taken, then ``{"event": "acquired",
"place": ..., "resources": [...]}`` or ``{"event": "failed", "error": ...}``.

labgrid keeps a place acquired after its client disconnects (by design: `labgrid-client acquire` returns),
so release cannot be left to a broken connection. The holder is a child of the harness started with a
parent-death signal (`harness.processes.spawn`): it releases the place and cancels its reservation when
its standard input closes, on SIGTERM/SIGINT/SIGHUP, and when the process that started it dies, even by
SIGKILL. Kept out of the pytest process on purpose: gRPC and the fork of every lab helper do not mix.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from typing import Any

import grpc
from labgrid.remote.client import ClientSession
from labgrid.remote.common import Reservation, ReservationState
from labgrid.remote.generated import labgrid_coordinator_pb2 as pb
from labgrid.util.proxy import proxymanager

log = logging.getLogger("hil.place")

POLL_S = 0.5
REPORT_EVERY_S = 30.0
RPC_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 15.0


class PlaceFailure(Exception):
    """The place cannot be had; the message says why and what to do."""


def emit(event: str, **fields: Any) -> None:
    """One report line for the harness."""
    print(json.dumps({"event": event, **fields}), flush=True)


class Holder:
    """One place held for one run (see the module docstring)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)  # gRPC's aio channel binds to the current loop when it is made
        self.session: ClientSession | None = None
        self.token: str | None = None
        self.place: str | None = None
        self.stop = asyncio.Event()

    # --- connection --------------------------------------------------------------------------------------

    def connect(self) -> ClientSession:
        os.environ["LG_USERNAME"] = self.args.owner  # labgrid names the holder host/<this>
        address = proxymanager.get_grpc_address(self.args.coordinator, default_port=20408)
        session = ClientSession(address, self.loop)
        try:
            self.run(asyncio.wait_for(session.start(), CONNECT_TIMEOUT_S))
        except Exception as exc:  # gRPC, a refused connection, or the timeout
            raise PlaceFailure(
                f"cannot reach the labgrid coordinator at {self.args.coordinator} ({exc or type(exc).__name__}): "
                "check --lg-coordinator / LG_COORDINATOR and that labgrid-coordinator runs"
            ) from exc
        self.session = session
        return session

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    async def call(self, method: str, request: Any) -> Any:
        assert self.session is not None
        try:
            return await getattr(self.session.stub, method)(request, timeout=RPC_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            raise PlaceFailure(f"the coordinator refused {method}: {exc.details()}") from exc

    # --- reserve, wait, acquire --------------------------------------------------------------------------

    def wanted(self) -> dict[str, str]:
        """The reservation filter: the place's name (labgrid's implicit `name` tag) or the given tags."""
        return {"name": self.args.place} if self.args.place else dict(self.args.tag)

    def check_exists(self) -> None:
        assert self.session is not None
        places = self.session.places
        wanted = self.wanted()
        matching = [name for name, place in places.items() if wanted.items() <= ({**place.tags, "name": name}).items()]
        if not matching:
            known = ", ".join(f"{name} {dict(p.tags)}" for name, p in sorted(places.items())) or "none"
            what = f"place {self.args.place!r}" if self.args.place else f"a place with tags {wanted}"
            raise PlaceFailure(f"the coordinator at {self.args.coordinator} has no {what}; its places: {known}")

    def holders(self) -> str:
        """Who holds the places this run could get (for the waiting report)."""
        assert self.session is not None
        wanted = self.wanted()
        taken = []
        for name, place in sorted(self.session.places.items()):
            if wanted.items() <= ({**place.tags, "name": name}).items():
                if place.acquired:
                    taken.append(f"{name} acquired by {place.acquired}")
                elif place.reservation:
                    taken.append(f"{name} reserved for another client")
        return "; ".join(taken) or "allocation pending"

    async def reserve_and_acquire(self) -> str:
        request = pb.CreateReservationRequest(filters={"main": pb.Reservation.Filter(filter=self.wanted())}, prio=0)
        created = await self.call("CreateReservation", request)
        self.token = Reservation.from_pb2(created.reservation).token
        deadline = time.monotonic() + self.args.wait
        next_report = 0.0
        while True:
            polled = await self.call("PollReservation", pb.PollReservationRequest(token=self.token))
            reservation = Reservation.from_pb2(polled.reservation)
            if reservation.state in (ReservationState.allocated, ReservationState.acquired):
                break
            if reservation.state is not ReservationState.waiting:
                raise PlaceFailure(f"the coordinator ended the reservation ({reservation.state.name})")
            now = time.monotonic()
            if now >= deadline:
                raise PlaceFailure(
                    f"no place free within {self.args.wait:g} s (--lg-wait): {self.holders()}. Retry later, raise "
                    "--lg-wait, or ask the holder to release it (`labgrid-client -p PLACE release`)"
                )
            if now >= next_report:
                emit("waiting", held_by=self.holders(), wait_s=round(deadline - now, 1))
                next_report = now + REPORT_EVERY_S
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), POLL_S)
            if self.stop.is_set():
                raise PlaceFailure("stopped while waiting for a place")
        (name,) = reservation.allocations["main"]
        self.place = name
        await self.call("AcquirePlace", pb.AcquirePlaceRequest(placename=name))
        assert self.session is not None
        await self.session.sync_with_coordinator()
        return name

    def report(self, name: str) -> dict[str, Any]:
        assert self.session is not None
        place = self.session.places[name]
        resources = []
        for exporter, group, cls, resource_name in place.acquired_resources:
            entry = self.session.resources.get(exporter, {}).get(group, {}).get(resource_name)
            params = dict(entry.params) if entry is not None else {}
            resources.append({"exporter": exporter, "group": group, "cls": cls, "name": resource_name,
                              "params": params})  # fmt: skip
        return {"place": name, "owner": place.acquired, "coordinator": self.args.coordinator,
                "tags": dict(place.tags), "resources": resources}  # fmt: skip

    # --- hold and release --------------------------------------------------------------------------------

    def watch_for_the_end(self) -> None:
        """Stop on SIGTERM/SIGINT/SIGHUP and when the harness closes our standard input (or dies)."""
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            self.loop.add_signal_handler(sig, self.stop.set)

        def on_stdin() -> None:
            if not os.read(sys.stdin.fileno(), 4096):
                self.loop.remove_reader(sys.stdin.fileno())
                self.stop.set()

        self.loop.add_reader(sys.stdin.fileno(), on_stdin)

    async def release(self) -> None:
        if self.place is not None:
            with contextlib.suppress(PlaceFailure):
                await self.call("ReleasePlace", pb.ReleasePlaceRequest(placename=self.place))
                log.info("released place %s", self.place)
        if self.token is not None:
            with contextlib.suppress(PlaceFailure):
                await self.call("CancelReservation", pb.CancelReservationRequest(token=self.token))

    def close(self) -> None:
        if self.session is not None:
            with contextlib.suppress(Exception):
                self.run(asyncio.wait_for(self.release(), 2 * RPC_TIMEOUT_S))
            with contextlib.suppress(Exception):
                self.run(asyncio.wait_for(self.session.stop(), 5))
                self.run(self.session.close())
        self.loop.close()

    def main(self) -> int:
        self.watch_for_the_end()
        try:
            self.connect()
            self.check_exists()
            name = self.run(self.reserve_and_acquire())
            emit("acquired", **self.report(name))
            self.run(self.stop.wait())
            return 0
        except PlaceFailure as exc:
            emit("failed", error=str(exc))
            return 2
        finally:
            self.close()


def main(argv: list[str] | None = None) -> int:
    """Process entry point (started by the place board kind, one per run or xdist worker)."""
    parser = argparse.ArgumentParser(prog="python -m harness.boards.place.holder", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--coordinator", required=True)
    parser.add_argument("--owner", required=True, help="the user part of the holder's name on the coordinator")
    parser.add_argument("--wait", type=float, default=600.0, help="how long to wait for a free place (s)")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--place")
    target.add_argument("--tag", action="append", type=lambda pair: tuple(pair.split("=", 1)), default=[])
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s holder: %(message)s")
    return Holder(parser.parse_args(argv)).main()


if __name__ == "__main__":
    sys.exit(main())
