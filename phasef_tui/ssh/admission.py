"""Who may start logging in: OpenSSH's MaxStartups (random early drop) and PerSourceMaxStartups, for phasef.

A TCP connection that has not logged in yet costs the server a slot and costs the client nothing, so one machine
holding many half-open connections could keep every operator out. Three limits stop that, as in OpenSSH:

- **per source**: at most ``per_source`` connections from one address may be logging in at once; the next one from
  that address is dropped, whatever the others do. One source cannot fill the server.
- **start:rate:full**: with ``start`` or more connections logging in, a new one is dropped with probability
  ``rate`` % rising linearly to 100 % at ``full``; at ``full`` every new one is dropped. Many sources together
  slow operators down but cannot lock them out, since an operator's retry gets through with good odds.
- a short pre-authentication timeout (in the server) closes a connection that has not finished the version and
  key exchange in time, so slots held by silent clients come back quickly.
"""

from __future__ import annotations

import ipaddress
import random
from collections import Counter
from dataclasses import dataclass


class StartupsError(ValueError):
    """A ``--max-startups`` value that cannot be read."""


@dataclass(frozen=True)
class MaxStartups:
    """``start:rate:full`` as in OpenSSH's sshd_config; a single number N means N:100:N (a hard cap)."""

    start: int = 10
    rate: int = 30
    full: int = 100

    def __post_init__(self) -> None:
        if not 1 <= self.start <= self.full:
            raise StartupsError(f"start {self.start} must be at least 1 and at most full {self.full}")
        if not 0 <= self.rate <= 100:
            raise StartupsError(f"rate {self.rate} must be a percentage (0-100)")

    @classmethod
    def parse(cls, text: str) -> MaxStartups:
        parts = text.strip().split(":")
        if len(parts) not in (1, 3) or not all(p.isdigit() for p in parts):
            raise StartupsError(f"{text!r}: expected N or START:RATE:FULL (for example 10:30:100)")
        numbers = [int(p) for p in parts]
        if len(numbers) == 1:
            return cls(numbers[0], 100, numbers[0])
        return cls(*numbers)

    def drop_probability(self, logging_in: int) -> float:
        """The chance that a new connection is dropped while ``logging_in`` connections are logging in."""
        if logging_in >= self.full:
            return 1.0
        if logging_in < self.start:
            return 0.0
        span = self.full - self.start  # > 0 here: start <= logging_in < full
        return (self.rate + (100 - self.rate) * (logging_in - self.start) / span) / 100

    def __str__(self) -> str:
        return f"{self.start}:{self.rate}:{self.full}"


def source_of(address: str) -> str:
    """The address a per-source count is kept for (an IPv4-mapped IPv6 address counts as its IPv4 address)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


@dataclass(frozen=True)
class Refusal:
    reason: str
    limit: str  # which limit: per-source, full, random-early-drop


class Admission:
    """The connections still logging in, counted overall and per source; ``admit`` says whether one more may."""

    def __init__(self, limits: MaxStartups, per_source: int, rng: random.Random | None = None) -> None:
        self.limits = limits
        self.per_source = per_source  # 0: no per-source limit
        self._rng = rng if rng is not None else random.SystemRandom()
        self._by_source: Counter[str] = Counter()
        self.total = 0

    def pending(self, source: str) -> int:
        return self._by_source[source_of(source)]

    def admit(self, address: str) -> Refusal | None:
        """Count a new connection from ``address`` as logging in, or say why it is dropped (it is not counted)."""
        source = source_of(address)
        if self.per_source and self._by_source[source] >= self.per_source:
            return Refusal(f"too many connections logging in from {source}", "per-source")
        if self.total >= self.limits.full:
            return Refusal("too many connections logging in", "full")
        probability = self.limits.drop_probability(self.total)
        if probability > 0 and self._rng.random() < probability:
            return Refusal("too many connections logging in (random early drop)", "random-early-drop")
        self._by_source[source] += 1
        self.total += 1
        return None

    def release(self, address: str) -> None:
        """A connection counted by ``admit`` has logged in or gone."""
        source = source_of(address)
        if self._by_source[source] > 0:
            self._by_source[source] -= 1
            self.total -= 1
        if self._by_source[source] == 0:
            del self._by_source[source]
