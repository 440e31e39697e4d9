"""`synapse-scim run`: the operator process."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

_RESERVED = set(vars(logging.makeLogRecord({})))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: what log pipelines (Azure Monitor, Loki, ...) ingest as-is."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update({k: v for k, v in vars(record).items() if k not in _RESERVED and not k.startswith("_")})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(fmt: str, verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # Azure SDKs log every HTTP request at INFO (headers redacted, still noisy).
    for noisy in ("azure", "httpx", "msal", "kubernetes", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="synapse-scim run", description="Run the operator.")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        help="watch only this namespace (repeatable); default: all namespaces",
    )
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace (default)")
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        default=os.environ.get("SYNAPSE_SCIM_LOG_FORMAT", "text"),
        help="text (default) or json: one object per line (env SYNAPSE_SCIM_LOG_FORMAT)",
    )
    parser.add_argument("--verbose", "-v", action="store_true")
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="port of the Prometheus /metrics endpoint (default 9090, 0 disables; env SYNAPSE_SCIM_METRICS_PORT)",
    )
    parser.add_argument(
        "--scim-port",
        type=int,
        default=None,
        help="port of the SCIM 2.0 endpoint, served on every replica (default 0: off; env SYNAPSE_SCIM_SCIM_PORT)",
    )
    parser.add_argument(
        "--liveness", default="http://0.0.0.0:8080/healthz", help="kopf liveness endpoint (empty to disable)"
    )
    args = parser.parse_args(argv)
    configure_logging(args.log_format, args.verbose)
    if args.namespace:
        os.environ["SYNAPSE_SCIM_WATCH_NAMESPACES"] = ",".join(args.namespace)
    if args.metrics_port is not None:
        os.environ["SYNAPSE_SCIM_METRICS_PORT"] = str(args.metrics_port)
    if args.scim_port is not None:
        os.environ["SYNAPSE_SCIM_SCIM_PORT"] = str(args.scim_port)

    # Before kopf: without a configuration kopf would retry its startup every minute, for ever.
    from synapse_scim.adapters.kube import KubeConfigMissing, check_config

    try:
        check_config()
    except KubeConfigMissing as exc:
        logging.getLogger("synapse_scim.run").error("%s", exc)
        return 1

    from synapse_scim.controller import handlers, runtime  # noqa: F401  (registers the handlers)
    from synapse_scim.controller.election import election_enabled
    from synapse_scim.metrics import LEADER

    try:
        if election_enabled():
            from synapse_scim.controller.election import run_elected

            return run_elected(args.namespace, args.liveness or None)
        LEADER.set(1)  # alone: this process acts
        return runtime.run(args.namespace, args.liveness or None)
    finally:
        runtime.ignore_stop_signals()
