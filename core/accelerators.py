"""Peak dense throughput per accelerator and dtype, and a training budget from a cluster.

Budget (the MFU definition of Chowdhery et al. 2022, PaLM appendix B, read backwards):

    flops = peak_FLOP/s × count × days × 86 400 s × MFU

``mfu`` is the Model FLOPs Utilisation you expect: 0.35-0.55 is typical of large dense training
(PaLM reports 46 %); ScaleScope's throughput probe measures it on your own device (table ``probes``).
Peaks are DENSE tensor-core numbers: vendors often print 2:4-sparsity numbers, twice as large, which
no dense training run can reach; each row below names the datasheet it was read from.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional

from core.errors import PlanError

SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class PeakThroughput:
    accelerator: str  # product name as the UI lists it ("H100 SXM")
    dtype: str  # matmul input precision: "bf16", "fp16", "fp8", "tf32", "int8"
    peak_tflops: float  # dense (no sparsity) tensor peak, 1e12 FLOP/s per chip
    source: str  # the datasheet or documentation page the number comes from


_NV_A100 = "NVIDIA A100 Tensor Core GPU datasheet (2021), SXM4; dense figures (sparsity doubles them)"
_NV_H100 = "NVIDIA H100 Tensor Core GPU datasheet (2023), H100 SXM; dense = half the 'with sparsity' figure"
_NV_H100_PCIE = "NVIDIA H100 Tensor Core GPU datasheet (2023), H100 PCIe; dense = half the sparsity figure"
_NV_H200 = "NVIDIA H200 Tensor Core GPU datasheet (2024), H200 SXM; dense = half the sparsity figure"
_NV_B200 = "NVIDIA HGX B200 datasheet (2024), per GPU at 1000 W; dense = half the sparsity figure"
_NV_GB200 = "NVIDIA GB200 NVL72 datasheet (2024), per Blackwell GPU; dense = half the sparsity figure"
_NV_V100 = "NVIDIA V100 Tensor Core GPU datasheet (2020), V100 SXM2 tensor performance"
_AMD_MI250X = "AMD Instinct MI250X data sheet (2021), peak BF16/FP16 matrix"
_AMD_MI300X = "AMD Instinct MI300X data sheet (2023), peak dense matrix (without sparsity)"
_AMD_MI325X = "AMD Instinct MI325X data sheet (2024), peak dense matrix (without sparsity)"
_TPU_V4 = "Google Cloud TPU v4 documentation (cloud.google.com/tpu/docs/v4), peak per chip"
_TPU_V5E = "Google Cloud TPU v5e documentation (cloud.google.com/tpu/docs/v5e), peak per chip"
_TPU_V5P = "Google Cloud TPU v5p documentation (cloud.google.com/tpu/docs/v5p), peak per chip"
_TPU_V6E = "Google Cloud TPU v6e (Trillium) documentation (cloud.google.com/tpu/docs/v6e), peak per chip"

PEAK_THROUGHPUT: tuple[PeakThroughput, ...] = (
    PeakThroughput("V100 SXM2", "fp16", 125.0, _NV_V100),
    PeakThroughput("A100 SXM", "bf16", 312.0, _NV_A100),
    PeakThroughput("A100 SXM", "fp16", 312.0, _NV_A100),
    PeakThroughput("A100 SXM", "tf32", 156.0, _NV_A100),
    PeakThroughput("A100 SXM", "int8", 624.0, _NV_A100),
    PeakThroughput("H100 SXM", "bf16", 989.5, _NV_H100),
    PeakThroughput("H100 SXM", "fp16", 989.5, _NV_H100),
    PeakThroughput("H100 SXM", "fp8", 1979.0, _NV_H100),
    PeakThroughput("H100 SXM", "tf32", 494.5, _NV_H100),
    PeakThroughput("H100 PCIe", "bf16", 756.5, _NV_H100_PCIE),
    PeakThroughput("H100 PCIe", "fp8", 1513.0, _NV_H100_PCIE),
    PeakThroughput("H200 SXM", "bf16", 989.5, _NV_H200),
    PeakThroughput("H200 SXM", "fp8", 1979.0, _NV_H200),
    PeakThroughput("B200", "bf16", 2250.0, _NV_B200),
    PeakThroughput("B200", "fp8", 4500.0, _NV_B200),
    PeakThroughput("GB200", "bf16", 2500.0, _NV_GB200),
    PeakThroughput("GB200", "fp8", 5000.0, _NV_GB200),
    PeakThroughput("MI250X", "bf16", 383.0, _AMD_MI250X),
    PeakThroughput("MI300X", "bf16", 1307.4, _AMD_MI300X),
    PeakThroughput("MI300X", "fp8", 2614.9, _AMD_MI300X),
    PeakThroughput("MI325X", "bf16", 1307.4, _AMD_MI325X),
    PeakThroughput("MI325X", "fp8", 2614.9, _AMD_MI325X),
    PeakThroughput("TPU v4", "bf16", 275.0, _TPU_V4),
    PeakThroughput("TPU v5e", "bf16", 197.0, _TPU_V5E),
    PeakThroughput("TPU v5e", "int8", 393.0, _TPU_V5E),
    PeakThroughput("TPU v5p", "bf16", 459.0, _TPU_V5P),
    PeakThroughput("TPU v5p", "int8", 918.0, _TPU_V5P),
    PeakThroughput("TPU v6e", "bf16", 918.0, _TPU_V6E),
    PeakThroughput("TPU v6e", "int8", 1836.0, _TPU_V6E),
)

_BY_KEY = {(r.accelerator.lower(), r.dtype): r for r in PEAK_THROUGHPUT}


def accelerators() -> list[str]:
    """Accelerator names in table order (each once)."""
    return list(dict.fromkeys(r.accelerator for r in PEAK_THROUGHPUT))


def dtypes(accelerator: str) -> list[str]:
    """The dtypes listed for ``accelerator`` (bf16 first where listed)."""
    names = [r.dtype for r in PEAK_THROUGHPUT if r.accelerator.lower() == accelerator.strip().lower()]
    if not names:
        raise PlanError(f"Unknown accelerator {accelerator!r}; choose one of: {', '.join(accelerators())}.")
    return names


def peak_row(accelerator: str, dtype: str = "bf16") -> PeakThroughput:
    """The table row for (``accelerator``, ``dtype``); PlanError saying what exists otherwise."""
    row = _BY_KEY.get((accelerator.strip().lower(), dtype.strip().lower()))
    if row is None:
        known = dtypes(accelerator)  # raises for an unknown accelerator
        raise PlanError(f"No {dtype!r} peak listed for {accelerator}; choose one of: {', '.join(known)}.")
    return row


def peak_tflops(accelerator: str, dtype: str = "bf16") -> float:
    """Dense peak in TFLOP/s (1e12 FLOP/s) per chip."""
    return peak_row(accelerator, dtype).peak_tflops


@dataclass(frozen=True)
class Budget:
    flops: float  # training FLOPs the cluster delivers: peak × count × seconds × MFU
    accelerator: str  # which chip ("custom" when a peak was given directly)
    dtype: str  # precision the peak is for
    peak_tflops: float  # dense peak per chip used in the product
    count: float  # number of chips
    days: float  # wall-clock training days
    mfu: float  # model FLOPs utilisation assumed (0 < mfu ≤ 1)
    accelerator_hours: float  # count × days × 24: what a cloud bill counts
    cost: Optional[float] = None  # accelerator_hours × price_per_hour, when a price was given
    source: str = ""  # where the peak comes from

    def to_dict(self) -> dict:
        return asdict(self)


def _positive(name: str, value, what_to_do: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise PlanError(f"{name} must be a number, got {value!r}; {what_to_do}.") from None
    if not math.isfinite(x) or x <= 0:
        raise PlanError(f"{name} must be a positive finite number, got {value!r}; {what_to_do}.")
    return x


def budget_from_accelerators(
    accelerator: str,
    count: float,
    days: float,
    mfu: float,
    dtype: str = "bf16",
    price_per_hour: Optional[float] = None,
    peak_tflops_override: Optional[float] = None,
) -> Budget:
    """Training FLOPs (and optionally cost) of ``count`` chips running ``days`` days at ``mfu``.

    flops = peak × 1e12 × count × days × 86 400 × mfu (PaLM appendix B's MFU, solved for FLOPs).
    ``peak_tflops_override`` plans for a chip the table lacks (``accelerator`` is then only a label).
    ``price_per_hour`` is per accelerator-hour; cost = count × days × 24 × price.
    """
    count = _positive("Accelerator count", count, "give how many chips train the model, e.g. 1024")
    days = _positive("Training days", days, "give the wall-clock duration in days, e.g. 30")
    mfu = _positive("MFU", mfu, "give the utilisation as a fraction, e.g. 0.4 for 40 %")
    if mfu > 1.0:
        raise PlanError(f"MFU {mfu:g} is above 1; give it as a fraction of peak, e.g. 0.4 for 40 %.")
    if peak_tflops_override is not None:
        peak = _positive("Peak TFLOP/s", peak_tflops_override, "give the chip's dense peak, e.g. 989")
        name, source, dtype_used = (accelerator or "custom"), "user-supplied peak", dtype
    else:
        row = peak_row(accelerator, dtype)
        peak, name, source, dtype_used = row.peak_tflops, row.accelerator, row.source, row.dtype
    hours = count * days * 24.0
    cost = None
    if price_per_hour is not None:
        price = float(price_per_hour)
        if not math.isfinite(price) or price < 0:
            raise PlanError(f"Price per accelerator-hour must be ≥ 0, got {price_per_hour!r}; e.g. 2.5.")
        cost = hours * price
    return Budget(
        flops=peak * 1e12 * count * days * SECONDS_PER_DAY * mfu,
        accelerator=name,
        dtype=dtype_used,
        peak_tflops=peak,
        count=count,
        days=days,
        mfu=mfu,
        accelerator_hours=hours,
        cost=cost,
        source=source,
    )


def days_for_flops(flops: float, accelerator: str, count: float, mfu: float, dtype: str = "bf16") -> float:
    """Wall-clock days ``count`` chips at ``mfu`` need for ``flops`` (the inverse of the budget)."""
    flops = _positive("Budget", flops, "give a training budget in FLOPs, e.g. 1e23")
    one_day = budget_from_accelerators(accelerator, count, 1.0, mfu, dtype).flops
    return flops / one_day
