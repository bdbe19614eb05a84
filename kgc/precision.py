"""Mixed precision chosen once per run: bf16 autocast on CPUs with AMX / AVX-512 bf16 units,
bf16 (or fp16 with loss scaling) on CUDA, fp32 elsewhere."""

from __future__ import annotations

import contextlib
import functools
import logging

import torch

from kgc.errors import ConfigError

log = logging.getLogger("kgc")


@functools.lru_cache(maxsize=1)
def _cpu_info() -> dict[str, str]:
    """The fields of the first processor in /proc/cpuinfo (empty when unreadable)."""
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                info[key.strip()] = value.strip()
    except OSError:
        pass
    return info


def cpu_bf16_flags() -> tuple[str, ...]:
    """The CPU flags that make bf16 matrix products fast (empty when none or unknown)."""
    return tuple(sorted(set(_cpu_info().get("flags", "").split()) & {"amx_bf16", "avx512_bf16"}))


def processor_name(device: torch.device) -> str:
    """The GPU's or CPU's model name, for reports: absolute speed depends on it and on its
    bf16 units (AMX, AVX-512 bf16)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return _cpu_info().get("model name", "unknown")


def resolve_precision(setting: str, device: torch.device) -> str:
    """Turn the ``precision`` setting (auto | fp32 | bf16 | fp16) into what this device will use."""
    if setting not in ("auto", "fp32", "bf16", "fp16"):
        raise ConfigError(f"precision must be auto, fp32, bf16 or fp16, got {setting!r}")
    if device.type == "cuda":
        if setting == "auto":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return setting
    if setting == "fp16":
        raise ConfigError("precision fp16 is only supported on CUDA; use bf16 or fp32 on CPU")
    if setting == "auto":
        return "bf16" if cpu_bf16_flags() else "fp32"
    return setting


def autocast(precision: str, device: torch.device):
    """The autocast context for a resolved precision (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """Loss scaling for fp16 on CUDA; a disabled scaler (a pass-through) otherwise."""
    return torch.amp.GradScaler(device.type, enabled=(precision == "fp16" and device.type == "cuda"))


def pick_device(name: str | None = None) -> torch.device:
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
