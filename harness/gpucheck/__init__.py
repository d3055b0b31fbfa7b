"""The prepared GPU check: build on the CPU machine everything a short CUDA campaign needs (``pack``), then run it
in one go on a lent GPU machine that has only its own Python, no network (``check``), and bring back one folder
that is enough to judge it (``summary``).

    python -m harness.gpucheck pack  [--pack DIR] [--upstream URL|PATH]      # make gpu-check-pack
    python -m harness.gpucheck check --out DIR [--pack DIR] [--dry-run]      # make gpu-check OUT=DIR

Nothing here may import more than the standard library at module level: ``check`` first puts the pack's
packages on the path (gitpython and friends are missing on the GPU machine), then imports the harness.
"""
