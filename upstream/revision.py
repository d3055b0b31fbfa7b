"""What one checked-out upstream revision needs, accepts, reads, writes and prints, read from its files without running them.

The harness assumes nothing about the revision it is pointed at: before any data is prepared or a run starts, this
module parses (``ast`` and ``tomllib``, never ``import``) the revision's own files and says

- **dependencies**: what pyproject.toml (and whether a uv.lock) declares, which third-party modules the training
  closure (scripts/base_train.py, scripts/tok_train.py and the nanochat/ and scripts/ modules they import at module
  level) imports, and which of those this interpreter cannot import;
- **flags**: every ``--flag`` base_train's argparse declares, and how the budget's flags are spelled there
  (``--warmup-steps`` or ``--warmup_steps``);
- **layout**: where it reads shards and the tokenizer and writes checkpoints, relative to $NANOCHAT_BASE_DIR
  (the flat layout of the pin, ``base_data`` before the climbmix rename, or the experiment layout);
- **log grammar**: whether its step and eval lines are the pin's prose or ``tag key=value`` records;
- **schedule**: whether its ``get_lr_multiplier`` is the linear schedule the 1-sqrt swap replaces.

``Revision.problems`` are the differences the harness cannot bridge; ``Revision.refusal()`` turns them into the
one line that stops a campaign before it starts. ``Revision.adaptations`` say how the rest was bridged.
Only layouts and grammars seen in upstream's history are recognised: anything else is reported as unknown and refused.
"""
from __future__ import annotations

import ast
import importlib.metadata
import json
import importlib.util
import re
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

try:
    import tomllib
except ModuleNotFoundError:   # Python 3.10 (pyproject allows it): the same parser as a package
    import tomli as tomllib

from upstream import warmdown
from upstream.errors import UpstreamError

TRAIN = "scripts/base_train.py"
ROOTS = (TRAIN, "scripts/tok_train.py")
# flags the harness passes (harness/adapters/upstream.py's budget flags plus upstream/run.py's own)
BUDGET_FLAGS = ("depth", "aspect-ratio", "head-dim", "max-seq-len", "window-pattern", "device-batch-size",
                "total-batch-size", "num-iterations", "warmup-steps", "warmdown-ratio", "final-lr-frac",
                "eval-every", "eval-tokens", "device-type")
RUN_FLAGS = ("run", "model-tag", "core-metric-every", "sample-every")
SCHEDULE_FLAGS = ("num-iterations", "warmup-steps", "warmdown-ratio", "final-lr-frac")
# import name -> distribution name where they differ (for the pip command of a missing module)
DIST_OF = {"yaml": "pyyaml", "dotenv": "python-dotenv", "jinja2": "jinja2", "sklearn": "scikit-learn"}
DEFAULT_EXPERIMENT = "default"

Reader = Callable[[str], "str | None"]  # repo-relative path -> text, None when the file does not exist


@dataclass(frozen=True)
class Dependencies:
    """Declared (pyproject.toml) against imported (the training closure) against installed (this interpreter)."""
    declared: tuple[str, ...]            # requirement strings of [project].dependencies
    lock_file: bool                      # a uv.lock sits beside it
    imported: tuple[str, ...]            # third-party top-level modules the training closure imports
    missing: tuple[str, ...]             # distributions of imported modules this interpreter cannot import
    declared_absent: tuple[str, ...]     # declared distributions not installed here (recorded; not needed to train)


@dataclass(frozen=True)
class Layout:
    """Paths under $NANOCHAT_BASE_DIR; ``checkpoints`` has a ``{tag}`` placeholder."""
    name: str                            # flat | flat-base_data | experiment
    data: str
    tokenizer: str
    checkpoints: str
    env: tuple[tuple[str, str], ...] = ()   # variables the run sets so the revision reads these paths


@dataclass(frozen=True)
class Revision:
    sha: str
    flags: tuple[str, ...]               # every --flag base_train declares, as spelled
    spelling: dict                       # budget flag (dash form) -> the revision's spelling, for those it has
    dependencies: Dependencies
    layout: Layout | None
    log_grammar: dict                    # {"step": prose|records|unknown, "eval": prose|records|unknown}
    schedule: str                        # "linear" (swap verified against it) or why not
    problems: tuple[str, ...] = ()       # what stops a run, one clause each
    adaptations: tuple[str, ...] = ()    # how the harness bridged the rest

    @property
    def short(self) -> str:
        return self.sha[:7]

    def refusal(self) -> str | None:
        """One line naming the revision, what changed and what to do; None when it can run."""
        if not self.problems:
            return None
        return f"upstream {self.short} " + "; ".join(self.problems)

    def check(self) -> None:
        message = self.refusal()
        if message:
            raise UpstreamChanged(message)

    def record(self) -> dict:
        """For the result's provenance: every fact read, what was adapted and what (if anything) refused it."""
        d = asdict(self)
        d["refusal"] = self.refusal()
        return json.loads(json.dumps(d))  # plain lists and dicts, as it is stored


class UpstreamChanged(UpstreamError):
    """The revision differs from what the harness knows in a way it cannot bridge (raised before anything runs)."""


# --- reading -----------------------------------------------------------------------------------------------

def read(path: str | Path, sha: str | None = None) -> Revision:
    """The facts of the work tree at ``path`` (its HEAD unless ``sha`` is given)."""
    root = Path(path)

    def files(rel: str) -> str | None:
        p = root / rel
        return p.read_text(encoding="utf-8", errors="replace") if p.is_file() else None
    if sha is None:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    return read_from(files, sha or "unknown")


def read_git(repo: str | Path, rev: str) -> Revision:
    """The facts of ``rev`` in a git repository (bare or not), read with ``git show`` without checking it out."""
    sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", f"{rev}^{{commit}}"],
                         capture_output=True, text=True).stdout.strip()
    if not sha:
        raise UpstreamError(f"{rev!r} is not a commit in {repo}; pass a branch, tag or commit that exists there")

    def files(rel: str) -> str | None:
        out = subprocess.run(["git", "-C", str(repo), "show", f"{sha}:{rel}"], capture_output=True, text=True)
        return out.stdout if out.returncode == 0 else None
    return read_from(files, sha)


def read_from(files: Reader, sha: str) -> Revision:
    """The facts of a revision whose files ``files`` returns (by repo-relative path)."""
    short = sha[:7]
    train = files(TRAIN)
    if train is None:
        return Revision(sha, (), {}, read_dependencies(files), None, {}, "no base_train",
                        problems=(f"has no {TRAIN}: it is not a nanochat revision the harness can run; "
                                  f"pass another --upstream-ref",))
    tree = ast.parse(train, filename=TRAIN)
    problems, adaptations = [], []

    deps = read_dependencies(files)
    if deps.missing:
        names = " ".join(deps.missing)
        problems.append(f"needs {', '.join(f'`{m}`' for m in deps.missing)} (not installed): "
                        f"{sys.executable} -m pip install {names}")

    flags = read_flags(tree)
    spelling, missing_flags = spell_flags(flags)
    if any(spelling[f] != f for f in spelling):
        adaptations.append("flags spelled with underscores (--num_iterations): the budget's flags are passed so")
    for name in missing_flags:
        consequence = ("the 1-sqrt swap cannot be verified" if name in SCHEDULE_FLAGS
                       else "the budget cannot be passed to it")
        near = _near(name, flags)
        problems.append(f"has no --{name} flag{f' (it has {near})' if near else ''}: {consequence}; "
                        f"pass an --upstream-ref that has it")

    layout = read_layout(files, tree)
    if layout is None:
        problems.append("reads data or its tokenizer from a place the harness does not know "
                        "(nanochat/dataset.py, nanochat/tokenizer.py): update upstream/revision.py")
    elif layout.name != "flat":
        adaptations.append(f"{layout.name} layout: shards linked at {layout.data}, tokenizer at {layout.tokenizer}")

    grammar = read_log_grammar(tree)
    if grammar["step"] != "prose":
        problems.append("prints no step line with `lrm:` the harness can parse: the budget cannot be audited; "
                        "update upstream/logparse.py")
    if grammar["eval"] == "unknown":
        problems.append("prints validation bpb in a form the harness does not know: update upstream/logparse.py")
    elif grammar["eval"] == "records":
        adaptations.append("eval lines are `eval step=N val_bpb=X` records: parsed as such")

    try:
        fn = tree.body[warmdown._only_definition(tree, warmdown.LR_FUNCTION, TRAIN, short)]
        warmdown.check_linear_schedule(fn, short)
        schedule = "linear"
    except UpstreamError as e:
        schedule = str(e)
        if not any("swap cannot be verified" in p for p in problems):
            problems.append(f"has a {warmdown.LR_FUNCTION} the swap does not know: the 1-sqrt swap cannot be "
                            f"verified; pass an --upstream-ref with the linear schedule")
    return Revision(sha=sha, flags=tuple(flags), spelling=spelling, dependencies=deps, layout=layout,
                    log_grammar=grammar, schedule=schedule, problems=tuple(problems), adaptations=tuple(adaptations))


def layout_at(path: str | Path) -> Layout | None:
    """The layout of the work tree at ``path`` alone (None when it is not one the harness knows)."""
    root = Path(path)

    def files(rel: str) -> str | None:
        p = root / rel
        return p.read_text(encoding="utf-8", errors="replace") if p.is_file() else None
    train = files(TRAIN)
    return read_layout(files, ast.parse(train)) if train else None


# --- dependencies ------------------------------------------------------------------------------------------

def read_dependencies(files: Reader) -> Dependencies:
    declared: list[str] = []
    text = files("pyproject.toml")
    if text:
        try:
            declared = list(tomllib.loads(text).get("project", {}).get("dependencies", []))
        except tomllib.TOMLDecodeError:
            declared = []
    imported = sorted(training_imports(files))
    missing = [DIST_OF.get(m, m) for m in imported if importlib.util.find_spec(m) is None]
    absent = [name for name in (_dist_name(r) for r in declared) if not _installed(name)]
    return Dependencies(declared=tuple(declared), lock_file=files("uv.lock") is not None, imported=tuple(imported),
                        missing=tuple(missing), declared_absent=tuple(absent))


def training_imports(files: Reader, roots: tuple[str, ...] = ROOTS) -> set[str]:
    """Third-party top-level modules imported at module level by ``roots`` and the repo modules they import."""
    seen, todo, third = set(), list(roots), set()
    while todo:
        rel = todo.pop()
        if rel in seen:
            continue
        seen.add(rel)
        text = files(rel)
        if text is None:
            continue
        for module in _module_level_imports(ast.parse(text)):
            top = module.split(".")[0]
            local = _local_file(files, module)
            if local:
                todo.append(local)
            elif top not in sys.stdlib_module_names and top not in ("nanochat", "scripts", "tasks", "__future__"):
                third.add(top)
    return third


def _module_level_imports(tree: ast.Module) -> list[str]:
    """Imports that run when the module is imported: top level and inside top-level if/with, not inside a
    try that catches ImportError (an optional import) nor inside functions or classes."""
    out: list[str] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                out.extend(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                out.append(node.module)
                out.extend(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.If):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.With):
                visit(node.body)
            elif isinstance(node, ast.Try) and not _catches_import_error(node):
                visit(node.body)
    visit(tree.body)
    return out


def _catches_import_error(node: ast.Try) -> bool:
    names = {ast.unparse(h.type) for h in node.handlers if h.type is not None}
    return bool(names & {"ImportError", "ModuleNotFoundError", "Exception", "(ImportError, ModuleNotFoundError)"}) \
        or any(h.type is None for h in node.handlers)


def _local_file(files: Reader, module: str) -> str | None:
    """nanochat/x.py for ``nanochat.x`` (or nanochat/x/__init__.py) when the revision has it."""
    if module.split(".")[0] not in ("nanochat", "scripts", "tasks"):
        return None
    base = module.replace(".", "/")
    for rel in (f"{base}.py", f"{base}/__init__.py"):
        if files(rel) is not None:
            return rel
    return None


def _dist_name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement.strip(), maxsplit=1)[0]


def _installed(dist: str) -> bool:
    try:
        importlib.metadata.version(dist)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


# --- flags -------------------------------------------------------------------------------------------------

def read_flags(tree: ast.Module) -> list[str]:
    """Every ``--flag`` string of an ``add_argument`` call, in order."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
            out += [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)
                    and a.value.startswith("--")]
    return out


def spell_flags(flags: list[str]) -> tuple[dict, list[str]]:
    """(budget flag -> spelling at the revision, budget flags it lacks). Dashes and underscores are one name."""
    by_norm = {f[2:].replace("_", "-"): f[2:] for f in flags}
    spelling, missing = {}, []
    for name in BUDGET_FLAGS + RUN_FLAGS:
        if name in by_norm:
            spelling[name] = by_norm[name]
        else:
            missing.append(name)
    return spelling, missing


def _near(name: str, flags: list[str]) -> str | None:
    """A flag that shares the first word (--warmup-ratio for --warmup-steps): named in the refusal."""
    head = name.split("-")[0]
    near = [f for f in flags if f[2:].replace("_", "-").split("-")[0] == head]
    return ", ".join(near) or None


# --- layout ------------------------------------------------------------------------------------------------

def read_layout(files: Reader, train: ast.Module) -> Layout | None:
    data = _data_dir(files("nanochat/dataset.py") or "")
    tokenizer = _tokenizer_dir(files("nanochat/tokenizer.py") or "", files("nanochat/common.py") or "")
    if data is None or tokenizer is None:
        return None
    experiment = tokenizer.startswith("experiments/")
    checkpoints = (f"experiments/{DEFAULT_EXPERIMENT}/{{tag}}/base" if _calls(train, "get_checkpoint_dir")
                   else "base_checkpoints/{tag}")
    name = "experiment" if experiment else ("flat" if data == "base_data_climbmix" else f"flat-{data}")
    env = (("NANOCHAT_EXPERIMENT", DEFAULT_EXPERIMENT), ("NANOCHAT_DATASET", data.split("/")[-1])) \
        if experiment else ()
    return Layout(name=name, data=data, tokenizer=tokenizer, checkpoints=checkpoints, env=env)


def _data_dir(text: str) -> str | None:
    """``DATA_DIR = os.path.join(base_dir, "X")`` -> X; ``os.path.join(get_base_dir(), "datasets", name)`` with
    ``CANONICAL_DATASET = "Y"`` -> datasets/Y."""
    if not text:
        return None
    tree = ast.parse(text)
    consts = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
              for t in n.targets if isinstance(t, ast.Name)}
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "DATA_DIR" for t in node.targets):
            parts = _join_strings(node.value)
            return parts[-1] if parts else None
    if isinstance(consts.get("CANONICAL_DATASET"), str):
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name == "get_dataset_dir" and \
                    "datasets" in [s for c in ast.walk(node) if isinstance(c, ast.Call) for s in _join_strings(c)]:
                return f"datasets/{consts['CANONICAL_DATASET']}"
    return None


def _tokenizer_dir(tokenizer: str, common: str) -> str | None:
    """``os.path.join(base_dir, "tokenizer")`` in get_tokenizer -> tokenizer; a get_tokenizer_dir under
    get_experiment_dir (base/experiments/<name>) -> experiments/default/tokenizer."""
    if not tokenizer:
        return None
    tree = ast.parse(tokenizer)
    fns = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    if "get_tokenizer_dir" in fns and _calls(fns["get_tokenizer_dir"], "get_experiment_dir"):
        strings = [s for c in ast.walk(fns["get_tokenizer_dir"]) if isinstance(c, ast.Call) for s in _join_strings(c)]
        if "tokenizer" in strings and "experiments" in _all_strings(common):
            return f"experiments/{DEFAULT_EXPERIMENT}/tokenizer"
        return None
    if "get_tokenizer" in fns and "tokenizer" in [s for c in ast.walk(fns["get_tokenizer"])
                                                   if isinstance(c, ast.Call) for s in _join_strings(c)]:
        return "tokenizer"
    return None


def _join_strings(node: ast.AST) -> list[str]:
    """The string constants of an ``os.path.join(...)`` call, or []."""
    if isinstance(node, ast.Call) and ast.unparse(node.func) == "os.path.join":
        return [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    return []


def _all_strings(text: str) -> set[str]:
    return {n.value for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Constant) and isinstance(n.value, str)} \
        if text else set()


def _calls(tree: ast.AST, name: str) -> bool:
    return any(isinstance(n, ast.Call) and getattr(n.func, "id", getattr(n.func, "attr", None)) == name
               for n in ast.walk(tree))


# --- log grammar -------------------------------------------------------------------------------------------

def read_log_grammar(train: ast.Module) -> dict:
    """How the step and eval lines are printed: ``prose`` (the pin's f-strings) or ``records`` (key=value)."""
    literals = ["".join(v.value for v in n.values if isinstance(v, ast.Constant))
                for n in ast.walk(train) if isinstance(n, ast.JoinedStr)]
    records = {n.args[0].value: {k.arg for k in n.keywords} for n in ast.walk(train)
               if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "format_record" and n.args
               and isinstance(n.args[0], ast.Constant)}
    step = "prose" if any(s.startswith("step ") and "lrm: " in s and "tok/sec: " in s for s in literals) else \
        ("records" if "lrm" in records.get("step", ()) else "unknown")
    evaluation = "prose" if any("Validation bpb: " in s for s in literals) else \
        ("records" if "val_bpb" in records.get("eval", ()) else "unknown")
    return {"step": step, "eval": evaluation}
