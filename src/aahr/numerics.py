"""Pinned CPU numerics: the torch thread count and the CPU kernels every job uses, from params.yaml.

A float result depends on the order of its additions, and that order depends on how many threads
share a reduction and on which vector kernels run: ATen picks AVX2 or AVX512 kernels by processor,
MKL picks its own code path, oneDNN its own instruction set. So "seed 0" names one model only when
these are fixed. ``pin`` fixes them from the ``numerics`` section of params.yaml, for the process and
its children, before torch runs its first kernel:

    numerics.threads              torch intra-op threads (also OMP / MKL threads)
    numerics.aten_cpu_capability  ATEN_CPU_CAPABILITY: default, avx2, avx512 (null: the processor's best)
    numerics.mkl_cbwr             MKL_CBWR, MKL's conditional numerical reproducibility (e.g. AVX2)
    numerics.onednn_max_cpu_isa   ONEDNN_MAX_CPU_ISA (e.g. AVX2)

The `aahr` command calls ``pin`` before any stage runs, so Snakemake's ``--cores`` decides only how
many jobs run side by side, never what a job computes.
"""

from __future__ import annotations

import os
import sys

# params key -> environment variable (read by ATen, MKL and oneDNN at their first use)
KERNEL_VARIABLES = {
    "aten_cpu_capability": "ATEN_CPU_CAPABILITY",
    "mkl_cbwr": "MKL_CBWR",
    "onednn_max_cpu_isa": "ONEDNN_MAX_CPU_ISA",
}
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def environment(numerics: dict) -> dict[str, str]:
    """The environment variables that pin ``numerics`` (a params.yaml ``numerics`` section)."""
    env = {var: str(numerics[key]) for key, var in KERNEL_VARIABLES.items() if numerics.get(key) is not None}
    env.update({var: str(numerics["threads"]) for var in THREAD_VARIABLES})
    return env


def pin(numerics: dict) -> None:
    """Set the thread count and CPU kernels of this process (and of the processes it starts).

    torch reads the kernel variables at its first kernel, so this must run before any torch
    computation; if torch is already imported, its thread count is set directly."""
    os.environ.update(environment(numerics))
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(int(numerics["threads"]))


def pinned() -> dict:
    """What this process runs with (for a record): threads and the kernel variables as set."""
    state = {var: os.environ.get(var) for var in KERNEL_VARIABLES.values()}
    if "torch" in sys.modules:
        import torch

        state["threads"] = torch.get_num_threads()
        state["aten_capability_in_use"] = torch.backends.cpu.get_cpu_capability()
    return state
