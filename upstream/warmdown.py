"""The schedule swap: our 1-sqrt LR warmdown (and optionally no Muon weight decay) in upstream's base_train.

Upstream defines ``get_lr_multiplier`` (and ``get_weight_decay``) at the top level of scripts/base_train.py and
calls them from the same module, so they cannot be monkeypatched from outside. Instead the script's syntax
tree is edited: the one top-level definition is replaced by ours, and launch.py compiles and runs the edited
tree under the script's real file name. The clone on disk is never written.

Before swapping, upstream's own function is evaluated on a grid of settings and must equal our closed form
with shape "linear": the 1-sqrt variant keeps upstream's warmup and constant phases, so a changed upstream
schedule must stop the run rather than be half-replaced.
"""
from __future__ import annotations

import ast
import math
from types import SimpleNamespace

from protocol.schedule import SHAPES, lr_multiplier
from upstream.errors import UpstreamError

LR_FUNCTION = "get_lr_multiplier"
WD_FUNCTION = "get_weight_decay"
# The module-level names upstream's schedule reads, and so the ones our replacement reads too.
SCHEDULE_READS = {"args.warmup_steps", "args.warmdown_ratio", "args.final_lr_frac", "num_iterations"}

_SQRT_SOURCE = f'''
def {LR_FUNCTION}(it):
    """nanochat-bench: upstream's warmup and constant phases, then a 1-sqrt warmdown to final_lr_frac."""
    from protocol.schedule import lr_multiplier
    return lr_multiplier(it, num_iterations, args.warmup_steps, args.warmdown_ratio, args.final_lr_frac, "sqrt")
'''
_NO_WD_SOURCE = f'''
def {WD_FUNCTION}(it):
    """nanochat-bench: Muon weight decay switched off for the whole run."""
    return 0.0
'''


def swap(source: str, filename: str, shape: str, muon_weight_decay_off: bool = False,
         where: str = "an unknown commit") -> ast.Module:
    """base_train's tree with the requested schedule functions replaced (``linear`` keeps upstream's LR)."""
    if shape not in SHAPES:
        raise UpstreamError(f"warmdown shape {shape!r} is unknown; use one of {', '.join(SHAPES)}")
    tree = ast.parse(source, filename=filename)
    lr_at = _only_definition(tree, LR_FUNCTION, filename, where)
    check_linear_schedule(tree.body[lr_at], where)
    if shape == "sqrt":
        tree.body[lr_at] = _definition(_SQRT_SOURCE, tree.body[lr_at])
    if muon_weight_decay_off:
        wd_at = _only_definition(tree, WD_FUNCTION, filename, where)
        tree.body[wd_at] = _definition(_NO_WD_SOURCE, tree.body[wd_at])
    return ast.fix_missing_locations(tree)


def _only_definition(tree: ast.Module, name: str, filename: str, where: str) -> int:
    found = [i for i, node in enumerate(tree.body) if isinstance(node, ast.FunctionDef) and node.name == name]
    if len(found) != 1:
        raise UpstreamError(f"{filename} at {where} has {len(found)} top-level '{name}' functions, the swap needs "
                            f"exactly one: upstream changed; update upstream/warmdown.py or pin another commit")
    return found[0]


def _definition(code: str, replaced: ast.stmt) -> ast.FunctionDef:
    """Our function, placed at the replaced one's line so tracebacks still point into base_train."""
    node = ast.parse(code).body[0]
    ast.increment_lineno(node, replaced.lineno - node.lineno)
    return node


def check_linear_schedule(fn: ast.FunctionDef, where: str) -> None:
    """Upstream's function must read the names we read and equal our linear closed form everywhere we test."""
    reads = _module_reads(fn)
    if reads != SCHEDULE_READS:
        raise UpstreamError(f"upstream's {LR_FUNCTION} at {where} reads {sorted(reads)}, the swap expects "
                            f"{sorted(SCHEDULE_READS)}: its schedule changed; update upstream/warmdown.py")
    for n, warmup, ratio, final in [(20, 40, 0.65, 0.05), (150, 10, 0.5, 0.05), (1000, 40, 0.3, 0.0), (7, 0, 1.0, 0.1),
                                     (10, 2, 0.0, 0.05)]:
        theirs = _evaluate(fn, n, warmup, ratio, final)
        ours = [lr_multiplier(it, n, warmup, ratio, final, "linear") for it in range(n + 1)]
        if any(not math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12) for a, b in zip(theirs, ours)):
            raise UpstreamError(f"upstream's {LR_FUNCTION} at {where} no longer matches the linear warmup/constant/"
                                f"warmdown it had (N={n}, warmup={warmup}): update upstream/warmdown.py")


def _module_reads(fn: ast.FunctionDef) -> set[str]:
    """Module-level names (``args.x`` spelled out) the function reads, leaving out its locals and builtins."""
    local = {a.arg for a in fn.args.args} | {n.id for n in ast.walk(fn) if isinstance(n, ast.Name)
                                             and isinstance(n.ctx, ast.Store)}
    reads = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id not in local:
            reads.add(f"{node.value.id}.{node.attr}")
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in local:
            reads.add(node.id)
    bare_parents = {r.split(".")[0] for r in reads if "." in r}
    return {r for r in reads if r not in bare_parents and r not in _BUILTINS}


_BUILTINS = set(dir(__import__("builtins")))


def _evaluate(fn: ast.FunctionDef, n: int, warmup: int, ratio: float, final: float) -> list[float]:
    scope = {"args": SimpleNamespace(warmup_steps=warmup, warmdown_ratio=ratio, final_lr_frac=final),
             "num_iterations": n, "math": math}
    exec(compile(ast.fix_missing_locations(ast.Module(body=[fn], type_ignores=[])), "<upstream schedule>", "exec"),
         scope)
    return [scope[LR_FUNCTION](it) for it in range(n + 1)]
