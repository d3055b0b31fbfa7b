"""A fake ``pynvml`` for machines without a GPU: the real module's API shape over simulated devices.

Only the functions that talk to the driver are faked; the exception classes (``NVMLError``, which maps an error
value to its subclass such as ``NVMLError_NotSupported``) and the constants (``NVML_CLOCK_SM``, the
``NVML_ERROR_*`` values) are the installed nvidia-ml-py's own, so code under test catches exactly what it would
catch on a GPU. Every faked function keeps the real one's name and parameter names (tests/test_fake_nvml.py checks
this against the installed module). Like the real library, a device call before ``nvmlInit`` raises
``NVMLError_Uninitialized``, and ``nvmlInit``/``nvmlShutdown`` are reference-counted.

Install it with ``monkeypatch.setitem(sys.modules, "pynvml", FakeNvml([FakeGpu()]))``.
"""
from __future__ import annotations

import types
from dataclasses import dataclass, field

import pynvml as real

# The functions faked here: the driver-facing calls harness telemetry and provenance make.
FUNCTIONS = ("nvmlInit", "nvmlShutdown", "nvmlSystemGetDriverVersion", "nvmlDeviceGetCount",
             "nvmlDeviceGetHandleByIndex", "nvmlDeviceGetName", "nvmlDeviceGetMemoryInfo",
             "nvmlDeviceGetUtilizationRates", "nvmlDeviceGetPowerUsage", "nvmlDeviceGetTotalEnergyConsumption",
             "nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetClockInfo",
             "nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons")


@dataclass
class FakeGpu:
    """One simulated device. ``unsupported`` names functions that raise NotSupported on it; ``lost`` makes every
    call on it raise "GPU is lost" (as when a GPU falls off the bus mid-run)."""
    name: str = "NVIDIA H100 80GB HBM3"
    memory_total: int = 80 * 2**30
    memory_used: int = 3 * 2**30
    util_percent: int = 97
    power_mw: int = 650_000
    energy_mj: int = 5_000_000            # since the driver loaded
    energy_step_mj: int = 650             # added at each read: the counter only grows
    sm_clock_mhz: int = 1980
    reasons: int = 0                      # clock-event reason bits
    processes: list[tuple[int, int | None]] = field(default_factory=list)  # (pid, usedGpuMemory or None)
    unsupported: set[str] = field(default_factory=set)
    lost: bool = False


class FakeNvml(types.ModuleType):
    """Stands in for the ``pynvml`` module. ``calls`` lists the names of the functions called, in order."""

    def __init__(self, gpus: list[FakeGpu], driver: bool = True, driver_version: str = "580.159.04",
                 event_reasons: bool = True):
        super().__init__("pynvml")
        self.gpus, self.driver, self.driver_version = gpus, driver, driver_version
        self.calls: list[str] = []
        self.init_count = 0
        for name in dir(real):  # the real module's exception classes and constants
            if name.startswith(("NVMLError", "NVML_", "nvmlClocks")):
                setattr(self, name, getattr(real, name))
        # an older nvidia-ml-py has only the ...ThrottleReasons spelling: the newer name is then absent
        self._hidden = set() if event_reasons else {"nvmlDeviceGetCurrentClocksEventReasons"}

    def __getattribute__(self, name):
        if name in object.__getattribute__(self, "__dict__").get("_hidden", ()):
            raise AttributeError(f"module 'pynvml' has no attribute {name!r}")
        return object.__getattribute__(self, name)

    # --- library -------------------------------------------------------------------------------------------
    def nvmlInit(self):
        self.calls.append("nvmlInit")
        if not self.driver:
            raise real.NVMLError(real.NVML_ERROR_LIBRARY_NOT_FOUND)
        self.init_count += 1

    def nvmlShutdown(self):
        self.calls.append("nvmlShutdown")
        self._initialised()
        self.init_count -= 1

    def nvmlSystemGetDriverVersion(self):
        self.calls.append("nvmlSystemGetDriverVersion")
        self._initialised()
        return self.driver_version

    def nvmlDeviceGetCount(self):
        self.calls.append("nvmlDeviceGetCount")
        self._initialised()
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index):
        self.calls.append("nvmlDeviceGetHandleByIndex")
        self._initialised()
        if not 0 <= index < len(self.gpus):
            raise real.NVMLError(real.NVML_ERROR_INVALID_ARGUMENT)
        if self.gpus[index].lost:
            raise real.NVMLError(real.NVML_ERROR_GPU_IS_LOST)
        return self.gpus[index]          # the handle is opaque to callers; here it is the device itself

    # --- device readings -----------------------------------------------------------------------------------
    def nvmlDeviceGetName(self, handle):
        return self._read("nvmlDeviceGetName", handle).name

    def nvmlDeviceGetMemoryInfo(self, handle, version=None):
        g = self._read("nvmlDeviceGetMemoryInfo", handle)
        return types.SimpleNamespace(total=g.memory_total, used=g.memory_used, free=g.memory_total - g.memory_used)

    def nvmlDeviceGetUtilizationRates(self, handle):
        return types.SimpleNamespace(gpu=self._read("nvmlDeviceGetUtilizationRates", handle).util_percent, memory=40)

    def nvmlDeviceGetPowerUsage(self, handle):
        return self._read("nvmlDeviceGetPowerUsage", handle).power_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        g = self._read("nvmlDeviceGetTotalEnergyConsumption", handle)
        g.energy_mj += g.energy_step_mj
        return g.energy_mj

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        g = self._read("nvmlDeviceGetComputeRunningProcesses", handle)
        return [types.SimpleNamespace(pid=pid, usedGpuMemory=used, gpuInstanceId=0xFFFFFFFF,
                                      computeInstanceId=0xFFFFFFFF) for pid, used in g.processes]

    def nvmlDeviceGetClockInfo(self, handle, type):
        g = self._read("nvmlDeviceGetClockInfo", handle)
        if type != real.NVML_CLOCK_SM:
            raise real.NVMLError(real.NVML_ERROR_NOT_SUPPORTED)
        return g.sm_clock_mhz

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle):
        return self._read("nvmlDeviceGetCurrentClocksEventReasons", handle).reasons

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle):
        return self._read("nvmlDeviceGetCurrentClocksThrottleReasons", handle).reasons

    # --- helpers -------------------------------------------------------------------------------------------
    def _initialised(self):
        if self.init_count <= 0:
            raise real.NVMLError(real.NVML_ERROR_UNINITIALIZED)

    def _read(self, name: str, handle: FakeGpu) -> FakeGpu:
        self.calls.append(name)
        self._initialised()
        if handle.lost:
            raise real.NVMLError(real.NVML_ERROR_GPU_IS_LOST)
        if name in handle.unsupported:
            raise real.NVMLError(real.NVML_ERROR_NOT_SUPPORTED)
        return handle
