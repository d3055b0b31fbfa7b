"""The CLI verbs, one module per verb, on top of everything else: only harness/cli.py imports this package.

    base       Verb (a verb's arguments, handler, example) and UsageError (bad input: exit 2)
    options    option groups and their parsing shared by run, benchmark, nightly and parity
    outcome    what run and benchmark print when a campaign ends (and its history entry)
    run, list, benchmark, report, history, nightly, readme, serve, parity, export, compare: one verb each, as ``VERB``

``VERBS`` is the registry harness/cli.py reads: verb -> ("module:ATTRIBUTE", one-line help). Only the module of
the verb being run is imported (by name, at run time), so ``--help`` stays fast.
"""
from __future__ import annotations

VERBS: dict[str, tuple[str, str]] = {
    "run": ("harness.commands.run:VERB", "run a matched-budget campaign (or resume one)"),
    "list": ("harness.commands.list:VERB", "list the campaigns under a results root"),
    "benchmark": ("harness.commands.benchmark:VERB", "run d12 on CUDA, else smoke on CPU; then report"),
    "report": ("harness.commands.report:VERB", "render a campaign's HTML and Markdown report"),
    "history": ("harness.commands.history:VERB", "show metric trends across stored campaigns"),
    "nightly": ("harness.commands.nightly:VERB", "nightly regression check against the latest upstream"),
    "readme": ("harness.commands.readme:VERB", "rewrite the README findings from the latest campaign"),
    "serve": ("harness.commands.serve:VERB", "preview the static report site on localhost"),
    "parity": ("harness.commands.parity:VERB", "weight- and loss-level parity of the two arms"),
    "export": ("harness.commands.export:VERB", "every run (and step) of campaigns as a CSV or Parquet table"),
    "compare": ("harness.commands.compare:VERB", "campaign B against campaign A: ratios, verdicts, exit 1 on a regression"),
}
