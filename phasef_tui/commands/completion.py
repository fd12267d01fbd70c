"""``phasef completion bash|zsh|fish``: a completion script for the shell, made from the parser itself.

Every command, sub-command and option is taken from the same argparse tree ``phasef`` parses with, so a command
added later completes without touching this file. Install: ``phasef completion bash > ~/.local/share/bash-completion/
completions/phasef``; zsh: ``phasef completion zsh > "${fpath[1]}/_phasef"``; fish: ``phasef completion fish >
~/.config/fish/completions/phasef.fish``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

SHELLS = ("bash", "zsh", "fish")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("completion", help="print a shell completion script (bash, zsh or fish)")
    p.add_argument("shell", choices=SHELLS)
    p.set_defaults(func=_completion)


@dataclass
class Node:
    """One command of the tree: its words, its options, its sub-commands (with their help)."""

    path: tuple[str, ...]
    options: list[tuple[str, str]] = field(default_factory=list)  # (option string, help)
    commands: list[tuple[str, str]] = field(default_factory=list)  # (name, help)
    choices: list[str] = field(default_factory=list)  # values of a positional argument with choices
    takes_files: bool = False


def command_tree(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[Node]:
    node = Node(path)
    out = [node]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            seen: set[int] = set()
            for name, child in action.choices.items():
                if id(child) in seen:
                    continue
                seen.add(id(child))
                node.commands.append((name, helps.get(name, "")))
                out += command_tree(child, (*path, name))
        elif action.help == argparse.SUPPRESS:
            continue
        elif action.option_strings:
            for option in action.option_strings:
                node.options.append((option, action.help or ""))
        elif action.choices:
            node.choices += [str(c) for c in action.choices]
        else:
            node.takes_files = True
    return out


def _words(items: list[tuple[str, str]]) -> str:
    return " ".join(name for name, _ in items)


def bash_script(nodes: list[Node]) -> str:
    cases = []
    for node in nodes:
        words = " ".join(filter(None, [_words(node.commands), " ".join(node.choices), _words(node.options)]))
        files = "1" if node.takes_files else "0"
        cases.append(f'        "{" ".join(node.path)}") words="{words}"; files={files} ;;')
    body = "\n".join(cases)
    return f"""# bash completion for phasef (made by `phasef completion bash`)
_phasef() {{
    local cur cmdpath word i words files
    cur="${{COMP_WORDS[COMP_CWORD]}}"
{_walk_command_path(nodes, "1", "COMP_CWORD", "COMP_WORDS")}
{body}
        *) words=""; files=1 ;;
    esac
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
    if [[ $files == 1 && "$cur" != -* ]]; then
        COMPREPLY+=($(compgen -f -- "$cur"))
    fi
}}
complete -o filenames -F _phasef phasef
"""


def _walk_command_path(nodes: list[Node], first: str, end: str, words: str) -> str:
    """Shell lines (bash and zsh alike) that walk the words typed so far into ``cmdpath``, the sub-command path,
    and open the ``case`` on it."""
    return f"""    cmdpath=""
    for ((i = {first}; i < {end}; i++)); do
        word="${{{words}[i]}}"
        [[ "$word" == -* ]] && continue
        case "$cmdpath" in
{_bash_known(nodes)}
        esac
    done
    case "$cmdpath" in"""


def _bash_known(nodes: list[Node]) -> str:
    """Move ``path`` one word down when the word is a sub-command of the current one."""
    lines = []
    for node in nodes:
        if node.commands:
            names = "|".join(name for name, _ in node.commands)
            here = " ".join(node.path)
            nxt = f"{here} $word" if here else "$word"
            lines.append(f'            "{here}") case "$word" in {names}) cmdpath="{nxt}" ;; esac ;;')
    return "\n".join(lines)


def zsh_script(nodes: list[Node]) -> str:
    """zsh: the same tree through zsh's own ``compadd`` with descriptions."""
    cases = []
    for node in nodes:
        pairs = node.commands + [(c, "") for c in node.choices] + node.options
        described = [f"{_zsh_quote(name)}:{_zsh_quote(h)}" if h else _zsh_quote(name) for name, h in pairs]
        items = " ".join(f"'{d}'" for d in described)
        files = "1" if node.takes_files else "0"
        cases.append(f'        "{" ".join(node.path)}") items=({items}); files={files} ;;')
    return f"""#compdef phasef
# zsh completion for phasef (made by `phasef completion zsh`)
_phasef() {{
    local cmdpath word i files
    local -a items
{_walk_command_path(nodes, "2", "CURRENT", "words")}
{chr(10).join(cases)}
        *) items=(); files=1 ;;
    esac
    _describe -t commands 'phasef' items
    [[ $files == 1 ]] && _files
    return 0
}}
if [[ "$funcstack[1]" == "_phasef" ]]; then _phasef "$@"; else compdef _phasef phasef; fi
"""


def _zsh_quote(text: str) -> str:
    return text.replace("'", "").replace(":", "\\:").replace("\n", " ")[:70]


def fish_script(nodes: list[Node]) -> str:
    lines = ["# fish completion for phasef (made by `phasef completion fish`)", "complete -c phasef -f"]
    for node in nodes:
        if not node.path:
            cond = "__fish_use_subcommand"
        else:
            seen = " && ".join(f"__fish_seen_subcommand_from {w}" for w in node.path)
            cond = seen
            siblings = _words(node.commands)
            if siblings:
                cond += f" && not __fish_seen_subcommand_from {siblings}"
        for name, help_text in node.commands:
            lines.append(f"complete -c phasef -n '{cond}' -a {name} -d {_fish_quote(help_text)}")
        for choice in node.choices:
            lines.append(f"complete -c phasef -n '{cond}' -a {choice}")
        for option, help_text in node.options:
            flag = f"-l {option[2:]}" if option.startswith("--") else f"-s {option[1:]}"
            lines.append(f"complete -c phasef -n '{cond}' {flag} -d {_fish_quote(help_text)}")
        if node.takes_files and node.path:
            lines.append(f"complete -c phasef -n '{cond}' -F")
    return "\n".join(lines) + "\n"


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", " ")[:80] + "'"


def script_for(shell: str) -> str:
    from phasef_tui.cli import build_parser

    nodes = command_tree(build_parser())
    return {"bash": bash_script, "zsh": zsh_script, "fish": fish_script}[shell](nodes)


def _completion(args: argparse.Namespace) -> int:
    sys.stdout.write(script_for(args.shell))
    return 0
