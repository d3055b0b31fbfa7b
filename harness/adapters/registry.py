"""The arms a campaign can run, by the word ``--impl`` takes, and the roles of a comparison.

Each arm is one adapter class (harness/adapters/<arm>.py); its ``role`` says which side of a ratio it takes by
default: upstream is the ``baseline``, ours the ``candidate``. A new first-class arm is a new adapter file and
its line in ``ARMS``; nothing else in the harness names an arm.
"""
from __future__ import annotations

from harness.adapters.base import Adapter
from harness.adapters.command import CommandAdapter
from harness.adapters.ours import OursAdapter
from harness.adapters.upstream import UpstreamAdapter

ARMS: dict[str, type[Adapter]] = {"ours": OursAdapter, "upstream": UpstreamAdapter, "command": CommandAdapter}


def _with_role(role: str) -> str:
    return next(word for word, cls in ARMS.items() if cls.role == role)


BASELINE = _with_role("baseline")     # "upstream"
CANDIDATE = _with_role("candidate")   # "ours"


def arm_class(name: str) -> type[Adapter] | None:
    """The adapter class of an arm as results name it ("ours", "upstream", "command:<name>"); None if unknown."""
    return ARMS.get(name.split(":", 1)[0])


def prints_rounded_lrm(name: str) -> bool:
    cls = arm_class(name)
    return bool(cls and cls.prints_rounded_lrm)

