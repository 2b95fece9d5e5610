"""Graphs of the machine: GPUs, NVLink islands, NICs, switches and links. Knows nothing of time or models."""
