"""The command line: `nanochat-bench VERB ...` (also `python -m harness VERB ...`).

Verbs live in harness/commands/, one module per verb, listed in its registry ``VERBS``: verb -> ("module:ATTRIBUTE"
of a ``Verb``, one-line help). Only the module of the verb being run is imported, so a verb's heavy imports
(plotting, a web server) cost nothing elsewhere; a verb whose module does not exist is simply not offered. Add one
with a module in harness/commands/ and a line in ``VERBS`` (see docs/cli.md), or at run time with ``register``.

Errors are one line on stderr: exit code 2 for input the user can fix, 1 for anything else, 130 for Ctrl-C.
--debug shows the traceback instead.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import signal
import sys
import threading

from harness.commands import VERBS
from harness.commands.base import UsageError, Verb

PROG = "nanochat-bench"


def register(name: str, target: str, help: str) -> None:
    """Add or replace a verb: ``target`` is "module:ATTRIBUTE" naming a Verb."""
    VERBS[name] = (target, help)


def available() -> dict[str, tuple[str, str]]:
    """Verbs whose module exists (found without importing it)."""
    return {name: entry for name, entry in VERBS.items() if _module_exists(entry[0].split(":")[0])}


def _module_exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:   # a parent package is missing
        return False


def load_verb(name: str) -> Verb:
    module, attr = VERBS[name][0].split(":")
    verb = getattr(importlib.import_module(module), attr, None)
    if not isinstance(verb, Verb):
        raise UsageError(f"verb {name!r} is not available in this version: {module} defines no {attr} "
                         f"(see docs/cli.md)")
    return verb


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (and exit code 2) instead of usage + error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Version(argparse.Action):
    """``--version``: computed only when asked (reading git state is not free)."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_line())
        parser.exit(0)


def version_line() -> str:
    """'nanochat-bench 0.1.0 (commit 1a2b3c4d5e[-dirty]; upstream pin 92d63d4e8b)'."""
    from importlib.metadata import PackageNotFoundError, version

    from harness.provenance import git_state
    from upstream.pin import PINNED_COMMIT
    try:
        ours = version(PROG)
    except PackageNotFoundError:
        ours = "(not installed)"
    sha, dirty = git_state()
    commit = f"{sha[:10]}{'-dirty' if dirty else ''}" if sha else "not a git checkout"
    return f"{PROG} {ours} (commit {commit}; upstream pin {PINNED_COMMIT[:10]})"


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Matched-budget benchmark of upstream nanochat against our implementation.",
                     epilog=f"example: {PROG} run --preset smoke", formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    parser.add_argument("--version", action=_Version, nargs=0, help="print the version, our commit and the upstream pin")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (_, help_line) in available().items():
        if name == chosen:
            verb = load_verb(name)
            p = sub.add_parser(name, help=help_line, description=verb.description or help_line,
                               epilog=f"example:\n  {verb.example}", formatter_class=argparse.RawDescriptionHelpFormatter)
            verb.add_arguments(p)
            p.set_defaults(_handler=verb.handler)
        else:
            sub.add_parser(name, help=help_line, add_help=False)   # full parser only for the verb being run
    return parser


def _terminate_as_interrupt(signum, frame):
    """SIGTERM (systemd, timeout, a scheduler) stops a campaign like Ctrl-C: runs' process trees are ended too."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    try:
        args = build_parser(argv).parse_args(argv)
        if not getattr(args, "_handler", None):
            build_parser(argv).print_help()
            return 2
        return int(args._handler(args) or 0)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the one place every error becomes one line
        if debug:
            raise
        code, text = classify(e)
        print(f"{PROG}: error: {text}", file=sys.stderr)
        return code


def classify(e: BaseException) -> tuple[int, str]:
    """(exit code, one line) for an exception: 2 for errors the user can fix, 130 for an interrupted campaign."""
    from harness.runner import CampaignDiskFull, CampaignInterrupted
    from protocol.files import DiskFull
    if isinstance(e, CampaignInterrupted):
        return 130, str(e)
    if isinstance(e, (CampaignDiskFull, DiskFull)):
        return 1, str(e)
    text = " ".join(str(e).split()) or type(e).__name__
    if _user_error(e):
        return 2, text
    return 1, f"{type(e).__name__}: {text} (run with --debug for the traceback)"


def _user_error(e: BaseException) -> bool:
    # imported here, not at the top: only an error pays for loading these modules
    from harness.adapters.base import AdapterError
    from harness.budget import BudgetError
    from harness.campaign import SetupError
    from harness.dataprep import DataPrepError
    from harness.results import SchemaError
    from protocol.files import UnsafePath
    from upstream.errors import UpstreamError
    kinds = (UsageError, BudgetError, AdapterError, SchemaError, FileExistsError, SetupError, DataPrepError,
             UpstreamError, UnsafePath)
    return isinstance(e, kinds)


if __name__ == "__main__":
    sys.exit(main())
