"""The admission rules before login: per-source limit, random early drop between start and full, a hard cap."""

from __future__ import annotations

import random

import pytest

from phasef_tui.ssh.admission import Admission, MaxStartups, StartupsError, source_of


def test_parse_and_drop_probability_follow_sshd() -> None:
    limits = MaxStartups.parse("10:30:100")
    assert (limits.start, limits.rate, limits.full) == (10, 30, 100) and str(limits) == "10:30:100"
    assert [limits.drop_probability(n) for n in (0, 9, 10, 55, 99, 100, 500)] == pytest.approx(
        [0, 0, 0.3, 0.65, 0.3 + 0.7 * 89 / 90, 1, 1]
    )
    hard = MaxStartups.parse("5")
    assert [hard.drop_probability(n) for n in (4, 5)] == [0, 1]
    for bad in ("", "a", "1:2", "10:30:5", "0", "10:101:100", "-1:30:100", "1:2:3:4"):
        with pytest.raises(StartupsError):
            MaxStartups.parse(bad)


def test_one_address_is_held_to_its_share_whatever_the_others_do() -> None:
    gate = Admission(MaxStartups(10, 30, 100), per_source=3, rng=random.Random(1))
    assert [gate.admit("127.0.0.2") for _ in range(3)] == [None] * 3
    refusal = gate.admit("::ffff:127.0.0.2")  # the same address, written as IPv6
    assert refusal is not None and refusal.limit == "per-source" and "127.0.0.2" in refusal.reason
    assert gate.admit("127.0.0.1") is None and gate.total == 4
    gate.release("127.0.0.2")
    assert gate.admit("127.0.0.2") is None and gate.pending("127.0.0.2") == 3
    unlimited = Admission(MaxStartups(50, 30, 100), per_source=0)
    assert all(unlimited.admit("10.0.0.1") is None for _ in range(50))


def test_random_early_drop_between_start_and_full_then_none_at_full() -> None:
    gate = Admission(MaxStartups(4, 50, 8), per_source=0, rng=random.Random(7))
    for n in range(4):
        assert gate.admit(f"10.0.0.{n}") is None  # below start: always admitted
    # at 4 logging in each new one is dropped with p = 0.5; count over many tries, releasing the admitted ones
    drops = 0
    for n in range(4000):
        refusal = gate.admit(f"10.1.{n // 250}.{n % 250}")
        if refusal is None:
            gate.release(f"10.1.{n // 250}.{n % 250}")
        else:
            assert refusal.limit == "random-early-drop"
            drops += 1
    assert 1800 < drops < 2200
    while gate.total < 8:
        gate.admit(f"10.2.0.{gate.total}")
    refusals = [gate.admit(f"10.3.0.{n}") for n in range(50)]
    assert all(r is not None and r.limit == "full" for r in refusals) and gate.total == 8


def test_release_of_an_unknown_address_changes_nothing_and_sources_are_normalised() -> None:
    gate = Admission(MaxStartups(), per_source=4)
    gate.release("192.0.2.1")
    assert gate.total == 0
    assert source_of("::ffff:192.0.2.1") == "192.0.2.1" and source_of("fe80::1%eth0") == "fe80::1"
    assert source_of("not an address") == "not an address"
