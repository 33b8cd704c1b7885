"""Where a client metadata document's host is looked up: threads of its own, and few fetches at a time.

Anyone who reaches the hub can make it fetch a client_id URL, so anyone can make it resolve a name whose
DNS servers never answer. The system resolver holds a thread until it gives up (tens of seconds); the
fetch's deadline frees the request, not the thread. These lookups therefore run on worker threads under a
limiter of their own, never on the event loop's executor that the hub's own lookups use (upstream
connects, Redis), and at most MAX_FETCHES metadata fetches are in flight hub-wide, each counted until its
lookup thread has really returned: past that, a fetch is refused at once. Does not own which addresses
may be fetched from, nor the fetch (`clients`).
"""

from __future__ import annotations

import socket
import threading

import anyio
import anyio.to_thread

MAX_FETCHES = 8  # metadata fetches in flight hub-wide, a lookup that outlived its request included


class Slot:
    """One fetch's place among its FetchSlots: given back when its last holder lets go (the request,
    and the lookup thread it started, which may outlive it)."""

    def __init__(self, slots: FetchSlots) -> None:
        self._slots = slots
        self._holders = 1

    def hold(self) -> None:
        with self._slots.lock:
            self._holders += 1

    def release(self) -> None:
        with self._slots.lock:
            self._holders -= 1
            if self._holders == 0:
                self._slots.in_flight -= 1


class FetchSlots:
    """At most `cap` fetches at a time; `take` answers at once (None: all taken)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.lock = threading.Lock()
        self.in_flight = 0

    def take(self) -> Slot | None:
        with self.lock:
            if self.in_flight >= self.cap:
                return None
            self.in_flight += 1
        return Slot(self)


FETCHES = FetchSlots(MAX_FETCHES)
_THREADS = anyio.CapacityLimiter(MAX_FETCHES)  # never anyio's shared limiter (config reads, search, Redis)


def system_lookup(host: str, port: int) -> list[str]:
    """The addresses the system resolver gives `host` (an ASCII name); blocks as long as it tries."""
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


async def addresses(host: str, port: int, slot: Slot, within: float) -> list[str]:
    """The addresses `host` (an ASCII name) resolves to; none when it does not, nor within `within`
    seconds. The lookup holds `slot` until its thread returns, however long after this gives up."""
    lock = threading.Lock()
    began = abandoned = False

    def lookup() -> list[str]:
        nonlocal began
        with lock:
            if abandoned:  # the request gave up before the thread began: it gave the slot back
                return []
            began = True
        try:
            return system_lookup(host, port)
        except (OSError, UnicodeError):
            return []
        finally:
            slot.release()

    slot.hold()
    try:
        with anyio.move_on_after(within):
            return await anyio.to_thread.run_sync(lookup, limiter=_THREADS, abandon_on_cancel=True)
        return []
    finally:
        with lock:
            if not began:  # (cancelled before the thread took it up: it never will)
                abandoned = True
                slot.release()
