"""tune_host: what it changes in the process (malloc's reuse of freed buffers, the NVML probe)."""

import ctypes
import os
import subprocess
import sys

import pytest

from mnist_lightning.host import tune_host

HEAP = """
import ctypes, sys, torch
from mnist_lightning.host import tune_host
if sys.argv[1] == "tuned":
    tune_host()
class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Mallinfo2
before = libc.mallinfo2().hblkhd
buffer = torch.empty(20 << 20, dtype=torch.uint8)  # a large activation or gradient
mmapped = libc.mallinfo2().hblkhd - before
del buffer
print(mmapped, libc.mallinfo2().fordblks)
"""

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not hasattr(ctypes.CDLL(None), "mallinfo2"),
    reason="mallopt tuning is glibc-only (mallinfo2: glibc >= 2.33)",
)


def run(script: str, mode: str) -> list[float]:
    result = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, check=True)
    return [float(v) for v in result.stdout.split()]


@glibc
def test_tuned_malloc_keeps_freed_buffers_for_reuse():
    """What tune_host changes, deterministically: a fresh process mmaps a 20 MiB buffer and
    unmaps it when freed; tuned, the buffer comes from the heap and stays there, free."""
    mmapped, kept_free = run(HEAP, "default")
    assert mmapped >= 20 << 20 and kept_free < 20 << 20
    mmapped, kept_free = run(HEAP, "tuned")
    assert mmapped == 0 and kept_free >= 20 << 20


def test_failing_nvml_probe_is_switched_off(monkeypatch):
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
        pytest.skip("NVIDIA's driver library is present: the NVML check stays on")
    except OSError:
        pass
    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    tune_host()
    assert "PYTORCH_NVML_BASED_CUDA_CHECK" not in os.environ
