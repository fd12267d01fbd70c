"""``phasef config check|show``."""

from __future__ import annotations

import argparse
import sys

from phasef_tui.commands._common import EXIT_OK, EXIT_USAGE, add_config_arg, config_path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("config", help="check or show the plan in config.toml")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = csub.add_parser("check", help="validate a config; print every problem as file:line: key: message")
    check.add_argument("file", nargs="?", default=None)
    check.set_defaults(func=_check)
    show = csub.add_parser("show", help="print the resolved config (TOML) and the step order")
    add_config_arg(show)
    show.set_defaults(func=_show)


def _check(args: argparse.Namespace) -> int:
    from pipeline.config import ConfigError, load_config

    path = args.file or str(config_path(args))
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        for issue in exc.issues:
            print(f"error: {issue}", file=sys.stderr)
        return EXIT_USAGE
    steps = sum(len(s.steps) for s in cfg.stages.values())
    print(f"{path}: ok ({len(cfg.stages)} stages, {steps} steps)")
    return EXIT_OK


def _show(args: argparse.Namespace) -> int:
    import tomli_w

    from phasef_tui.commands._common import load
    from pipeline.config import dump_config

    loaded = load(args)
    if loaded is None:
        return EXIT_USAGE
    cfg, _path = loaded
    sys.stdout.write(tomli_w.dumps(dump_config(cfg)))
    deps = cfg.dependencies()
    print("\n# resolved dependencies")
    for key, needs in deps.items():
        print(f"# {key} <- {', '.join(needs) or '(none)'}")
    return EXIT_OK
