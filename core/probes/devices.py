"""Which device a probe runs on, and in which precision: cuda > mps > cpu.

cuda trains under bf16 autocast (weights and optimizer state stay fp32, matmuls run in bf16 on the
tensor cores); mps and cpu run plain fp32 (CPU bf16 matmuls are slower than fp32 on most cores and
mps autocast coverage is partial). The choice is recorded with every result.

Under torchrun (core.probes.distributed.session) each process uses cuda:LOCAL_RANK (the session
sets it as the current device, so "auto" and "cuda" resolve to it), and "auto" means cpu when the
job runs on gloo: the process group's backend decides where tensors may live.
"""
from __future__ import annotations

import contextlib
import os
import platform
from dataclasses import dataclass

import torch

from core.errors import ProbeError

KNOWN = ("auto", "cuda", "mps", "cpu")


@dataclass(frozen=True)
class DeviceChoice:
    kind: str  # "cuda" | "mps" | "cpu": the family, for tables and peak look-ups
    device: str  # torch device string, e.g. "cuda:0"
    dtype: str  # compute precision: "bf16" (autocast) or "fp32"
    name: str  # what the hardware is, e.g. "NVIDIA H100 80GB HBM3" or the CPU model
    threads: int  # torch intra-op threads (CPU work) at the time of the choice

    def as_dict(self) -> dict:
        return {"kind": self.kind, "device": self.device, "dtype": self.dtype, "name": self.name,
                "threads": self.threads, "torch": torch.__version__}


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def _gloo_job() -> bool:
    """Whether this process is part of an initialised gloo (CPU) process group."""
    import torch.distributed as dist

    return bool(dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
                and str(dist.get_backend()) == "gloo")


def memory_bytes(choice: "DeviceChoice"):
    """The device's memory in bytes: the GPU's total, mps's recommended maximum, or the machine's
    physical RAM for cpu; None when it cannot be read."""
    try:
        if choice.kind == "cuda":
            return int(torch.cuda.get_device_properties(torch.device(choice.device)).total_memory)
        if choice.kind == "mps":
            return int(torch.mps.recommended_max_memory())
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError, RuntimeError):
        return None


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else platform.processor()."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def pick_device(requested: str = "auto") -> DeviceChoice:
    """Resolve ``requested`` ("auto", "cuda", "cuda:N", "mps" or "cpu") to a DeviceChoice.

    "auto" takes the first of cuda > mps > cpu that is present. Asking for a device that is
    absent or unknown raises ProbeError before any work starts.
    """
    req = (requested or "auto").strip().lower()
    family = req.split(":", 1)[0]
    if family not in KNOWN or (":" in req and family != "cuda"):
        raise ProbeError(f"Unknown device {requested!r}; use one of auto, cuda, cuda:N, mps or cpu.")
    if family == "auto":
        family = "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
        if family != "cpu" and _gloo_job():
            family = "cpu"
        req = family
    threads = torch.get_num_threads()
    if family == "cuda":
        if not torch.cuda.is_available():
            raise ProbeError("Device 'cuda' was asked for but torch sees no CUDA GPU; use device auto or cpu.")
        index = int(req.split(":", 1)[1]) if ":" in req else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise ProbeError(f"Device cuda:{index} does not exist (this machine has "
                             f"{torch.cuda.device_count()} GPUs); pick an index below that.")
        dtype = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        return DeviceChoice("cuda", f"cuda:{index}", dtype, torch.cuda.get_device_name(index), threads)
    if family == "mps":
        if not _mps_available():
            raise ProbeError("Device 'mps' was asked for but this machine has no Apple GPU; use auto or cpu.")
        return DeviceChoice("mps", "mps", "fp32", "Apple GPU (mps)", threads)
    return DeviceChoice("cpu", "cpu", "fp32", cpu_name(), threads)


def autocast(choice: DeviceChoice):
    """The precision context for forward passes: bf16 autocast on cuda, nothing elsewhere."""
    if choice.dtype == "bf16":
        return torch.autocast(device_type=choice.kind, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def synchronize(choice: DeviceChoice) -> None:
    """Wait for queued kernels, so wall-clock timings measure finished work."""
    if choice.kind == "cuda":
        torch.cuda.synchronize(choice.device)
    elif choice.kind == "mps":
        torch.mps.synchronize()
