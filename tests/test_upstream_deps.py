"""upstream.deps: upstream's run-time imports are present, and a missing one is named with its pip command."""
from __future__ import annotations

import sys

import pytest

from upstream import deps
from upstream.errors import UpstreamError


def test_this_interpreter_has_everything_upstream_imports():
    assert deps.missing() == []
    deps.check()


def test_a_missing_module_is_a_one_line_error_with_the_install_command(monkeypatch):
    monkeypatch.setitem(deps.RUNTIME, "nanochat_bench_absent_module", "absent-dist")
    with pytest.raises(UpstreamError, match=r"needs absent-dist, missing from .*pip install absent-dist") as info:
        deps.check()
    assert sys.executable in str(info.value) and "\n" not in str(info.value)


def test_undeclared_upstream_imports_are_in_the_list():
    assert deps.RUNTIME["yaml"] == "pyyaml" and deps.RUNTIME["requests"] == "requests"


def test_kernels_matters_only_on_cuda(monkeypatch):
    monkeypatch.setitem(deps.CUDA_ONLY, "kernels", "kernels")
    absent = deps.missing(cuda=True) != deps.missing()
    assert bool(deps.warnings(cuda=True)) == absent
    assert deps.warnings(cuda=False) == []


def test_installed_versions_name_every_dependency_and_python():
    versions = deps.installed_versions()
    assert versions["python"] == sys.version.split()[0]
    assert set(deps.RUNTIME.values()) | {"kernels"} <= set(versions)
    assert versions["torch"] and versions["pyyaml"]
