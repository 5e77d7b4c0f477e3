"""The sampler stamps every sample of a sensor with a later time than the one before, also when
it wakes up late and samples twice at once (a fake clock: no sleeping)."""

from __future__ import annotations

from itertools import pairwise

from edge.sampler import Sample, Sampler
from edge.sensors.simulator import SimulatedSensor

PERIOD_S = 0.2
STALL_S = 0.5
SAMPLES = 300


class StallingClock:
    """Wall and monotonic time that move only when the sampler waits. Every tenth wait wakes up
    ``STALL_S`` late, the way a busy CPU or a slow bus makes it; at wait ``step_back_at`` the
    wall clock is stepped back ``step_back_s`` (NTP), the monotonic clock is not."""

    def __init__(self, *, step_back_at: int = 0, step_back_s: float = 0.0) -> None:
        self.wall = 1_763_900_000.0
        self.mono = 0.0
        self.waits = 0
        self.step_back_at = step_back_at
        self.step_back_s = step_back_s

    def wait(self, delay_s: float) -> bool:
        self.waits += 1
        late = STALL_S if self.waits % 10 == 0 else 0.0
        self.wall += delay_s + late
        self.mono += delay_s + late
        if self.waits == self.step_back_at:
            self.wall -= self.step_back_s
        return self.waits >= SAMPLES  # True: stop


def run_sampler(clock: StallingClock) -> tuple[list[Sample], list[float]]:
    """The samples emitted, and the wall-clock time of each read."""
    samples: list[Sample] = []
    read_at: list[float] = []

    class RecordingSensor(SimulatedSensor):
        def read(self, now_s: float) -> tuple[float | None, str | None]:
            read_at.append(now_s)
            return super().read(now_s)

    Sampler(
        RecordingSensor("sim-0", seed=3),
        period_s=lambda: PERIOD_S,
        emit=samples.append,
        wait=clock.wait,
        wall_clock=lambda: clock.wall,
        monotonic=lambda: clock.mono,
    ).run()
    return samples, read_at


def test_a_late_wake_up_never_stamps_two_samples_with_one_time() -> None:
    samples, read_at = run_sampler(StallingClock())
    # The scenario happened: after each stall the sampler read the sensor again at once.
    assert sum(1 for a, b in pairwise(read_at) if int(a * 1000) == int(b * 1000)) >= 25
    times = [s[1] for s in samples]
    assert len(times) == len(read_at) == SAMPLES
    assert all(b > a for a, b in pairwise(times))
    # Each time is the read's own, or one millisecond after the previous sample's.
    for (prev, t), at in zip(pairwise(times), read_at[1:], strict=True):
        assert t == max(int(at * 1000), prev + 1)


def test_a_wall_clock_stepped_back_still_gives_increasing_times() -> None:
    samples, read_at = run_sampler(StallingClock(step_back_at=50, step_back_s=3.0))
    times = [s[1] for s in samples]
    assert any(b < a for a, b in pairwise(read_at))
    assert all(b > a for a, b in pairwise(times))
    # Once the clock has passed the last stamp again, samples carry their own time.
    assert times[-1] == int(read_at[-1] * 1000)
