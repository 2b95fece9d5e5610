"""Microbenchmarks of the kernels DeepSeek-V3 training runs, in torch (imported lazily by each benchmark)."""
