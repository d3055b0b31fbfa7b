"""The two ways our trainer can evaluate the same maths (``models.train --kernels``, budget key ``kernels``).

- ``fast`` (the default): the same model, optimizer and precision in our cheapest order of operations, so the
  float rounding differs from upstream's (docs/performance.md lists each change and its measured effect);
- ``parity``: upstream's order of operations, so that both implementations compiled on CPU run bit-identical
  graphs. The exact-parity check (``nanochat-bench parity``) always uses it: at the smoke budget any rounding
  difference grows until the losses part (docs/measurement.md), which says nothing about the maths.
"""
KERNELS = ("fast", "parity")
DEFAULT_KERNELS = "fast"


def check_kernels(kernels: str) -> None:
    """Raise ValueError naming the choices unless ``kernels`` is one of KERNELS."""
    if kernels not in KERNELS:
        raise ValueError(f"kernels={kernels!r}: use one of {', '.join(KERNELS)}")
