"""config.toml as strict pydantic models, with errors that name the file, the line and the key.

The plan is a set of stages (``[stages.<id>]``) that need each other, each holding steps
(``[stages.<id>.steps.<step>]``). A step's dependencies are the steps of every stage its stage needs, the steps it
names in ``needs`` (``other`` in the same stage or ``STAGE.other``), and, in a ``sequential`` stage, the step before
it. Kind-specific settings live in the step's ``params`` table and are validated by the kind's own model.
"""

from __future__ import annotations

import copy
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NamedTuple

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from pipeline.audit.params import AnyAuditor
from pipeline.fsio import FileTooLarge, NotARegularFile, read_text_bounded
from pipeline.layout import output_problem
from pipeline.problems import Problem
from pipeline.registry import BUILTIN_FUNCTIONS, BUILTIN_PARAMS, SERVICE_KINDS, STEP_KINDS, load_object

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
DEFAULT_ENV_ALLOW = ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ProjectConfig(Strict):
    name: str = "phasef"
    sessions_dir: str = "sessions"
    final_gate: str | None = Field(
        default=None,
        description="STAGE.step of the gate whose decision is the run's GO/NO-GO (default: last gate)",
    )
    step_functions: list[str] = Field(
        default_factory=list,
        description="the project's own step functions ('module:callable') that builtin steps may name",
    )
    final_override: bool = Field(
        default=True,
        description="may an operator sign GO at the final gate over an unmet pass criterion (the run then ends "
        "GO-OVERRIDE); false refuses such a GO",
    )


class EnvConfig(Strict):
    allow: list[str] = Field(default_factory=lambda: list(DEFAULT_ENV_ALLOW))


class ServiceConfig(Strict):
    kind: str
    title: str | None = None
    pool: str | None = None
    start_timeout: float = Field(default=120.0, gt=0)
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, v: str) -> str:
        if v not in SERVICE_KINDS:
            raise ValueError(f"unknown service kind {v!r}; known: {', '.join(sorted(SERVICE_KINDS))}")
        return v


class HostConfig(Strict):
    """A machine that runs steps over SSH (``[hosts.NAME]``); see docs/remote.md."""

    address: str
    port: int = Field(default=22, ge=1, le=65535)
    user: str | None = None
    identity: str | None = Field(default=None, description="private key file; default: the SSH agent and ~/.ssh")
    known_hosts: str = Field(default="~/.ssh/known_hosts", description="strict host key checking against this file")
    workdir: str = Field(default="~/phasef-work", description="where sessions' remote folders live")
    python: str = Field(default="python3", description="used for python steps and training on that host")
    connect_timeout: float = Field(default=15.0, gt=0)
    connect_retries: int = Field(default=3, ge=0, le=100, description="attempts after the first, with backoff")
    reconnect_s: float = Field(default=300.0, ge=0, description="how long a running step may stay unreachable")


class StepConfig(Strict):
    kind: str
    title: str | None = None
    needs: list[str] = Field(default_factory=list)
    command: str | None = None
    cwd: str | None = None
    function: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    inputs: list[str] = Field(default_factory=list)
    outputs: list[str] = Field(default_factory=list)
    timeout: float | None = Field(default=None, gt=0, description="seconds; for a gate, how long to wait")
    retries: int = Field(default=0, ge=0, le=100)
    backoff: float = Field(default=1.0, ge=0, description="first retry delay in seconds, doubled each retry")
    backoff_max: float = Field(default=60.0, ge=0)
    jitter: float = Field(default=0.1, ge=0, le=1, description="random extra delay, as a fraction")
    env: list[str] = Field(default_factory=list, description="extra environment variables passed through")
    pool: str = "default"
    services: list[str] = Field(default_factory=list)
    cache: bool = Field(default=True, description="skip when fingerprint and output hashes are unchanged")
    host: str | None = Field(default=None, description="a [hosts.NAME] to run the step on, over SSH")
    ranks: int = Field(default=1, ge=1, le=64, description="data-parallel ranks over MLX's ring backend")
    hosts: list[str] = Field(default_factory=list, description="hosts the ranks (or shards) are spread over, in turn")
    shards: int = Field(default=1, ge=1, le=256, description="api steps: episodes split over this many instances")
    # gate only
    evidence: list[str] = Field(default_factory=list)
    prompt: str | None = None
    audit: str | None = Field(default=None, description="STAGE.step of the audit whose verdict binds this gate")

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, v: str) -> str:
        if v not in STEP_KINDS:
            raise ValueError(f"unknown step kind {v!r}; known: {', '.join(sorted(STEP_KINDS))}")
        return v

    @field_validator("outputs")
    @classmethod
    def _outputs_inside(cls, v: list[str]) -> list[str]:
        problems = [p for p in map(output_problem, v) if p]
        if problems:
            raise ValueError("; ".join(problems))
        return v

    @model_validator(mode="after")
    def _kind_fields(self) -> StepConfig:
        if self.kind == "shell" and not self.command:
            raise ValueError("a shell step needs 'command'")
        if self.kind == "builtin" and not self.function:
            raise ValueError("a builtin step needs 'function' (module:callable)")
        if self.kind != "shell" and self.command:
            raise ValueError(f"'command' is only for shell steps, not {self.kind}")
        if self.kind != "builtin" and self.function:
            raise ValueError(f"'function' is only for builtin steps, not {self.kind}")
        if self.kind != "gate" and (self.evidence or self.prompt or self.audit):
            raise ValueError("'evidence', 'prompt' and 'audit' are only for gate steps")
        return self


class StageConfig(Strict):
    title: str
    needs: list[str] = Field(default_factory=list)
    sequential: bool = False
    steps: dict[str, StepConfig] = Field(default_factory=dict)


def _key_string(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or any(not k.strip() for k in value.split(",")):
        raise ValueError(f'expected a key such as "ctrl+f" or "F", got {value!r}')
    return ",".join(k.strip() for k in value.split(","))


KeyString = Annotated[str, BeforeValidator(_key_string)]
"""A key (or keys, comma-separated) as Textual names them: ``ctrl+f``, ``F``, ``right,l``."""


class TuiConfig(Strict):
    """``[tui]``: the viewer's look and keys (the viewer also reads this section alone, see ``read_section``)."""

    theme: str | None = Field(default=None, description="a Textual theme name, e.g. textual-light")
    keys: dict[str, KeyString] = Field(
        default_factory=dict, description="binding id -> key(s); the ids are on the help screen ('?')"
    )

    @field_validator("theme", mode="before")
    @classmethod
    def _theme_name(cls, v: Any) -> Any:
        if v is not None and (not isinstance(v, str) or not v.strip()):
            raise ValueError("must be the name of a theme (a string)")
        return v.strip() if isinstance(v, str) else v


class ModelConfig(Strict):
    """``[models.NAME]``: a model the project names, for people and reports to refer to."""

    path: str = Field(description="a local model folder or a hub id")
    title: str | None = None


class PhasefConfig(Strict):
    """The whole config.toml."""

    project: ProjectConfig = Field(default_factory=ProjectConfig)
    env: EnvConfig = Field(default_factory=EnvConfig)
    pools: dict[str, int] = Field(default_factory=lambda: {"default": 2})
    services: dict[str, ServiceConfig] = Field(default_factory=dict)
    hosts: dict[str, HostConfig] = Field(default_factory=dict)
    auditors: dict[str, AnyAuditor] = Field(default_factory=dict)
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    tui: TuiConfig = Field(default_factory=TuiConfig)
    stages: dict[str, StageConfig]

    # -- derived views --------------------------------------------------------------------------------------
    def iter_steps(self) -> Iterator[tuple[str, str, StepConfig]]:
        for stage_id, stage in self.stages.items():
            for step_id, step in stage.steps.items():
                yield stage_id, step_id, step

    def step(self, key: str) -> StepConfig:
        stage_id, _, step_id = key.partition(".")
        return self.stages[stage_id].steps[step_id]

    def step_keys(self) -> list[str]:
        return [f"{s}.{t}" for s, t, _ in self.iter_steps()]

    def dependencies(self) -> dict[str, list[str]]:
        """``STAGE.step`` -> the steps it waits for (resolved, deduplicated, in config order)."""
        deps: dict[str, list[str]] = {}
        for stage_id, stage in self.stages.items():
            before: list[str] = []
            for need in stage.needs:
                before.extend(f"{need}.{s}" for s in self.stages[need].steps)
            previous: str | None = None
            for step_id, step in stage.steps.items():
                key = f"{stage_id}.{step_id}"
                mine = list(before)
                mine.extend(n if "." in n else f"{stage_id}.{n}" for n in step.needs)
                if stage.sequential and previous:
                    mine.append(previous)
                deps[key] = list(dict.fromkeys(mine))
                previous = key
        return deps

    def final_gate_key(self) -> str | None:
        if self.project.final_gate:
            return self.project.final_gate
        gates = [f"{s}.{t}" for s, t, c in self.iter_steps() if c.kind == "gate"]
        return gates[-1] if gates else None


# -- errors with file:line:key ------------------------------------------------------------------------------


class ConfigError(Exception):
    def __init__(self, issues: list[Problem]):
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*((?:\"[^\"]*\"|'[^']*'|[A-Za-z0-9_-]+)(?:\s*\.\s*(?:\"[^\"]*\"|'[^']*'|[A-Za-z0-9_-]+))*)\s*=")


def _split_dotted(text: str) -> list[str]:
    parts = re.findall(r"\"[^\"]*\"|'[^']*'|[A-Za-z0-9_-]+", text)
    return [p[1:-1] if p[:1] in "\"'" else p for p in parts]


def key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Map every table header and ``key =`` line to its 1-based line number (first occurrence wins).

    tomllib gives no positions, so this is a light scanner of the same text: good enough to point a user at the
    right line, not a TOML parser (multi-line strings are skipped over roughly).
    """
    lines: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    in_multiline: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if in_multiline:
            if in_multiline in line:
                in_multiline = None
            continue
        header = _HEADER.match(line)
        if header and not _KEY.match(line):
            table = tuple(_split_dotted(header.group(2)))
            lines.setdefault(table, number)
            continue
        key = _KEY.match(line)
        if key:
            path = table + tuple(_split_dotted(key.group(1)))
            lines.setdefault(path, number)
            rest = line[key.end() :]
            for quote in ('"""', "'''"):
                if rest.count(quote) == 1:
                    in_multiline = quote
    return lines


def _line_for(lines: dict[tuple[str, ...], int], loc: tuple[str | int, ...]) -> int | None:
    path = tuple(str(p) for p in loc)
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return None


def _validation_issues(
    exc: ValidationError, file: str, lines: dict[tuple[str, ...], int], prefix: tuple[str, ...] = ()
) -> list[Problem]:
    issues = []
    for err in exc.errors():
        loc = prefix + tuple(str(p) for p in err["loc"] if not str(p).startswith("function-"))
        if len(loc) > 2 and loc[0] == "auditors" and loc[2] in ("cli", "api"):  # the union's tag, not a key
            loc = loc[:2] + loc[3:]
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        issues.append(Problem(file, _line_for(lines, loc), msg, ".".join(loc)))
    return issues


def _check_references(cfg: PhasefConfig, file: str, lines: dict[tuple[str, ...], int]) -> list[Problem]:
    issues: list[Problem] = []

    def issue(loc: tuple[str, ...], msg: str) -> None:
        issues.append(Problem(file, _line_for(lines, loc), msg, ".".join(loc)))

    for stage_id, stage in cfg.stages.items():
        if not re.match(ID_PATTERN, stage_id) or "." in stage_id:
            issue(("stages", stage_id), "stage ids may use letters, digits, '_' and '-' only")
        for need in stage.needs:
            if need not in cfg.stages:
                issue(("stages", stage_id, "needs"), f"needs missing stage {need!r}")
        for step_id, step in stage.steps.items():
            loc = ("stages", stage_id, "steps", step_id)
            if "." in step_id or not re.match(ID_PATTERN, step_id):
                issue(loc, "step ids may use letters, digits, '_' and '-' only")
            for need in step.needs:
                target = need if "." in need else f"{stage_id}.{need}"
                s, _, t = target.partition(".")
                if s not in cfg.stages or t not in cfg.stages[s].steps:
                    issue((*loc, "needs"), f"needs missing step {need!r}")
            if step.pool not in cfg.pools:
                issue((*loc, "pool"), f"unknown pool {step.pool!r}; declared: {', '.join(cfg.pools)}")
            for svc in step.services:
                if svc not in cfg.services:
                    issue((*loc, "services"), f"unknown service {svc!r}")
            if step.host is not None and step.host not in cfg.hosts:
                declared = ", ".join(cfg.hosts) or "none"
                issue((*loc, "host"), f"unknown host {step.host!r}; declared: {declared}")
            for name in step.hosts:
                if name not in cfg.hosts:
                    declared = ", ".join(cfg.hosts) or "none"
                    issue((*loc, "hosts"), f"unknown host {name!r}; declared: {declared}")
            if step.shards > 1 and (step.kind != "api" or step.ranks > 1):
                issue((*loc, "shards"), f"shards split the episodes of an api step (ranks = 1), not {step.kind}")
            if (step.ranks > 1 or step.hosts) and step.kind not in ("mlx_train", "builtin") and step.shards == 1:
                issue((*loc, "ranks"), f"data-parallel ranks are for mlx_train (and builtin) steps, not {step.kind}")
            batch = step.params.get("batch_size")
            if batch is None and step.ranks > 1 and step.kind == "mlx_train" and "lora_config" not in step.params:
                batch = load_object("pipeline.train.params:TrainParams").model_fields["batch_size"].default
            if step.ranks > 1 and step.kind == "mlx_train" and isinstance(batch, int) and batch % step.ranks:
                issue((*loc, "params", "batch_size"), f"batch_size {batch} is not divisible by ranks = {step.ranks}")
            if step.host is not None and step.kind == "gate":
                issue((*loc, "host"), "a gate runs on the supervisor, not on a host")
            if step.audit:
                s, _, t = step.audit.partition(".")
                if s not in cfg.stages or t not in cfg.stages[s].steps:
                    issue((*loc, "audit"), f"audit names missing step {step.audit!r}")
    if cfg.project.final_gate:
        s, _, t = cfg.project.final_gate.partition(".")
        if s not in cfg.stages or t not in cfg.stages[s].steps or cfg.stages[s].steps[t].kind != "gate":
            issue(("project", "final_gate"), f"{cfg.project.final_gate!r} is not a gate step")
    for name, size in cfg.pools.items():
        if size < 1:
            issue(("pools", name), "a pool needs at least 1 slot")
    if not issues:
        cycle = find_cycle(cfg.dependencies())
        if cycle:
            s, _, t = cycle[0].partition(".")
            issue(("stages", s, "steps", t, "needs"), "dependency cycle: " + " -> ".join(cycle))
    return issues


def _check_params(cfg: PhasefConfig, file: str, lines: dict[tuple[str, ...], int]) -> list[Problem]:
    issues: list[Problem] = []
    for stage_id, step_id, step in cfg.iter_steps():
        spec = STEP_KINDS[step.kind]
        loc = ("stages", stage_id, "steps", step_id, "params")
        model_path = spec.params_model
        if step.kind == "builtin" and step.function:
            floc = ("stages", stage_id, "steps", step_id, "function")
            if step.function not in BUILTIN_FUNCTIONS and step.function not in cfg.project.step_functions:
                message = (
                    f"{step.function!r} is not a registered step function; use one of phasef's "
                    f"({', '.join(sorted(BUILTIN_FUNCTIONS))}) or declare the project's own in "
                    "[project] step_functions"
                )
                issues.append(Problem(file, _line_for(lines, floc), message, ".".join(floc)))
                continue
            if step.function in BUILTIN_FUNCTIONS:  # declared ones are loaded (and reported) once, below
                try:
                    load_object(step.function)
                except (ImportError, ValueError) as exc:
                    issues.append(Problem(file, _line_for(lines, floc), f"cannot load: {exc}", ".".join(floc)))
                    continue
            model_path = BUILTIN_PARAMS.get(step.function)
        if model_path is None:
            continue
        try:
            model = load_object(model_path)
        except (ImportError, ValueError) as exc:
            issues.append(Problem(file, _line_for(lines, loc), f"kind unavailable: {exc}", ".".join(loc)))
            continue
        try:
            model.model_validate(step.params)
        except ValidationError as exc:
            issues.extend(_validation_issues(exc, file, lines, loc))
    return issues


def _check_step_functions(cfg: PhasefConfig, file: str, lines: dict[tuple[str, ...], int]) -> list[Problem]:
    """Every function the project declares must be ``module:callable``, importable and callable."""
    issues: list[Problem] = []
    loc = ("project", "step_functions")
    for name in cfg.project.step_functions:
        try:
            obj = load_object(name)
        except Exception as exc:  # importing the project's module may raise anything; report it, do not crash
            problem = f"cannot load {name!r}: {type(exc).__name__}: {exc}"
        else:
            if callable(obj):
                continue
            problem = f"{name!r} is not callable"
        issues.append(Problem(file, _line_for(lines, loc), problem, ".".join(loc)))
    return issues


def find_cycle(deps: dict[str, list[str]]) -> list[str] | None:
    """Return one dependency cycle as a path (first node repeated at the end), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in deps.get(node, []):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if state.get(nxt) is None:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in deps:
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def _parse_toml(text: str, file: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise ConfigError([Problem(file, int(m.group(1)) if m else None, f"TOML syntax: {exc}", "")]) from exc


def parse_config(text: str, file: str = "config.toml") -> PhasefConfig:
    """Parse and validate config text; raise ``ConfigError`` with every issue found."""
    raw = _parse_toml(text, file)
    lines = key_lines(text)
    try:
        cfg = PhasefConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_validation_issues(exc, file, lines)) from exc
    issues = _check_references(cfg, file, lines) + _check_step_functions(cfg, file, lines)
    issues += _check_params(cfg, file, lines)
    if issues:
        raise ConfigError(issues)
    return cfg


CONFIG_LIMIT_BYTES = 16 * 2**20


def _read_text(p: Path) -> str:
    try:
        return read_text_bounded(p, CONFIG_LIMIT_BYTES)
    except FileNotFoundError as exc:
        raise ConfigError([Problem(str(p), None, "file not found", "")]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(str(p), None, f"not UTF-8 ({exc.reason} at byte {exc.start})", "")]) from exc
    except (NotARegularFile, FileTooLarge) as exc:
        raise ConfigError([Problem(str(p), None, str(exc).removeprefix(f"{p}: "), "")]) from exc
    except OSError as exc:
        raise ConfigError([Problem(str(p), None, f"cannot read: {exc.strerror or exc}", "")]) from exc


def load_config(path: str | Path) -> PhasefConfig:
    """Read and validate a config file; anything but a regular file of at most ``CONFIG_LIMIT_BYTES`` is refused."""
    p = Path(path)
    return parse_config(_read_text(p), str(p))


class Section(NamedTuple):
    """One top-level section of a config file read on its own: its value (the section's model, bad entries left
    out), the problems with it, and the line of every key of the file."""

    value: Any
    issues: list[Problem]
    lines: dict[tuple[str, ...], int]


def _entry_path(data: Any, loc: tuple[str | int, ...]) -> tuple[str, ...]:
    """The deepest table entry of ``data`` on ``loc`` (tags and list indexes are passed over)."""
    path: tuple[str, ...] = ()
    current = data
    for part in loc:
        if isinstance(current, dict) and str(part) in current:
            path += (str(part),)
            current = current[str(part)]
    return path


def _drop_entries(data: dict[str, Any], paths: list[tuple[str, ...]]) -> bool:
    """Remove each entry (outermost first; one inside an entry already removed is gone with it)."""
    dropped: list[tuple[str, ...]] = []
    for path in sorted(set(paths), key=len):
        if not path or any(path[: len(d)] == d for d in dropped):
            continue
        parent = data
        for part in path[:-1]:
            parent = parent[part]
        del parent[path[-1]]
        dropped.append(path)
    return bool(dropped)


def read_section(path: str | Path, name: str, missing_ok: bool = False) -> Section:
    """Section ``name`` of a config file, validated by its model, whatever the rest of the file holds (the viewer
    opens on a plan that is otherwise invalid). An entry that fails validation is reported and left out, the rest
    kept; a section that fails as a whole is reported and its default (None for ``stages``) returned. A file that
    cannot be read or is not TOML raises ``ConfigError``; a missing one too, unless ``missing_ok`` (then the
    default, no problems)."""
    field = PhasefConfig.model_fields[name]
    default = None if field.is_required() else field.get_default(call_default_factory=True)
    p = Path(path)
    if missing_ok and not p.exists():
        return Section(default, [], {})
    text = _read_text(p)
    raw = _parse_toml(text, str(p))
    lines = key_lines(text)
    if name not in raw:
        return Section(default, [], lines)
    adapter: TypeAdapter[Any] = TypeAdapter(Any if field.annotation is None else field.annotation)
    data = {"section": copy.deepcopy(raw[name])}  # wrapped, so that even the section itself can be dropped
    issues: list[Problem] = []
    while "section" in data:
        try:
            return Section(adapter.validate_python(data["section"]), issues, lines)
        except ValidationError as exc:
            issues += _validation_issues(exc, str(p), lines, (name,))
            if not _drop_entries(data, [_entry_path(data, ("section", *err["loc"])) for err in exc.errors()]):
                break
    return Section(default, issues, lines)


def dump_config(cfg: PhasefConfig) -> dict[str, Any]:
    """The resolved config as plain data for TOML (None values dropped, since TOML has no null)."""

    def clean(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items() if x is not None}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    data: dict[str, Any] = clean(cfg.model_dump(mode="json"))
    return data
