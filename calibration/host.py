"""The host side of a training step: CPU time to launch each kernel and to synchronise with the GPU.

A framework's host thread issues kernels in program order. Each kernel costs the thread some CPU time before the
next one can be issued (the framework's op dispatch plus ``cudaLaunchKernel``), and a host synchronisation (a
device-to-host copy of token counts, an ``.item()``) blocks the thread until the GPU has drained to that point,
then costs the thread the sync's own return time. A profile measures these in a profiler trace (CPU ops, CUDA
runtime calls and the flow events linking them to kernels: ``moesim calibrate from-trace``) and keeps them as
:class:`HostCosts`; :class:`HostModel` prices an op's host side from the first profile that has them.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

DEFAULT = "default"  # the launch cost of an op class the trace did not show


class HostCosts(BaseModel):
    """Host (CPU) costs measured in a trace, in µs of the launching thread's time.

    ``launch_us`` maps an op class (``moesim.workloads.ops.OpClass`` value, e.g. ``gemm.fprop``) to the host time one
    kernel of that class takes to issue, and must hold ``default`` for the classes the trace did not show.
    ``sync_us`` is the host time of one synchronisation once the GPU has reached it (the copy and the return).
    """

    model_config = ConfigDict(extra="forbid")

    launch_us: dict[str, float]
    sync_us: float = Field(ge=0)
    source: str = Field(min_length=1)


@dataclass(frozen=True)
class HostModel:
    """Seconds of host time per kernel launch and per synchronisation; all zero when no profile measured them."""

    launch_s: dict[str, float]
    sync_s: float
    source: str

    @classmethod
    def from_profiles(cls, profiles) -> "HostModel":
        """From the first of ``profiles`` (:class:`moesim.calibration.profile.Profile`) that carries host costs."""
        host = next((p.host for p in profiles if getattr(p, "host", None) is not None), None)
        if host is None:
            return cls({}, 0.0, "")
        return cls({k: v * 1e-6 for k, v in host.launch_us.items()}, host.sync_us * 1e-6, host.source)

    def op_launch_s(self, op) -> float:
        """Host seconds to issue ``op``'s kernel (a :class:`moesim.workloads.ops.Op`)."""
        return self.launch_s.get(op.op_class.value, self.launch_s.get(DEFAULT, 0.0))
