"""Timing kernels right: warm-up, device events (or synchronised clocks on CPU), median of repeats,
rotating input buffers (so a kernel never re-reads a cache-warm copy of its inputs) and random, never-zero
data (so no kernel takes a shortcut on zeros or denormals). torch is imported lazily by the callers.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

# Buffers are rotated until their total exceeds twice the last-level cache, so each call reads from memory.
CACHE_FLUSH_FACTOR = 2
MAX_BUFFERS = 16
# Short kernels repeat until this much measured time has accumulated (at most MAX_REPEATS), so the median
# is taken over enough samples to be robust to a busy host.
MIN_MEASURED_S = 0.05
MAX_REPEATS = 200


@dataclass(frozen=True)
class Timing:
    """Median and spread (10th and 90th percentiles) of repeated kernel times, in seconds."""

    median_s: float
    p10_s: float
    p90_s: float
    repeats: int


def generator(torch, device: str, seed: int):
    """A seeded random generator on ``device``, so inputs are made where they are used (no host copies)."""
    return torch.Generator(device=device).manual_seed(seed)


def random_nonzero(torch, shape, dtype, device, generator):
    """Uniform in ±[0.5, 1.5): random sign and magnitude, never zero, no denormals, no outliers.
    ``generator`` must live on ``device``."""
    magnitude = torch.rand(shape, generator=generator, device=device) + 0.5
    sign = torch.randint(0, 2, shape, generator=generator, device=device) * 2 - 1
    return (magnitude * sign).to(dtype=dtype)


def buffer_count(bytes_per_set: float, cache_bytes: float) -> int:
    """How many input sets to rotate through so that together they overflow the cache."""
    wanted = int(CACHE_FLUSH_FACTOR * cache_bytes // max(bytes_per_set, 1.0)) + 1
    return max(2, min(MAX_BUFFERS, wanted))


class Timer:
    """Times a callable on one torch device; ``device`` is ``"cpu"`` or ``"cuda"``."""

    def __init__(self, torch, device: str, warmup: int = 3, repeats: int = 10):
        self.torch, self.device = torch, device
        self.warmup, self.repeats = warmup, repeats

    def sync(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def measure(self, run: Callable, inputs: list, prepare: Callable | None = None) -> Timing:
        """Median time of ``run(*prepared)``, rotating over ``inputs``; ``prepare`` runs untimed before each."""
        samples: list[float] = []
        i = 0
        while len(samples) < self.repeats or (sum(samples) < MIN_MEASURED_S and len(samples) < MAX_REPEATS):
            args = inputs[i % len(inputs)]
            if prepare is not None:
                args = prepare(*args)
            self.sync()
            seconds = self._time_once(run, args)
            if i >= self.warmup:
                samples.append(seconds)
            i += 1
        samples.sort()
        return Timing(statistics.median(samples), samples[len(samples) // 10],
                      samples[min(len(samples) - 1, (9 * len(samples)) // 10)], len(samples))

    def _time_once(self, run: Callable, args) -> float:
        if self.device == "cuda":
            start = self.torch.cuda.Event(enable_timing=True)
            end = self.torch.cuda.Event(enable_timing=True)
            start.record()
            run(*args)
            end.record()
            end.synchronize()
            return start.elapsed_time(end) * 1e-3  # elapsed_time is in milliseconds
        start = time.perf_counter()
        run(*args)
        return time.perf_counter() - start
