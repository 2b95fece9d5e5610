"""PyTorch-profiler (Kineto) Chrome traces: import, kernel classes, per-layer phase costs."""

from moesim.workloads.traces.kineto import MAX_TRACE_BYTES, Annotation, Kernel, KinetoTrace, TraceError, load_trace

__all__ = ["MAX_TRACE_BYTES", "Annotation", "Kernel", "KinetoTrace", "TraceError", "load_trace"]
