"""The ``command`` arm: any external trainer (a Rust or JAX port, say) that speaks our protocol.

Protocol (docs/protocol.md): the harness runs the user's command template with the budget appended as flags —
the same words ``python -m models.train`` receives, ``--metrics-out FILE`` included — and the trainer appends
protocol.events JSONL records (step, eval, final) to that file. Exit code 0 with a final record = ok.
The template may use placeholders {python} {run_dir} {base_dir} {metrics_out} {seed} {repeat} and {flags}
(where the flags go; default: at the end).
"""
from __future__ import annotations

import re
import shlex
import string
import sys
from dataclasses import dataclass
from pathlib import Path

from harness.adapters.base import Adapter, AdapterError, Launch, RunRequest
from harness.adapters.ours import budget_flags
from harness.budget import Budget, read_toml

PLACEHOLDERS = ("python", "run_dir", "base_dir", "metrics_out", "seed", "repeat", "flags")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass
class CommandSpec:
    """A user's trainer: a command template and a short name for results ("command:<name>")."""
    template: str
    name: str = "command"

    def __post_init__(self):
        if not self.template.strip():
            raise AdapterError("command template is empty: pass --command 'python my_trainer.py'")
        if not _NAME.match(self.name):
            raise AdapterError(f"command name {self.name!r}: use letters, digits, '.', '_' or '-' only")
        check_template(self.template)

    @classmethod
    def from_toml(cls, path: str | Path) -> "CommandSpec | None":
        """The [command] table of a budget TOML file (template, name), or None when it has none."""
        table = read_toml(path).get("command")
        if table is None:
            return None
        if not isinstance(table, dict):
            raise AdapterError(f"{path}: 'command' must be a table: [command] with template = \"...\" "
                               f"(and name = \"...\"), not {type(table).__name__} {table!r}")
        unknown = sorted(set(table) - {"template", "name"})
        if unknown:
            raise AdapterError(f"{path}: unknown key(s) {unknown} in [command]; use template and name")
        for key in ("template", "name"):
            if key in table and not isinstance(table[key], str):
                raise AdapterError(f"{path}: [command] {key} = {table[key]!r} must be a string in quotes")
        return cls(template=table.get("template", ""), name=table.get("name", "command"))


def check_template(template: str) -> None:
    """Everything ``launch`` will do with the template, done now: shell-style words, then each word's
    placeholders — known names only, no attribute or index access, no conversion or format spec."""
    try:
        words = shlex.split(template)
    except ValueError as e:
        raise AdapterError(f"command template {template!r}: {e} (quote as in a shell, e.g. 'python t.py --x \"a b\"')") from None
    for word in words:
        try:
            parts = list(string.Formatter().parse(word))
        except ValueError as e:
            raise AdapterError(f"command template word {word!r}: {e}; write a literal brace as {{{{ or }}}}") from None
        for _, name, spec, conversion in parts:
            if name is None:
                continue
            if name not in PLACEHOLDERS or spec or conversion:
                raise AdapterError(f"command template word {word!r}: placeholder {{{name}{'!' + conversion if conversion else ''}"
                                   f"{':' + spec if spec else ''}}} is not one of {['{' + p + '}' for p in PLACEHOLDERS]}"
                                   f"; write a literal brace as {{{{ or }}}}")


class CommandAdapter(Adapter):
    def __init__(self, spec: CommandSpec, cwd: Path | None = None):
        self.spec = spec
        self.name = f"command:{spec.name}"
        self.cwd = Path(cwd or Path.cwd()).resolve()   # relative paths in the template mean what they meant to the user

    @classmethod
    def from_setup(cls, setup) -> "CommandAdapter":
        if setup.command is None:
            raise AdapterError("--impl command needs a trainer: pass --command 'python my_trainer.py' "
                               "or a [command] table in the budget TOML")
        return cls(setup.command)

    def config(self) -> dict:
        return {"template": self.spec.template, "name": self.spec.name}

    @staticmethod
    def setup_fields(config: dict) -> dict:
        return {"command": CommandSpec(template=config["template"], name=config["name"])}

    def check(self, budget: Budget) -> None:
        if budget.world_size > 1:
            raise AdapterError(f"{self.name}: multi-process budgets are not part of the command protocol; "
                               "launch torchrun inside your command and keep nproc_per_node=1 here")

    def launch(self, req: RunRequest) -> Launch:
        flags = budget_flags(req.budget, seed=req.seed, metrics_out=req.events_path, base_dir=req.base_dir,
                             checkpoint_dir=req.checkpoint_dir)
        values = {"python": sys.executable, "run_dir": str(req.run_dir), "base_dir": str(req.base_dir or ""),
                  "metrics_out": str(req.events_path), "seed": str(req.seed), "repeat": str(req.repeat)}
        words = []
        for word in shlex.split(self.spec.template):
            if word == "{flags}":
                words += flags
            else:
                words.append(word.format(**values, flags=" ".join(flags)))
        if "{flags}" not in self.spec.template:
            words += flags
        env = {"NANOCHAT_BASE_DIR": str(req.base_dir)} if req.base_dir else {}
        return Launch(command=words, env=env, cwd=self.cwd)
