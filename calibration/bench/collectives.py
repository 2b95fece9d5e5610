"""Collectives through torch.distributed in real processes: gloo on CPU, NCCL with one process per GPU.

Each rank times every repeat between two barriers with its own clock (CUDA: after synchronising); a
repeat's time is the slowest rank's, and the result is the median over repeats. Bus bandwidth follows
nccl-tests: the per-rank buffer size over time, times 2(n−1)/n for all-reduce and (n−1)/n for all-gather,
reduce-scatter and all-to-all.
"""

from __future__ import annotations

import socket
import statistics
import time

PATTERNS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all")
BUS_FACTOR = {"all_reduce": lambda n: 2 * (n - 1) / n, "all_gather": lambda n: (n - 1) / n,
              "reduce_scatter": lambda n: (n - 1) / n, "all_to_all": lambda n: (n - 1) / n}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _collective(torch, dist, pattern: str, buffer, world: int):
    if pattern == "all_reduce":
        return lambda: dist.all_reduce(buffer)
    chunk = buffer.numel() // world
    if pattern == "all_gather":
        part = buffer[:chunk].clone()
        all_gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
        return lambda: all_gather(buffer, part)
    if pattern == "reduce_scatter":
        out = buffer[:chunk].clone()
        reduce_scatter = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
        return lambda: reduce_scatter(out, buffer)
    out = torch.empty_like(buffer)
    return lambda: dist.all_to_all_single(out, buffer)


def _worker(rank: int, world: int, backend: str, port: int, sizes: list[int], patterns: list[str],
            warmup: int, repeats: int, results) -> None:
    import torch
    import torch.distributed as dist

    from moesim.calibration.timing import generator, random_nonzero

    torch.set_num_threads(1)
    device = "cpu"
    if backend == "nccl":
        torch.cuda.set_device(rank)
        device = "cuda"
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    gen = generator(torch, device, rank)
    rows = []
    for pattern in patterns:
        for size in sizes:
            elements = max(world, size // 4 // world * world)  # fp32, divisible by the world size
            buffer = random_nonzero(torch, (elements,), torch.float32, device, gen)
            try:
                run = _collective(torch, dist, pattern, buffer, world)
                samples = []
                for i in range(warmup + repeats):
                    dist.barrier()
                    start = time.perf_counter()
                    run()
                    if device == "cuda":
                        torch.cuda.synchronize()
                    if i >= warmup:
                        samples.append(time.perf_counter() - start)
            except (RuntimeError, NotImplementedError, ValueError) as err:
                rows.append((pattern, elements * 4, None, str(err).splitlines()[0]))
                continue
            slowest = torch.tensor(samples, dtype=torch.float64)
            dist.all_reduce(slowest, op=dist.ReduceOp.MAX)  # gloo and NCCL both reduce float64 on CPU/GPU
            rows.append((pattern, elements * 4, statistics.median(slowest.tolist()), ""))
    dist.barrier()
    dist.destroy_process_group()
    if rank == 0:
        results.put(rows)


def run_collectives(backend: str, world: int, sizes: list[int], patterns=PATTERNS, warmup: int = 2,
                    repeats: int = 5, timeout_s: float = 300.0) -> list[tuple[str, int, float | None, str]]:
    """Spawn ``world`` processes and time each pattern at each size (bytes per rank).

    Returns (pattern, bytes_per_rank, median_s or None, why not) rows; a pattern the backend lacks gets None.
    """
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_worker, args=(r, world, backend, port, sizes, list(patterns), warmup,
                                                repeats, results)) for r in range(world)]
    for p in procs:
        p.start()
    import queue

    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                rows = results.get(timeout=1.0)
                break
            except queue.Empty:
                failed = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                if failed or time.monotonic() > deadline:
                    raise RuntimeError(f"{backend} collective benchmark: worker exit codes {failed or 'timeout'}")
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
    return rows


def bus_gbps(pattern: str, world: int, bytes_per_rank: float, seconds: float) -> float:
    return bytes_per_rank / seconds * BUS_FACTOR[pattern](world) / 1e9
