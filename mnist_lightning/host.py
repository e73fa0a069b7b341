"""Process-wide CPU settings that make training faster without changing what it computes.

`mnist-lightning` applies them at start; from Python, call `tune_host()` to have them
(see docs/speed.md for what each buys).
"""

from __future__ import annotations

import ctypes
import os
import sys

import torch

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3


def tune_host() -> None:
    """Flush denormals, keep freed memory for reuse, skip a failing per-step GPU probe
    (what each buys, measured on real MNIST batches: docs/speed.md).

    - Denormal floats are flushed to zero, as TensorFlow (the notebook's backend)
      does by default: max-pool's backward met them and slowed down.
    - glibc hands large freed buffers back to the kernel: those it mmapped (over
      128 KiB at first; it raises that threshold as it frees, so how often depends
      on the order of allocations) and heap beyond its trim threshold. Training
      steps then faulted fresh zeroed pages back in, thousands a step. Fixing the
      mmap threshold at its 32 MiB maximum and keeping up to 256 MiB of freed heap
      lets each step reuse the previous step's memory.
    - Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1, so that asking whether CUDA
      is available never poisons fork. Adam asks at every step; on a machine without
      NVIDIA's driver each answer first fails to load libnvidia-ml and then asks the
      CUDA runtime anyway. Without that library the NVML check has nothing to
      protect, so it is switched off.
    """
    torch.set_flush_denormal(True)
    if os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") == "1":
        try:
            ctypes.CDLL("libnvidia-ml.so.1")
        except OSError:
            del os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"]
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None)
            libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)
            libc.mallopt(M_TRIM_THRESHOLD, 256 << 20)
        except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt): nothing to tune
            pass
