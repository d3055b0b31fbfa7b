"""GPU telemetry against a fake NVML of the real pynvml's API shape (tests/fake_nvml.py): every NVML call the
harness makes, NotSupported counters, a driver that is absent, and a GPU that vanishes mid-run."""
from __future__ import annotations

import inspect
import os
import re
import sys
import time
from pathlib import Path

import pynvml as real_pynvml
import pytest

from harness import provenance
from harness.telemetry import THROTTLE_REASONS, GpuProbe, GpuUnavailable, Sampler, read_samples, throttle_reason_names
from tests.fake_nvml import FUNCTIONS, FakeGpu, FakeNvml

ROOT = Path(__file__).resolve().parent.parent
GIB = 2**30


@pytest.fixture
def install(monkeypatch):
    """Install a FakeNvml as the pynvml module and return it."""
    def _install(gpus, **kw) -> FakeNvml:
        fake = FakeNvml(gpus, **kw)
        monkeypatch.setitem(sys.modules, "pynvml", fake)
        return fake
    return _install


NVML_CALL = re.compile(r"\b(nvml(?:Init|Shutdown|Device[A-Z]\w+|System[A-Z]\w+))\b")


def nvml_calls_in(path: Path) -> set[str]:
    return set(NVML_CALL.findall(path.read_text(encoding="utf-8")))


# --- the fake is the real API's shape --------------------------------------------------------------------------

def test_fake_functions_have_the_real_pynvml_names_and_parameters():
    for name in FUNCTIONS:
        real_params = list(inspect.signature(getattr(real_pynvml, name)).parameters)
        fake_params = list(inspect.signature(getattr(FakeNvml([]), name)).parameters)
        assert fake_params == real_params, name


def test_fake_errors_are_the_real_classes_mapped_from_their_values():
    fake = FakeNvml([FakeGpu(unsupported={"nvmlDeviceGetPowerUsage"})])
    fake.nvmlInit()
    with pytest.raises(real_pynvml.NVMLError_NotSupported) as e:
        fake.nvmlDeviceGetPowerUsage(fake.nvmlDeviceGetHandleByIndex(0))
    assert isinstance(e.value, real_pynvml.NVMLError) and e.value.value == real_pynvml.NVML_ERROR_NOT_SUPPORTED
    assert fake.NVMLError is real_pynvml.NVMLError and fake.NVML_CLOCK_SM == real_pynvml.NVML_CLOCK_SM


def test_a_device_call_before_init_is_uninitialised_as_in_the_real_library():
    fake = FakeNvml([FakeGpu()])
    with pytest.raises(real_pynvml.NVMLError_Uninitialized):
        fake.nvmlDeviceGetCount()


def test_every_nvml_call_the_harness_makes_is_faked_and_exists_in_the_real_module():
    used = nvml_calls_in(ROOT / "harness" / "telemetry.py") | nvml_calls_in(ROOT / "harness" / "provenance.py")
    assert used and used <= set(FUNCTIONS), sorted(used - set(FUNCTIONS))
    assert all(callable(getattr(real_pynvml, name)) for name in used)


def test_a_sampler_run_exercises_every_nvml_call_telemetry_makes(install):
    fake = install([FakeGpu(processes=[(os.getpid(), GIB)])])
    sampler = Sampler(os.getpid(), None, watch_gpus=True, gpus=[0])
    sampler.sample()
    names = sampler.gpu.names()
    sampler.stop()
    assert names == ["NVIDIA H100 80GB HBM3"]
    used = nvml_calls_in(ROOT / "harness" / "telemetry.py") - {"nvmlDeviceGetCurrentClocksThrottleReasons"}
    assert used <= set(fake.calls), sorted(used - set(fake.calls))   # the older spelling: next test
    assert fake.init_count == 0                                        # shut down as often as initialised


def test_an_older_pynvml_without_clock_event_reasons_reads_the_throttle_reasons(install):
    fake = install([FakeGpu(reasons=0x4)], event_reasons=False)
    probe = GpuProbe.open([0])
    reading = probe.read(pids=[])
    probe.close()
    assert reading["gpu_throttle_reasons"] == 0x4
    assert "nvmlDeviceGetCurrentClocksThrottleReasons" in fake.calls


# --- readings --------------------------------------------------------------------------------------------------

def test_probe_reads_device_and_process_memory_utilisation_power_energy_clock_and_reasons(install):
    gpu = FakeGpu(memory_used=7 * GIB, util_percent=88, power_mw=612_500, energy_step_mj=2_000, sm_clock_mhz=1755,
                  reasons=0x4 | 0x1, processes=[(111, 5 * GIB), (222, GIB), (999, 4 * GIB)])
    install([gpu])
    probe = GpuProbe.open([0])
    reading = probe.read(pids=[111, 222])
    probe.close()
    assert reading == dict(gpu_mem_used_bytes=7 * GIB, gpu_proc_mem_bytes=6 * GIB, gpu_util_percent=88.0,
                           gpu_power_w=612.5, gpu_energy_j=2.0, gpu_sm_clock_mhz=1755.0, gpu_throttle_reasons=0x5)


def test_two_gpus_sum_memory_and_power_average_utilisation_and_clock_and_or_their_reasons(install):
    install([FakeGpu(memory_used=GIB, util_percent=100, power_mw=500_000, sm_clock_mhz=2000, reasons=0x4),
             FakeGpu(memory_used=2 * GIB, util_percent=50, power_mw=300_000, sm_clock_mhz=1000, reasons=0x20)])
    probe = GpuProbe.open([0, 1])
    r = probe.read(pids=[])
    probe.close()
    assert (r["gpu_mem_used_bytes"], r["gpu_power_w"], r["gpu_util_percent"]) == (3 * GIB, 800.0, 75.0)
    assert (r["gpu_sm_clock_mhz"], r["gpu_throttle_reasons"]) == (1500.0, 0x24)


def test_process_memory_is_none_when_nvml_hides_it_or_the_tree_has_no_process_on_the_gpu(install):
    install([FakeGpu(processes=[(111, None), (999, GIB)])])   # None: what pynvml gives when the value is unavailable
    probe = GpuProbe.open([0])
    assert probe.read(pids=[111])["gpu_proc_mem_bytes"] is None
    assert probe.read(pids=[5])["gpu_proc_mem_bytes"] is None
    probe.close()


@pytest.mark.parametrize("function, field", [
    ("nvmlDeviceGetMemoryInfo", "gpu_mem_used_bytes"),
    ("nvmlDeviceGetComputeRunningProcesses", "gpu_proc_mem_bytes"),
    ("nvmlDeviceGetUtilizationRates", "gpu_util_percent"),
    ("nvmlDeviceGetPowerUsage", "gpu_power_w"),
    ("nvmlDeviceGetTotalEnergyConsumption", "gpu_energy_j"),
    ("nvmlDeviceGetClockInfo", "gpu_sm_clock_mhz"),
    ("nvmlDeviceGetCurrentClocksEventReasons", "gpu_throttle_reasons"),
])
def test_a_not_supported_counter_reads_as_none_and_the_others_still_read(install, function, field):
    install([FakeGpu(unsupported={function}, processes=[(111, GIB)])])
    probe = GpuProbe.open([0])
    reading = probe.read(pids=[111])
    probe.close()
    assert reading[field] is None
    assert all(v is not None for k, v in reading.items() if k != field), reading


def test_one_gpu_without_a_counter_makes_the_sum_unknown_not_partial(install):
    install([FakeGpu(), FakeGpu(unsupported={"nvmlDeviceGetPowerUsage"})])
    probe = GpuProbe.open([0, 1])
    assert probe.read(pids=[])["gpu_power_w"] is None
    probe.close()


def test_an_energy_counter_that_goes_backwards_reads_as_none_not_negative(install):
    gpu = FakeGpu()
    install([gpu])
    probe = GpuProbe.open([0])
    gpu.energy_mj = 0          # the driver reloaded: its counter restarted
    assert probe.read(pids=[])["gpu_energy_j"] is None
    probe.close()


# --- absence and loss ------------------------------------------------------------------------------------------

def test_no_driver_library_is_gpu_unavailable_with_the_nvml_reason(install):
    install([FakeGpu()], driver=False)
    with pytest.raises(GpuUnavailable, match="NVML Shared Library Not Found"):
        GpuProbe.open([0])


def test_a_gpu_lost_before_its_handle_is_opened_is_gpu_unavailable_and_nvml_is_shut_down(install):
    fake = install([FakeGpu(lost=True)])
    with pytest.raises(GpuUnavailable) as e:
        GpuProbe.open([0])
    assert "GPU is lost" in str(e.value) and "\n" not in str(e.value)
    assert fake.init_count == 0


def test_an_index_beyond_the_devices_is_gpu_unavailable_and_nvml_is_shut_down(install):
    fake = install([FakeGpu()])
    with pytest.raises(GpuUnavailable, match=r"not among the 1 NVML devices"):
        GpuProbe.open([3])
    assert fake.init_count == 0


def test_a_lost_gpu_is_named_unknown_instead_of_failing(install):
    gpu = FakeGpu()
    install([gpu])
    probe = GpuProbe.open([0])
    gpu.lost = True
    assert probe.names() == ["unknown GPU"]
    probe.close()


def test_a_gpu_that_vanishes_mid_run_reads_as_none_and_sampling_goes_on(install, tmp_path):
    gpu = FakeGpu(processes=[(os.getpid(), GIB)])
    install([gpu])
    sampler = Sampler(os.getpid(), tmp_path / "telemetry.jsonl", interval_s=0.02, watch_gpus=True, gpus=[0]).start()
    deadline = time.monotonic() + 5
    while len(sampler.samples) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    gpu.lost = True
    n_before = len(sampler.samples)
    while len(sampler.samples) < n_before + 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    samples = sampler.stop()
    before, after = samples[:3], samples[n_before + 1:]
    assert all(s.gpu_mem_used_bytes == gpu.memory_used and s.gpu_proc_mem_bytes == GIB for s in before)
    assert after and all(s.gpu_mem_used_bytes is None and s.gpu_power_w is None and s.gpu_energy_j is None
                         and s.gpu_sm_clock_mhz is None and s.gpu_throttle_reasons is None for s in after)
    assert all(s.rss_bytes for s in after)                # host telemetry unaffected
    assert read_samples(tmp_path / "telemetry.jsonl") == samples


# --- reasons and driver --------------------------------------------------------------------------------------

def test_throttle_reason_bits_are_nvmls_own():
    for bit, name in THROTTLE_REASONS.items():
        camel = "".join(w.capitalize() for w in name.split("_"))
        assert getattr(real_pynvml, f"nvmlClocksThrottleReason{camel}") == bit, name
    assert throttle_reason_names(0x4 | 0x40 | 0x8000) == ["sw_power_cap", "hw_thermal_slowdown", "0x8000"]
    assert throttle_reason_names(0) == throttle_reason_names(None) == []


def test_provenance_reads_the_driver_version_and_none_without_a_driver(install):
    fake = install([FakeGpu()], driver_version="580.159.04")
    assert provenance.driver_version() == "580.159.04" and fake.init_count == 0
    install([FakeGpu()], driver=False)
    assert provenance.driver_version() is None
