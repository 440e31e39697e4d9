"""The running operator: kopf handlers, the per-workspace sync loop, the tenant watch, leader election."""
