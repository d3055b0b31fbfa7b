"""Running an UpstreamLaunch to its end in a test, without the harness's runner and its telemetry."""
from __future__ import annotations

import subprocess

from upstream.run import UpstreamLaunch


def run_to_end(launch: UpstreamLaunch) -> list:
    """Start ``launch``, wait for it (its output into its log), then collect its events; raise if it failed."""
    launch.prepare()
    with open(launch.log_path, "w", encoding="utf-8") as log:
        subprocess.run(launch.command(), cwd=launch.checkout, env=launch.env(), stdout=log,
                       stderr=subprocess.STDOUT, check=True)
    return launch.collect()
