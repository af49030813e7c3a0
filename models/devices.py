"""Where and in what precision models run: the one place a device name and bfloat16 use are decided.

* :func:`resolve_device` - ``"auto"`` -> ``"cuda"`` when torch sees a GPU, else ``"cpu"``; a CUDA device
  asked for on a machine without one is refused with a clear message.
* :func:`bf16_supported` / :func:`cpu_has_avx512_bf16` - whether bfloat16 matrix work is fast here.
* :func:`autocast` - the forward pass's precision context (``"auto"``, ``"bf16"`` or ``"fp32"``).
* :func:`fp32_scoring_head` - keep a scoring head in float32 inside a bf16 autocast.

torch is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
from typing import Any

from xlir.errors import UserError

#: The precisions a forward pass can run in ("auto" = bf16 where it is fast, else fp32).
PRECISIONS = ("auto", "bf16", "fp32")


class DeviceError(UserError, ValueError):
    """A device or precision was asked for that this machine or xlir cannot provide."""


def resolve_device(device: str | None = "auto") -> str:
    """``None`` / ``""`` / ``"auto"`` -> ``"cuda"`` when torch sees a GPU, else ``"cpu"``; anything else is
    checked (a CUDA device needs a visible GPU) and kept."""
    if device in (None, "", "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {device!r} was asked for but torch sees no CUDA GPU; use 'auto' or 'cpu'."
            )
    return device


def bf16_supported(device: str) -> bool:
    """Whether bfloat16 matrix work is fast on ``device``: a CUDA GPU, or a CPU with AMX/AVX512-BF16 tiles."""
    import torch

    if str(device).startswith("cuda"):
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    is_amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(is_amx and is_amx()) or cpu_has_avx512_bf16()


def cpu_has_avx512_bf16() -> bool:
    """Whether this (Linux) CPU has the AVX512-BF16 instructions (measured on an AMD EPYC that has them but no
    AMX tiles: bf16 autocast 1.7-2x faster than float32)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return "avx512_bf16" in line.split()
    except OSError:
        return False
    return False


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else :class:`DeviceError`."""
    if precision not in PRECISIONS:
        raise DeviceError(f"precision must be 'auto', 'bf16' or 'fp32', got {precision!r}")
    return precision


def autocast(device: str, precision: str = "auto") -> Any:
    """The forward pass's precision: ``"bf16"`` autocast, ``"fp32"``, or ``"auto"`` (bf16 where fast).

    Only the matrix products run in bfloat16 (torch autocast); weights stay float32.
    """
    import torch

    check_precision(precision)
    use = precision == "bf16" or (precision == "auto" and bf16_supported(device))
    if not use:
        return contextlib.nullcontext()
    return torch.autocast("cuda" if str(device).startswith("cuda") else "cpu", dtype=torch.bfloat16)


def fp32_scoring_head(module: Any) -> None:
    """Run ``module`` (a scoring head) in float32 even inside a bf16 autocast.

    bfloat16 keeps 8 bits of mantissa: head outputs of 4.03 and 4.05 are the same bf16 number, and close
    candidates would tie. The encoder's last layer norm already runs in float32 under autocast, so a float32
    head restores the scores' resolution at no measurable cost.
    """
    import torch

    if module is None or getattr(module, "_xlir_fp32", False):
        return
    forward = module.forward

    def fp32(value: Any) -> Any:
        return value.float() if torch.is_tensor(value) and value.is_floating_point() else value

    def forward_fp32(*args: Any, **kwargs: Any) -> Any:
        with torch.autocast("cpu", enabled=False), torch.autocast("cuda", enabled=False):
            return forward(*(fp32(a) for a in args), **{k: fp32(v) for k, v in kwargs.items()})

    module.forward = forward_fp32
    module._xlir_fp32 = True
