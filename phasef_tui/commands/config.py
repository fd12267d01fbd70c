"""``phasef config check|show``: both name the config file the same way (``-c/--config FILE``)."""

from __future__ import annotations

import argparse
import json
import sys

from phasef_tui.commands._common import EXIT_OK, EXIT_USAGE, add_config_arg, add_json_arg, config_path, say


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("config", help="check or show the plan in config.toml")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = csub.add_parser("check", help="validate a config; print every problem as file:line: key: message")
    add_config_arg(check)
    # the older spelling, `config check FILE`, is still read (not shown in help)
    check.add_argument("file", nargs="?", default=None, help=argparse.SUPPRESS)
    add_json_arg(check, "the outcome")
    check.set_defaults(func=_check)
    show = csub.add_parser("show", help="print the resolved config (TOML) and the step order")
    add_config_arg(show)
    add_json_arg(show, "the resolved plan and its dependencies")
    show.set_defaults(func=_show)


def _check(args: argparse.Namespace) -> int:
    from pipeline.config import ConfigError, load_config

    if args.file and args.config and args.file != args.config:
        print(f"error: two config files named: --config {args.config} and {args.file}", file=sys.stderr)
        return EXIT_USAGE
    if args.file:
        args.config = args.file
    path = config_path(args)
    problems: list[object] = []
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        problems += exc.issues
    if not problems or path.is_file():
        from phasef_tui.keys import unknown_binding_ids  # the binding ids live with the viewer

        problems += unknown_binding_ids(path)
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    steps = sum(len(s.steps) for s in cfg.stages.values())
    if args.json:
        print(json.dumps({"ok": True, "config": str(path), "stages": len(cfg.stages), "steps": steps}))
        return EXIT_OK
    say(args, f"{path}: ok ({len(cfg.stages)} stages, {steps} steps)")
    if args.verbose:
        for stage_id, stage in cfg.stages.items():
            say(args, f"  {stage_id}: {', '.join(stage.steps) or '(no steps)'}")
    return EXIT_OK


def _show(args: argparse.Namespace) -> int:
    import tomli_w

    from phasef_tui.commands._common import load
    from pipeline.config import dump_config

    loaded = load(args)
    if loaded is None:
        return EXIT_USAGE
    cfg, path = loaded
    deps = cfg.dependencies()
    if args.json:
        doc = {"config": str(path), "plan": dump_config(cfg), "dependencies": deps}
        print(json.dumps(doc, indent=2, default=str))
        return EXIT_OK
    sys.stdout.write(tomli_w.dumps(dump_config(cfg)))
    print("\n# resolved dependencies")
    for key, needs in deps.items():
        print(f"# {key} <- {', '.join(needs) or '(none)'}")
    return EXIT_OK
