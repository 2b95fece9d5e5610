"""What a calibration ran on: the device's peaks (from the GPU catalogue or, for a CPU, its ISA and clock)
and provenance (device name, SMs or cores, clocks, driver, torch and CUDA versions, date, command)."""

from __future__ import annotations

import datetime
import os
import platform
import shutil
import subprocess
from pathlib import Path

# FLOPs per core per clock, assuming two 512-bit FMA pipes per core (AMD Zen 5 and Intel Sapphire Rapids
# server cores, per their vendors' microarchitecture descriptions): a 512-bit BF16 dot product (VDPBF16PS)
# does 32 multiply-adds, an FP32 FMA 16. Cores with narrower datapaths (e.g. Zen 4) reach half. The clock is
# what the OS reports: in a VM without cpufreq that is the nominal clock, and boost can exceed it, so a
# measured efficiency above 1 on such a host means the peak is understated, not the timing wrong.
CPU_FLOPS_PER_CLOCK = {"avx512_bf16": 128, "avx512f": 64, "avx2": 32}


def cpu_model() -> tuple[str, set[str], float]:
    """(model name, ISA flags, clock in MHz: cpufreq maximum if readable, else the current reading)."""
    name, flags, mhz = platform.processor() or "cpu", set(), 0.0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and name in ("cpu", platform.processor()):
                name = value.strip()
            elif key == "flags" and not flags:
                flags = set(value.split())
            elif key == "cpu MHz" and not mhz:
                mhz = float(value)
    except OSError:
        pass
    try:
        mhz = int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text()) / 1000
    except (OSError, ValueError):
        pass
    return name, flags, mhz


def cpu_peaks(torch) -> tuple[dict[str, float], str]:
    """Peaks of this CPU over all its cores (``sms`` = cores) and a line saying where they come from.
    ``hbm_tbps`` is filled in by the runner from a measured streaming copy (a VM exposes no memory spec)."""
    name, flags, mhz = cpu_model()
    threads = os.cpu_count() or torch.get_num_threads()
    bf16 = next((v for f, v in CPU_FLOPS_PER_CLOCK.items() if f in flags), 16)
    bf16_tflops = threads * mhz * 1e6 * bf16 / 1e12
    peaks = {"bf16_tflops": bf16_tflops, "fp8_tflops": bf16_tflops, "sms": float(threads)}
    source = (f"{threads} cores × {mhz:.0f} MHz × {bf16} BF16 FLOP/clock ({'avx512_bf16' if bf16 == 128 else 'ISA'}"
              f", two 512-bit FMA pipes assumed; clock as the OS reports it, boost may exceed it); no FP8 hardware, "
              f"so fp8 peak = bf16; memory peak = measured streaming copy")
    return peaks, source


def gpu_peaks(torch) -> tuple[dict[str, float], str]:
    """Peaks of the current CUDA device from the GPU catalogue (topologies/data/gpus.yaml) by name."""
    from moesim.topologies.gpus import catalogue_key, gpu_spec

    props = torch.cuda.get_device_properties(0)
    key = catalogue_key(props.name)
    if key is not None:
        spec = gpu_spec(key)
        fp8 = spec["fp8_tflops"] or spec["bf16_tflops"]  # no FP8 tensor cores (A100): FP8 runs no faster than BF16
        peaks = {"bf16_tflops": spec["bf16_tflops"], "fp8_tflops": fp8,
                 "hbm_tbps": spec["hbm_tbps"], "sms": float(props.multi_processor_count)}
        return peaks, f"GPU catalogue entry {key!r} (topologies/data/gpus.yaml, sources there)"
    raise ValueError(f"GPU {props.name!r} is not in topologies/data/gpus.yaml: add its peaks there to calibrate it")


def _nvidia_smi() -> dict[str, str]:
    if shutil.which("nvidia-smi") is None:
        return {}
    fields = "driver_version,clocks.max.sm,clocks.max.memory,clocks.sm"
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader", "-i", "0"],
                             capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    values = [v.strip() for v in out.split(",")]
    if len(values) != 4:
        return {}
    return dict(zip(("driver", "max_sm_clock", "max_memory_clock", "sm_clock_at_start"), values))


def provenance(torch, device: str, command: str, peaks_source: str) -> dict[str, str]:
    """Where and how a profile was measured (all values strings, for the JSON file)."""
    info = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": command, "torch": torch.__version__, "python": platform.python_version(),
            "peaks": peaks_source, "host_os": f"{platform.system()} {platform.release()}"}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update({"device_name": props.name, "sms": str(props.multi_processor_count),
                     "memory_gb": f"{props.total_memory / 1e9:.1f}", "cuda": str(torch.version.cuda),
                     "compute_capability": f"{props.major}.{props.minor}",
                     "gpus_visible": str(torch.cuda.device_count())})
        info.update(_nvidia_smi())
    else:
        name, _, mhz = cpu_model()
        info.update({"device_name": name, "threads": str(torch.get_num_threads()), "cores": str(os.cpu_count()),
                     "clock_mhz": f"{mhz:.0f}", "cuda": "none"})
    return info
