"""Telemetry the harness samples itself, the same way for every arm: host memory and CPU of the whole process
tree (psutil), and GPU memory, utilisation, power, energy, SM clock and clock-throttle reasons (pynvml).

One sampler thread per run writes a JSON line per sample to telemetry.jsonl. Fields that cannot be measured
are None, never 0: no pynvml or no GPU -> GPU fields None; a GPU without an energy counter -> energy None; a GPU
that vanishes mid-run (NVML "GPU is lost") -> its fields None from then on, and the run goes on.
GPU indices are NVML's, which equal CUDA's under CUDA_DEVICE_ORDER=PCI_BUS_ID (the runner sets it).
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil


@dataclass
class Sample:
    t_s: float                              # seconds since the sampler started
    rss_bytes: int | None                   # resident memory summed over the process tree
    cpu_percent: float | None               # summed over the tree (100 = one core busy)
    nprocs: int
    gpu_mem_used_bytes: int | None = None   # device memory in use on the watched GPUs (any process)
    gpu_proc_mem_bytes: int | None = None   # the tree's own processes' GPU memory, where NVML reports it
    gpu_util_percent: float | None = None   # mean over the watched GPUs
    gpu_power_w: float | None = None        # summed over the watched GPUs
    gpu_energy_j: float | None = None       # energy counter delta since the sampler started
    gpu_sm_clock_mhz: float | None = None   # SM clock, mean over the watched GPUs
    gpu_throttle_reasons: int | None = None # NVML clock-event (throttle) reason bits, OR-ed over the watched GPUs

# NVML's clock-event ("throttle") reason bits (nvmlClocksEventReason* / nvmlClocksThrottleReason*), for reports.
THROTTLE_REASONS = {0x1: "gpu_idle", 0x2: "applications_clocks_setting", 0x4: "sw_power_cap", 0x8: "hw_slowdown",
                    0x10: "sync_boost", 0x20: "sw_thermal_slowdown", 0x40: "hw_thermal_slowdown",
                    0x80: "hw_power_brake_slowdown", 0x100: "display_clock_setting"}


def throttle_reason_names(mask: int | None) -> list[str]:
    """Names of the reason bits set in ``mask`` (unknown bits as hex); [] for 0 or None."""
    if not mask:
        return []
    names = [name for bit, name in THROTTLE_REASONS.items() if mask & bit]
    rest = mask & ~sum(THROTTLE_REASONS)
    return names + ([hex(rest)] if rest else [])


class ProcessTree:
    """psutil view of a root process and all its descendants, keeping Process objects so CPU % has a baseline."""

    def __init__(self, root_pid: int):
        self.root_pid = root_pid
        self._procs: dict[int, psutil.Process] = {}

    def members(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.root_pid)
            current = [root] + root.children(recursive=True)
        except psutil.Error:
            return []
        for p in current:
            if p.pid not in self._procs:
                self._procs[p.pid] = p
                _quietly(p.cpu_percent)      # first call only sets the baseline
        self._procs = {p.pid: self._procs[p.pid] for p in current}
        return list(self._procs.values())

    def read(self) -> tuple[int | None, float | None, list[int]]:
        """(summed RSS, summed CPU %, pids) right now; (None, None, []) once the tree is gone."""
        procs = self.members()
        rss = [_quietly(lambda p=p: p.memory_info().rss) for p in procs]
        cpu = [_quietly(p.cpu_percent) for p in procs]
        rss = [r for r in rss if r is not None]
        cpu = [c for c in cpu if c is not None]
        return (sum(rss) if rss else None), (sum(cpu) if cpu else None), [p.pid for p in procs]


def _quietly(fn):
    """psutil calls on a process that may exit at any moment: None instead of an exception."""
    try:
        return fn()
    except psutil.Error:
        return None


class GpuUnavailable(Exception):
    """No NVML (library or driver missing) or no such GPU: GPU fields stay None."""


class GpuProbe:
    """NVML readings for a set of GPU indices; ``open`` raises GpuUnavailable where there is no NVML or GPU."""

    def __init__(self, nvml, handles: list):
        self.nvml, self.handles = nvml, handles
        self._energy0 = self._energy_mj()

    @classmethod
    def open(cls, indices: list[int] | None = None) -> "GpuProbe":
        try:
            import pynvml
            pynvml.nvmlInit()
        except Exception as e:  # ImportError, or NVMLError when the driver library is absent
            raise GpuUnavailable(f"no NVML ({type(e).__name__}: {e})") from None
        try:
            count = pynvml.nvmlDeviceGetCount()
            indices = list(range(count)) if indices is None else indices
            if not indices or max(indices) >= count:
                raise GpuUnavailable(f"GPU indices {indices} are not among the {count} NVML devices")
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in indices]
        except (GpuUnavailable, pynvml.NVMLError) as e:  # e.g. a GPU lost between init and its handle
            _shutdown(pynvml)
            raise GpuUnavailable(str(e) if isinstance(e, GpuUnavailable)
                                 else f"NVML cannot open GPUs {indices}: {type(e).__name__}: {e}") from None
        return cls(pynvml, handles)

    def names(self) -> list[str]:
        """Device names; "unknown GPU" for one NVML cannot name (lost, or an error)."""
        return [_text(n) if n is not None else "unknown GPU" for n in (self._call(self.nvml.nvmlDeviceGetName, h)
                                                                        for h in self.handles)]

    def read(self, pids: list[int]) -> dict:
        used = self._sum(lambda h: self.nvml.nvmlDeviceGetMemoryInfo(h).used)
        util = self._each(lambda h: self.nvml.nvmlDeviceGetUtilizationRates(h).gpu)
        power = self._sum(lambda h: self.nvml.nvmlDeviceGetPowerUsage(h) / 1000.0)
        clocks = self._each(lambda h: self.nvml.nvmlDeviceGetClockInfo(h, self.nvml.NVML_CLOCK_SM))
        reasons = self._each(self._reasons_fn())
        energy = self._energy_mj()
        delta = None if energy is None or self._energy0 is None else energy - self._energy0
        return dict(gpu_mem_used_bytes=used, gpu_proc_mem_bytes=self._proc_mem(set(pids)),
                    gpu_util_percent=sum(util) / len(util) if util else None, gpu_power_w=power,
                    gpu_energy_j=delta / 1000.0 if delta is not None and delta >= 0 else None,  # < 0: counter reset
                    gpu_sm_clock_mhz=sum(clocks) / len(clocks) if clocks else None,
                    gpu_throttle_reasons=_or_all(reasons) if reasons else None)

    def _reasons_fn(self):
        """NVML's clock-event reasons: the current name, or the older ...ThrottleReasons on an older nvidia-ml-py."""
        return getattr(self.nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or \
            self.nvml.nvmlDeviceGetCurrentClocksThrottleReasons

    def _energy_mj(self) -> int | None:
        return self._sum(self.nvml.nvmlDeviceGetTotalEnergyConsumption)  # millijoules since the driver loaded

    def _proc_mem(self, pids: set[int]) -> int | None:
        total, seen = 0, False
        for h in self.handles:
            for p in self._call(self.nvml.nvmlDeviceGetComputeRunningProcesses, h) or []:
                if p.pid in pids and p.usedGpuMemory is not None:
                    total, seen = total + p.usedGpuMemory, True
        return total if seen else None    # not seen: not started on the GPU yet, or another PID namespace

    def _each(self, fn) -> list:
        values = [self._call(fn, h) for h in self.handles]
        return [] if any(v is None for v in values) else values

    def _sum(self, fn):
        values = self._each(fn)
        return sum(values) if values else None

    def _call(self, fn, h):
        try:
            return fn(h)
        except self.nvml.NVMLError:     # e.g. NotSupported: this GPU has no such counter
            return None

    def close(self) -> None:
        _shutdown(self.nvml)


def _shutdown(nvml) -> None:
    try:
        nvml.nvmlShutdown()
    except nvml.NVMLError:
        pass


def _or_all(values: list[int]) -> int:
    out = 0
    for v in values:
        out |= int(v)
    return out


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class Sampler:
    """Samples a process tree every ``interval_s`` on a thread, writing each sample to ``out_path``."""

    def __init__(self, root_pid: int, out_path: str | Path | None, interval_s: float = 0.5,
                 gpus: list[int] | None = None, watch_gpus: bool = False):
        self.tree = ProcessTree(root_pid)
        self.out_path = Path(out_path) if out_path else None
        self.interval_s = interval_s
        self.gpu, self.gpu_absent = None, "not watched (CPU budget)"
        if watch_gpus:
            try:
                self.gpu, self.gpu_absent = GpuProbe.open(gpus), None
            except GpuUnavailable as e:
                self.gpu_absent = str(e)
        self.samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"telemetry-{root_pid}", daemon=True)
        self._t0 = time.monotonic()

    def start(self) -> "Sampler":
        self._thread.start()
        return self

    def sample(self) -> Sample:
        """Take one sample now (also used for the memory snapshot at each eval)."""
        with self._lock:
            rss, cpu, pids = self.tree.read()
            gpu = self.gpu.read(pids) if self.gpu else {}
            s = Sample(t_s=round(time.monotonic() - self._t0, 3), rss_bytes=rss, cpu_percent=cpu, nprocs=len(pids), **gpu)
            self.samples.append(s)
            if self.out_path:
                with open(self.out_path, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(asdict(s)) + "\n")
        return s

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval_s)

    def stop(self) -> list[Sample]:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self.gpu:
            self.gpu.close()
        return self.samples


def read_samples(path: str | Path) -> list[Sample]:
    path = Path(path)
    if not path.is_file():
        return []
    return [Sample(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
