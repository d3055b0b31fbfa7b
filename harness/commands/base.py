"""What every verb is made of: ``Verb`` (arguments, handler, example) and ``UsageError`` (exit code 2)."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Verb:
    add_arguments: Callable[[argparse.ArgumentParser], None]
    handler: Callable[[argparse.Namespace], int]     # returns the exit code
    example: str                                      # shown at the end of the verb's --help
    description: str = ""


class UsageError(ValueError):
    """Bad input on the command line: exit code 2 with this one line."""
