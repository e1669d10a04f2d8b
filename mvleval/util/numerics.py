"""Portable CPU numerics: run torch's, MKL's and oneDNN's AVX2 code paths on any x86-64 CPU, for results that are the
same bits on AVX2 and AVX-512 machines.

Training a model for many steps amplifies last-bit differences between instruction sets: the demo's fine-tuned model
scored xFlickrCo zh CIDEr 82.0 on one CPU and 68.5 on another with the same seed. Measured here (bench/README.md,
docs/ci.md): with the three settings below, an AVX-512 machine reproduces an AVX2-only machine's demo (emulated with
ATEN_CPU_CAPABILITY=avx2, MKL_ENABLE_INSTRUCTIONS=AVX2, ONEDNN_MAX_CPU_ISA=AVX2) byte for byte, training included.

The variables are read when torch's kernels, MKL and oneDNN first run, so :func:`pin_portable_cpu_kernels` must be
called before torch is imported; it refuses to run afterwards rather than silently having no effect.
"""

from __future__ import annotations

import os
import sys

#: The settings, as environment variables: torch's vectorised kernels, MKL's conditional numerical reproducibility
#: branch and oneDNN's highest instruction set, all at AVX2 (the newest set every x86-64 server of the last decade has).
PORTABLE_CPU_KERNELS: dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "AVX2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}


def pin_portable_cpu_kernels() -> str:
    """Set PORTABLE_CPU_KERNELS in this process's environment (a value the user set already is kept).

    Returns:
        A description for the run record, e.g. "ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=AVX2 ONEDNN_MAX_CPU_ISA=AVX2".

    Raises:
        RuntimeError: torch is already imported (the settings would silently not apply).
    """
    if "torch" in sys.modules:
        raise RuntimeError("pin_portable_cpu_kernels() must run before torch is imported")
    for name, value in PORTABLE_CPU_KERNELS.items():
        os.environ.setdefault(name, value)
    return describe_cpu_kernels()


def describe_cpu_kernels() -> str:
    """The kernel settings in force for this process ("" when none of PORTABLE_CPU_KERNELS' variables is set)."""
    return " ".join(f"{name}={os.environ[name]}" for name in PORTABLE_CPU_KERNELS if os.environ.get(name))
