"""Models, parallel layouts, per-layer operations, routing and traces. Knows nothing of hardware speed."""
