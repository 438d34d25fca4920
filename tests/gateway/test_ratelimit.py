"""The in-process sliding-window counters (memory storage): what is allowed, and the Retry-After advice."""

from __future__ import annotations

from gateway.ratelimit import MemoryWindows, RateLimits


class Clock:
    def __init__(self, at: float) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


async def test_a_full_window_fades_as_it_slides():
    clock = Clock(6000.0)  # a window boundary
    limits = RateLimits("memory://", "3/minute", "1000/minute", now=clock)
    assert [await limits.check("principal", "a") for _ in range(3)] == [None, None, None]
    assert await limits.check("principal", "a") == 60  # 80 s of sliding window needed, advice capped at a minute
    assert await limits.check("principal", "b") is None  # another key, its own budget
    clock.at += 79  # 41 s into the next window: 3 * 41/60 = 2.05 still counted
    assert await limits.check("principal", "a") == 1
    clock.at += 1  # 40/60 of 3 = 2: room for one
    assert await limits.check("principal", "a") is None
    assert await limits.check("principal", "a") is not None
    clock.at += 120  # two windows later nothing is counted
    assert [await limits.check("principal", "a") for _ in range(3)] == [None, None, None]


async def test_scopes_count_apart_and_idle_keys_are_forgotten():
    clock = Clock(0.0)
    limits = RateLimits("memory://", "1/minute", "2/minute", now=clock)
    assert await limits.check("principal", "k") is None
    assert await limits.check("address", "k") is None
    assert await limits.check("address", "k") is None
    assert await limits.check("address", "k") is not None
    assert await limits.check("principal", "k") is not None
    assert isinstance(limits.memory, MemoryWindows)
    clock.at = 600.0
    assert await limits.check("principal", "other") is None  # the sweep runs on an allowed hit
    assert set(limits.memory.windows) == {("principal", "other")}
