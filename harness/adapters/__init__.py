"""The arms a campaign can run, each behind the small interface of harness.adapters.base.Adapter."""
from __future__ import annotations

from harness.adapters.base import Adapter, AdapterError, Launch, RunRequest

__all__ = ["Adapter", "AdapterError", "Launch", "RunRequest"]
