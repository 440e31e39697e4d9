"""The pure core: the operator's data and decisions. Nothing here does I/O or imports outside the core."""
