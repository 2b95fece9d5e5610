"""Turns an operation on a device into seconds: microbenchmarks, fitted profiles. Knows nothing of schedules."""
