"""Telemetry the harness samples itself, the same way for every arm: host memory and CPU of the whole process
tree (psutil), and GPU memory, utilisation, power, energy, SM clock and clock-throttle reasons (pynvml).

Besides the sampled curve, the tree keeps each process's kernel high-water mark (``VmHWM`` in
/proc/<pid>/status: the exact peak resident set of that process up to the read, not a sample) and sorts the
processes into trainers and helpers (compile workers, multiprocessing children, torchrun's launcher). Each
sample also records what the rest of the machine did in its interval: system-wide busy CPU time minus the
tree's and the harness's own (``others_cpu_s``), the load average and the CPU frequency where readable
(harness/interference.py judges them).

One sampler thread per run writes a JSON line per sample to telemetry.jsonl. Fields that cannot be measured
are None, never 0: no pynvml or no GPU -> GPU fields None; a GPU without an energy counter -> energy None; a GPU
that vanishes mid-run (NVML "GPU is lost") -> its fields None from then on, and the run goes on.
GPU indices are NVML's, which equal CUDA's under CUDA_DEVICE_ORDER=PCI_BUS_ID (the runner sets it).
"""
from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from protocol.files import write_failure


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
    interval_s: float | None = None         # seconds since the previous sample (None for the first)
    others_cpu_s: float | None = None       # CPU seconds used in that interval outside the tree and the harness
    load1: float | None = None              # 1-minute load average (includes the run itself)
    cpu_freq_mhz: float | None = None       # current CPU frequency (psutil), None where not exposed
    gpu_other_procs: int | None = None      # processes outside the tree on the watched GPUs

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


HELPER_MARKS = ("compile_worker", "multiprocessing", "torch.distributed.run", "torchrun")


def is_helper(cmdline: list[str] | None) -> bool:
    """A process that serves the training rather than training itself: Inductor compile workers,
    multiprocessing children, torchrun's launcher, and anything not a Python interpreter (the C++ compiler
    Inductor runs, shells)."""
    if not cmdline:
        return True
    text = " ".join(cmdline)
    return "python" not in os.path.basename(cmdline[0]) or any(mark in text for mark in HELPER_MARKS)


def read_vm_hwm(pid: int) -> int | None:
    """The kernel's peak resident set of ``pid`` so far (VmHWM, bytes); None where /proc cannot tell."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


@dataclass
class ProcPeak:
    """One process's last-read high-water mark and CPU time."""
    pid: int
    helper: bool
    hwm_bytes: int | None = None
    cpu_s: float = 0.0


class ProcessTree:
    """psutil view of a root process and all its descendants, keeping Process objects so CPU % has a baseline,
    and every process ever seen with its high-water mark and CPU time (kept after it exits)."""

    def __init__(self, root_pid: int):
        self.root_pid = root_pid
        self._procs: dict[int, psutil.Process] = {}
        self.seen: dict[int, ProcPeak] = {}

    def cpu_seconds(self) -> float:
        """CPU time of every process of the tree ever seen (an exited one counts up to its last read)."""
        return sum(p.cpu_s for p in list(self.seen.values()))

    def peaks(self) -> tuple[int | None, int | None]:
        """(max VmHWM over trainer processes, max over helpers); None where none was read."""
        train = [p.hwm_bytes for p in self.seen.values() if not p.helper and p.hwm_bytes is not None]
        helper = [p.hwm_bytes for p in self.seen.values() if p.helper and p.hwm_bytes is not None]
        return (max(train) if train else None), (max(helper) if helper else None)

    def _note(self, p: psutil.Process) -> None:
        peak = self.seen.get(p.pid)
        if peak is None:
            peak = self.seen[p.pid] = ProcPeak(p.pid, is_helper(_quietly(p.cmdline)))
        hwm = read_vm_hwm(p.pid)
        if hwm is not None:
            peak.hwm_bytes = max(hwm, peak.hwm_bytes or 0)
        cpu_s = _cpu_with_reaped_children(p)
        if cpu_s is not None:
            peak.cpu_s = max(peak.cpu_s, cpu_s)

    def members(self) -> list[psutil.Process]:
        current = _live_tree(self.root_pid)
        for p in current:
            if p.pid not in self._procs:
                self._procs[p.pid] = p
                _quietly(p.cpu_percent)      # first call only sets the baseline
        self._procs = {p.pid: self._procs[p.pid] for p in current}
        return list(self._procs.values())

    def read(self) -> tuple[int | None, float | None, list[int]]:
        """(summed RSS, summed CPU %, pids) right now; (None, None, []) once the tree is gone."""
        procs = self.members()
        for p in procs:
            self._note(p)
        rss = [_quietly(lambda p=p: p.memory_info().rss) for p in procs]
        cpu = [_quietly(p.cpu_percent) for p in procs]
        rss = [r for r in rss if r is not None]
        cpu = [c for c in cpu if c is not None]
        return (sum(rss) if rss else None), (sum(cpu) if cpu else None), [p.pid for p in procs]


def tree_cpu_now(root_pid: int) -> float | None:
    """CPU seconds of a live process tree read now (each member with its reaped children); None once the root
    is gone."""
    procs = _live_tree(root_pid)
    if not procs:
        return None
    return sum(t for t in map(_cpu_with_reaped_children, procs) if t is not None)


def _live_tree(root_pid: int) -> list[psutil.Process]:
    """The root and all its descendants now; [] once the root is gone."""
    try:
        root = psutil.Process(root_pid)
        return [root] + root.children(recursive=True)
    except psutil.Error:
        return []


def _cpu_with_reaped_children(p: psutil.Process) -> float | None:
    """A process's CPU seconds with what its reaped children used: a compiler or other short-lived child that
    exits between two samples would otherwise read as another process's CPU (a child seen alive and then reaped
    counts twice at most once, which can only hide "others" for one interval)."""
    t = _quietly(p.cpu_times)
    return None if t is None else t.user + t.system + t.children_user + t.children_system


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

    def other_procs(self, pids: list[int]) -> int | None:
        """How many compute processes outside ``pids`` the watched GPUs run (None where NVML cannot list them)."""
        lists = [self._call(self.nvml.nvmlDeviceGetComputeRunningProcesses, h) for h in self.handles]
        if any(lst is None for lst in lists):
            return None
        return len({p.pid for lst in lists for p in lst} - set(pids))

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
                 gpus: list[int] | None = None, watch_gpus: bool = False, partner_cpu_s=None):
        self.tree = ProcessTree(root_pid)
        self.partner_cpu_s = partner_cpu_s    # CPU seconds of a partner arm's tree (lock-step), not "others"
        self.out_path = Path(out_path) if out_path else None
        self.interval_s = interval_s
        self.gpu, self.gpu_absent = None, "not watched (CPU budget)"
        if watch_gpus:
            try:
                self.gpu, self.gpu_absent = GpuProbe.open(gpus), None
            except GpuUnavailable as e:
                self.gpu_absent = str(e)
        self.samples: list[Sample] = []
        self.write_error: OSError | None = None   # writing telemetry.jsonl failed (a full disk): kept in memory only
        self.machine = MachineLoad()
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
            if self.gpu:
                gpu["gpu_other_procs"] = self.gpu.other_procs(pids)
            partner = self.partner_cpu_s() if self.partner_cpu_s else 0.0
            load = self.machine.read(self.tree.cpu_seconds() + partner)
            s = Sample(t_s=round(time.monotonic() - self._t0, 3), rss_bytes=rss, cpu_percent=cpu, nprocs=len(pids),
                       **gpu, **load)
            self.samples.append(s)
            if self.out_path and self.write_error is None:
                try:
                    with open(self.out_path, "a", encoding="utf-8") as fh:
                        fh.write(json.dumps(asdict(s)) + "\n")
                except OSError as e:
                    self.write_error = write_failure(self.out_path, e)
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


class MachineLoad:
    """What the rest of the machine does: system busy CPU time minus the run tree's and the harness's own, per
    interval between two reads, with the load average and the CPU frequency."""

    def __init__(self):
        self._me = psutil.Process()
        self._last: tuple[float, float, float, float] | None = None   # (t, busy, tree, harness)

    def read(self, tree_cpu_s: float) -> dict:
        now, busy, mine = time.monotonic(), _busy_cpu_s(), _quietly(self._me.cpu_times)
        harness = (mine.user + mine.system) if mine is not None else 0.0
        out = {"load1": _loadavg1(), "cpu_freq_mhz": _cpu_freq()}
        if self._last is not None and busy is not None:
            t0, busy0, tree0, harness0 = self._last
            others = (busy - busy0) - (tree_cpu_s - tree0) - (harness - harness0)
            out.update(interval_s=round(now - t0, 3), others_cpu_s=round(max(0.0, others), 3))
        if busy is not None:
            self._last = (now, busy, tree_cpu_s, harness)
        return out


def _busy_cpu_s() -> float | None:
    try:
        t = psutil.cpu_times()
    except (OSError, psutil.Error):
        return None
    return sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)


def _loadavg1() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def _cpu_freq() -> float | None:
    try:
        f = psutil.cpu_freq()
    except (OSError, NotImplementedError, psutil.Error, FileNotFoundError):
        return None
    return round(f.current, 1) if f and f.current else None


def read_samples(path: str | Path) -> list[Sample]:
    path = Path(path)
    if not path.is_file():
        return []
    names = set(Sample.__dataclass_fields__)
    return [Sample(**{k: v for k, v in json.loads(line).items() if k in names})
            for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
