"""The arms a campaign can run, by the word ``--impl`` takes, and the roles of a comparison.

Each arm is one adapter class (harness/adapters/<arm>.py); its ``role`` says which side of a ratio it takes by
default: upstream is the ``baseline``, ours the ``candidate``. A new first-class arm is a new adapter file and
its line in ``ARMS``; nothing else in the harness names an arm.
"""
from __future__ import annotations

from harness.adapters.base import Adapter
from harness.adapters.command import CommandAdapter
from harness.adapters.ours import OursAdapter
from harness.adapters.ours_ref import PREFIX as REF_PREFIX
from harness.adapters.ours_ref import OursRefAdapter
from harness.adapters.upstream import UpstreamAdapter

ARMS: dict[str, type[Adapter]] = {"ours": OursAdapter, "upstream": UpstreamAdapter, "command": CommandAdapter}


def _with_role(role: str) -> str:
    return next(word for word, cls in ARMS.items() if cls.role == role)


BASELINE = _with_role("baseline")     # "upstream"
CANDIDATE = _with_role("candidate")   # "ours"


def arm_class(name: str) -> type[Adapter] | None:
    """The adapter class of an arm as results name it ("ours", "upstream", "command:<name>", "ours@<ref>");
    None if unknown."""
    if name.startswith(REF_PREFIX):
        return OursRefAdapter
    return ARMS.get(name.split(":", 1)[0])


def is_arm(impl: str) -> bool:
    """Whether ``--impl`` names an arm: a word of ``ARMS``, or ``ours@REF`` (our trainer at a git ref)."""
    return impl in ARMS or impl.startswith(REF_PREFIX)


def build(impl: str, setup) -> Adapter:
    """The adapter ``impl`` names, for a campaign's setup."""
    if impl.startswith(REF_PREFIX):
        return OursRefAdapter.for_impl(impl, setup)
    return ARMS[impl].from_setup(setup)


def prints_rounded_lrm(name: str) -> bool:
    cls = arm_class(name)
    return bool(cls and cls.prints_rounded_lrm)

