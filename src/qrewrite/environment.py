"""What a run ran on: package versions, the CPU (model, vector extensions, the kernels torch picked)
and thread counts. The same seed gives a different model on another CPU or package set (float sums
change with the kernels and the thread count), so every run records this beside its figures: in
MLflow (tags ``env.*`` and ``environment.json``) and in the evaluation report.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

# The packages whose versions change what is computed, in the order a reader looks for them
PACKAGES = (
    "qrewrite",
    "torch",
    "transformers",
    "trl",
    "peft",
    "tokenizers",
    "datasets",
    "numpy",
    "pandas",
    "pyarrow",
    "duckdb",
    "scikit-learn",
    "scipy",
    "sentence-transformers",
    "bm25s",
    "ranx",
    "mlflow",
    "kfp",
)
# Vector extensions that pick different float kernels (and so different last bits)
CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile")
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "ATEN_CPU_CAPABILITY",
    "NPY_ENABLE_CPU_FEATURES",
    "NPY_DISABLE_CPU_FEATURES",
    "OPENBLAS_CORETYPE",
)


@dataclass(frozen=True)
class Environment:
    python: str
    platform: str
    cpu_model: str
    cpu_flags: list[str]
    cpus: int
    torch_threads: int | None
    torch_cpu_capability: str | None
    gpu: str | None
    thread_variables: dict[str, str] = field(default_factory=dict)
    packages: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    def tags(self) -> dict[str, str]:
        """Flat MLflow tags (``env.*``), each short enough for a tag value."""
        out = {
            "env.python": self.python,
            "env.cpu_model": self.cpu_model,
            "env.cpu_flags": ",".join(self.cpu_flags),
            "env.cpus": str(self.cpus),
            "env.torch_threads": str(self.torch_threads),
            "env.torch_cpu_capability": str(self.torch_cpu_capability),
            "env.gpu": str(self.gpu),
        }
        out.update({f"env.pkg.{k}": v for k, v in self.packages.items()})
        return out

    def summary(self) -> str:
        """One line: the CPU, threads and the versions that matter most."""
        pkgs = ", ".join(
            f"{k} {self.packages[k]}"
            for k in ("torch", "transformers", "trl", "numpy")
            if k in self.packages
        )
        return (
            f"{self.cpu_model} ({self.cpus} CPUs, {'/'.join(self.cpu_flags) or 'no AVX'}; "
            f"torch {self.torch_cpu_capability} kernels, {self.torch_threads} threads"
            f"{'; GPU ' + self.gpu if self.gpu else ''}); {pkgs}"
        )


def process_rank() -> int:
    """This process's rank in a distributed run (torchrun sets ``$RANK``); 0 when alone."""
    return int(os.environ.get("RANK") or 0)


def world_size() -> int:
    """How many processes train together (torchrun sets ``$WORLD_SIZE``); 1 when alone."""
    return int(os.environ.get("WORLD_SIZE") or 1)


def is_main_process() -> bool:
    """Whether this process logs and writes for a distributed run (rank 0; always when alone)."""
    return process_rank() == 0


def _cpu_info() -> tuple[str, list[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and value.strip():
                model = value.strip()
            elif key == "flags":
                flags = set(value.split())
            if model and flags:
                break
    return model, [f for f in CPU_FLAGS if f in flags]


def current_environment() -> Environment:
    """This process's environment (torch's threads and kernels when torch is imported)."""
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    torch = sys.modules.get("torch")
    threads = capability = gpu = None
    if torch is not None:
        threads = torch.get_num_threads()
        capability = torch.backends.cpu.get_cpu_capability()
        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    model, flags = _cpu_info()
    return Environment(
        python=platform.python_version(),
        platform=platform.platform(),
        cpu_model=model,
        cpu_flags=flags,
        cpus=os.cpu_count() or 0,
        torch_threads=threads,
        torch_cpu_capability=capability,
        gpu=gpu,
        thread_variables={k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ},
        packages=packages,
    )
