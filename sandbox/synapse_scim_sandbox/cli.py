"""`synapse-scim sandbox --seed org.yaml`: run the Azure sandbox until Ctrl-C / SIGTERM.

Prints the endpoints, the CA path and the credentials (as text, or one JSON object with `--json`),
and can write them as an env file (`--env-file sandbox.env`, KEY=VALUE lines usable with
`set -a; . sandbox.env` or `docker --env-file`). The last line printed is `sandbox ready` (or the JSON
object), after which the listeners accept requests.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import signal
import sys
from pathlib import Path

from .faults import SERVICES
from .seed import SeedError
from .server import Sandbox


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="synapse-scim sandbox",
        description="Run local emulators of the Entra token endpoint, Microsoft Graph and Synapse access control.",
    )
    p.add_argument("--seed", required=True, help="seed YAML file (see synapse_scim_sandbox.seed)")
    p.add_argument(
        "--cert-dir",
        type=Path,
        help="directory for ca.pem, server and client certificates (default: a temporary directory removed on exit)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--ports", help="fixed ports, e.g. login=8443,graph=9443,synapse=10443 (default: free ports)")
    for service in SERVICES:
        p.add_argument(
            f"--latency-{service}",
            type=float,
            default=0.0,
            metavar="MS",
            help=f"added latency per {service} request, in milliseconds",
        )
    p.add_argument("--page-size", type=int, default=100, help="Synapse role assignments per list page")
    p.add_argument("--graph-page-size", type=int, default=100, help="Graph default page size")
    p.add_argument("--token-lifetime", type=float, default=3600.0, help="access token lifetime in seconds")
    p.add_argument("--json", action="store_true", help="print the endpoints as one JSON object")
    p.add_argument("--env-file", type=Path, help="also write KEY=VALUE environment settings to this file")
    p.add_argument(
        "--client", help="app registration (name or client id) whose credentials go into the env (default: the first)"
    )
    return p


def parse_ports(text: str | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, _, port = part.partition("=")
        if name.strip() not in SERVICES or not port.strip().isdigit():
            raise ValueError(f"--ports: expected service=port with service in {', '.join(SERVICES)}, got {part!r}")
        out[name.strip()] = int(port)
    return out


def describe(sb: Sandbox) -> str:
    lines = [
        "synapse-scim sandbox",
        f"  tenant id        {sb.tenant_id} ({sb.state.tenant_domain})",
        f"  authority host   {sb.authority_host}",
        f"  graph            {sb.graph_url}",
    ]
    lines += [f"  workspace        {name}: {sb.workspace_endpoint(name)}" for name in sb.state.workspaces]
    lines += [f"  admin api        {sb.admin_url}", f"  CA certificate   {sb.ca_path}", "  clients:"]
    for app in sb.clients.values():
        creds = [f"secret={app.secret}"] if app.secret else []
        creds += [f"certificate={app.certificate_path}"] if app.certificate_path else []
        creds += [f"federated-token-file={app.federated_token_file}"] if app.federated_token_file else []
        lines.append(f"    {app.name}: client id {app.client_id} (object id {app.object_id}) {' '.join(creds)}")
    counts = sb.state.summary()
    lines.append(
        f"  directory        {counts['users']} users, {counts['groups']} groups, "
        f"{counts['service_principals']} service principals"
    )
    lines.append("  stop with Ctrl-C")
    return "\n".join(lines)


async def serve(args: argparse.Namespace) -> int:
    latency = {s: getattr(args, f"latency_{s}") / 1000.0 for s in SERVICES}
    sandbox = Sandbox(
        args.seed,
        cert_dir=args.cert_dir,
        latency=latency,
        token_lifetime=args.token_lifetime,
        page_size=args.page_size,
        graph_page_size=args.graph_page_size,
        host=args.host,
        ports=parse_ports(args.ports),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    gc.collect()
    gc.freeze()  # the seeded organisation lives as long as the process: keep it out of GC scans
    async with sandbox:
        env = sandbox.env(args.client)
        if args.env_file:
            args.env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()), encoding="utf-8")
        if args.json:
            print(json.dumps(sandbox.info() | {"env": env}), flush=True)
        else:
            print(describe(sandbox), flush=True)
            if args.env_file:
                print(f"  env file         {args.env_file}", flush=True)
            print("sandbox ready", flush=True)
        await stop.wait()
    print("sandbox stopped", file=sys.stderr, flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "sandbox":
        argv = argv[1:]
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(serve(args))
    except SeedError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
