"""A trace's summary as plain data: per stream, per kernel class, per phase and layer, and overlap.

All durations are microseconds. ``overlap`` compares, on each GPU, the union of communication kernels' busy
intervals with the union of all other kernels' (compute, on any stream): what the schedule hid and what it
exposed (summed over GPUs). Streams are keyed by stream id, or ``gpu:stream`` when the trace has several GPUs.
"""

from __future__ import annotations

from collections import defaultdict

from moesim.workloads.traces.kineto import KinetoTrace
from moesim.workloads.traces.phases import (UNATTRIBUTED, busy_intervals, comm_split, component_costs_us,
                                     intersection_us, is_comm, kernel_class_totals, phase_instances)


def _length(intervals) -> float:
    return sum(b - a for a, b in intervals)


def summarize(trace: KinetoTrace) -> dict:
    """Everything ``moesim trace summarize`` prints, as a JSON-ready dict."""
    instances, loose = phase_instances(trace)
    kernels = trace.kernels
    devices = sorted({k.device for k in kernels})

    def key(k) -> str:  # a stream of one GPU; with several GPUs (moesim's exports) named "gpu:stream"
        return f"{k.device}:{k.stream}" if len(devices) > 1 else str(k.stream)

    streams = {}
    for stream in sorted({key(k) for k in kernels}, key=lambda s: tuple(int(x) for x in s.split(":"))):
        ks = [k for k in kernels if key(k) == stream]
        classes = kernel_class_totals(ks)
        main = max(classes.items(), key=lambda c: c[1][1])[0]
        streams[stream] = {
            "kernels": len(ks), "kernel_us": sum(k.dur_us for k in ks), "busy_us": _length(busy_intervals(ks)),
            "comm_kernels": sum(1 for k in ks if is_comm(k)), "main_class": main.value,
        }
    classes = {cls.value: {"kernels": n, "kernel_us": us}
               for cls, (n, us) in sorted(kernel_class_totals(kernels).items(), key=lambda c: -c[1][1])}

    splits = comm_split(instances)
    phases: dict[str, dict] = {}
    for inst in instances:
        entry = phases.setdefault(inst.name, {"instances": 0, "cpu_us": 0.0, "kernels": 0, "gpu_us": 0.0,
                                              "streams": defaultdict(lambda: {"kernels": 0, "gpu_us": 0.0}),
                                              "per_layer_gpu_us": []})
        entry["instances"] += 1
        entry["cpu_us"] += inst.cpu_dur_us
        entry["kernels"] += len(inst.kernels)
        entry["gpu_us"] += inst.gpu_us()
        entry["per_layer_gpu_us"].append(inst.gpu_us())
        for k in inst.kernels:
            s = entry["streams"][key(k)]
            s["kernels"] += 1
            s["gpu_us"] += k.dur_us
    for name, entry in phases.items():
        entry["streams"] = dict(entry["streams"])
        split = splits.get(name)
        if split and split.total_us:
            entry["comm"] = {"transfer_us": split.transfer_us, "sync_us": split.sync_us,
                             "waiting_us": split.waiting_us}
    if loose:
        phases[UNATTRIBUTED] = {"instances": 0, "cpu_us": 0.0, "kernels": len(loose),
                                "gpu_us": sum(k.dur_us for k in loose), "per_layer_gpu_us": [],
                                "streams": {s: {"kernels": sum(1 for k in loose if key(k) == s),
                                                "gpu_us": sum(k.dur_us for k in loose if key(k) == s)}
                                            for s in sorted({key(k) for k in loose})}}

    # Overlap is a per-GPU notion: computed for each GPU, then summed.
    comm_us = compute_us = both = 0.0
    for device in devices:
        comm = busy_intervals([k for k in kernels if k.device == device and is_comm(k)])
        compute = busy_intervals([k for k in kernels if k.device == device and not is_comm(k)])
        comm_us, compute_us = comm_us + _length(comm), compute_us + _length(compute)
        both += intersection_us(comm, compute)
    overlap = {"span_us": trace.span_us, "gpus": len(devices), "compute_busy_us": compute_us,
               "comm_busy_us": comm_us, "overlap_us": both, "comm_exposed_us": comm_us - both,
               "comm_hidden_fraction": both / comm_us if comm_us else 0.0}
    costs = {f"{c}({p})": v for (c, p), v in component_costs_us(instances).items()}
    return {
        "trace": {"path": trace.path, "name": trace.name, "device": trace.device_name, "sms": trace.sms,
                  "rank": trace.rank, "world_size": trace.world_size, "kernels": len(kernels),
                  "flow_links": trace.flow_links, "annotations": len(trace.annotations),
                  "streams": trace.streams},
        "streams": streams, "kernel_classes": classes, "phases": phases, "overlap": overlap,
        "per_layer_costs": costs,
    }
