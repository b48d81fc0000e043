"""The machine facts that change floating-point results between machines.

PyTorch promises bitwise-equal results only on the same hardware, build and thread count. Stages that
compute with a model store :func:`machine_facts` in their metrics, so a reader of two differing locks sees
whether the CPU (and its SIMD dispatch), the torch build, the thread count or the dtype differ.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

# CPU flags that select different float kernels (x86 SIMD widths, FMA, half/bfloat16 units, ARM NEON/SVE).
FLOAT_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni",
               "amx_bf16", "amx_tile", "neon", "asimd", "sve")


def cpu_facts(cpuinfo: str | None = None) -> dict[str, Any]:
    """``{"cpu": model name, "isa": [flags of FLOAT_FLAGS present], "arch": machine}`` from /proc/cpuinfo."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    names, flags = [], set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and value.strip():
            names.append(value.strip())
        elif key in ("flags", "features"):
            flags.update(value.split())
    model = names[0] if names else (platform.processor() or "unknown")
    return {"cpu": model, "isa": [flag for flag in FLOAT_FLAGS if flag in flags], "arch": platform.machine()}


def machine_facts(model: Any = None, dtype: str | None = None) -> dict[str, Any]:
    """CPU model and float-relevant ISA flags, torch version, its CPU dispatch level and threads, the
    compute dtype and the device of ``model``'s first parameter (GPU name and CUDA version when on a GPU)."""
    import torch

    facts = cpu_facts()
    facts.update(torch=torch.__version__, cpu_capability=torch.backends.cpu.get_cpu_capability(),
                 threads=torch.get_num_threads(), dtype=dtype, python=platform.python_version())
    device = None
    if model is not None:
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None else None
    facts["device"] = str(device) if device is not None else "cpu"
    if device is not None and device.type == "cuda":
        facts.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                     capability=".".join(map(str, torch.cuda.get_device_capability(device))))
    return facts
