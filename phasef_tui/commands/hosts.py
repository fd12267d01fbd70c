"""``phasef hosts check [NAME] [--json] [--ring]``: connect to each ``[hosts.NAME]`` and say what it offers, and
whether the hosts a step spreads its ranks over reach each other as MLX's ring needs."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from phasef_tui.commands._common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, add_config_arg


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("hosts", help="the remote hosts of the plan ([hosts.NAME])")
    hsub = p.add_subparsers(dest="hosts_command", metavar="ACTION", required=True)
    check = hsub.add_parser(
        "check", help="connect to each host: platform, CPU, free disk, python and mlx/mlx_lm versions"
    )
    check.add_argument("name", nargs="?", default=None, help="only this host")
    check.add_argument("--json", action="store_true", help="one JSON document")
    check.add_argument(
        "--ring", action="store_true", help="check every pair of hosts for the ring, not only those a step uses"
    )
    add_config_arg(check)
    check.set_defaults(func=_check)


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    return f"{n / (1 << 30):.1f} GiB"


def _print(report: dict[str, Any]) -> None:
    mark = "ok" if report["usable"] else "UNUSABLE"
    print(f"{report['name']} ({report['address']}): {mark}")
    if "platform" in report:
        chip = "Apple Silicon" if report.get("apple_silicon") else "not Apple Silicon"
        print(f"  platform  {report['platform']} ({report['machine']})")
        print(f"  cpu       {report.get('cpu') or '?'} ({report.get('cpus')} cores, {chip})")
        print(f"  workdir   {report.get('workdir')} ({_size(report.get('free_disk_bytes'))} free)")
        print(f"  python    {report.get('python')} ({report.get('executable')})")
        print(f"  mlx       {report.get('mlx') or 'not installed'}")
        print(f"  mlx_lm    {report.get('mlx_lm') or 'not installed'}")
        for note in report.get("notes", []):
            print(f"  note: {note}")
    if report.get("error"):
        print(f"  error: {report['error']}")


def _check(args: argparse.Namespace) -> int:
    import asyncio

    from phasef_tui.commands._common import load
    from pipeline.hosts import check_hosts, check_ring, ring_pairs

    loaded = load(args)
    if loaded is None:
        return EXIT_USAGE
    cfg, path = loaded
    hosts = dict(cfg.hosts)
    if args.name is not None:
        if args.name not in hosts:
            print(f"error: {path}: no [hosts.{args.name}]; declared: {', '.join(hosts) or 'none'}", file=sys.stderr)
            return EXIT_USAGE
        hosts = {args.name: hosts[args.name]}
    if not hosts:
        print(f"{path}: no [hosts.NAME] declared", file=sys.stderr)
        return EXIT_OK
    pairs = [p for p in ring_pairs(cfg, every=args.ring) if p[0] in hosts and p[1] in hosts]

    async def both() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return await asyncio.gather(check_hosts(hosts), check_ring(hosts, pairs))

    reports, ring = asyncio.run(both())
    usable = all(r["usable"] for r in reports) and all(p["ok"] for p in ring)
    if args.json:
        print(json.dumps({"hosts": reports, "ring": ring, "usable": usable}, indent=2))
    else:
        for report in reports:
            _print(report)
        for pair in ring:
            where = f"{pair['address']}:{pair.get('port', '?')}"
            said = "ok" if pair["ok"] else f"FAILED: {pair['error']}"
            print(f"ring: {pair['dialer']} -> {pair['listener']} ({where}): {said}")
    return EXIT_OK if usable else EXIT_FAILED
