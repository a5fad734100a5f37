"""avil: the αVIL reference implementation (arXiv 2405.07769).

Build with ``pip install --no-build-isolation -e .`` (torch must already be
installed: it is never a build requirement, so no other torch is pulled in).
A plain ``pip install .`` (an isolated build without torch) installs the
package without the C++ extension; ``avil.ops`` then runs its pure-PyTorch
reference.

Environment:
  AVIL_BUILD_EXT=0   skip the C++/CUDA extension (avil.ops falls back to PyTorch)
  DEBUG=1            build the extension with -O0 -g
"""
import os
import sys

from setuptools import find_packages, setup

SOURCES_CPU = ["csrc/merge.cpp"]
SOURCES_CUDA = ["csrc/cuda/merge.cu"]


def extensions():
    if os.environ.get("AVIL_BUILD_EXT", "1") == "0" or not os.path.exists(SOURCES_CPU[0]):
        return [], {}
    try:
        import torch
        from torch.utils import cpp_extension
    except ImportError:
        # A plain `pip install .` builds in an isolated environment without
        # torch: install the pure-PyTorch package (avil.ops falls back to its
        # reference implementation) rather than fail.
        print("avil: torch is not importable while building, so the C++ extension is skipped and avil.ops "
              "runs its pure-PyTorch reference. Build it with `pip install --no-build-isolation .` "
              "(torch installed first).", file=sys.stderr)
        return [], {}

    debug = os.environ.get("DEBUG", "0") == "1"
    # No -march=native or -mavx2 for the whole library: it must load on any
    # x86-64 (or ARM) machine. At the baseline instruction set the float16
    # conversion and the arithmetic, not memory, limit one thread, so
    # merge.cpp carries a second, x86-64-v3 copy of its hot loops, picked at
    # load time (csrc/merge.cpp, benchmarks/MERGE_NOTES.md).
    cxx = (["-O0", "-g"] if debug else ["-O3"]) + ["-fopenmp"]
    # One library for every CPython >= 3.9: ops are registered with
    # TORCH_LIBRARY and the module is an empty stub, so no pybind is needed.
    common = dict(
        extra_link_args=["-fopenmp"],
        py_limited_api=True,
        define_macros=[("Py_LIMITED_API", "0x03090000")],
    )
    # CUDA kernels only where this torch was built with CUDA; a CPU-only
    # torch cannot load them anyway (tests/test_ops.py compile-checks the .cu
    # with nvcc instead).
    use_cuda = torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None
    if use_cuda:
        nvcc = ["-O0", "-g", "-G"] if debug else ["-O3"]
        ext = cpp_extension.CUDAExtension(
            "avil._C",
            SOURCES_CPU + SOURCES_CUDA,
            extra_compile_args={"cxx": cxx, "nvcc": nvcc},
            **common,
        )
    else:
        ext = cpp_extension.CppExtension(
            "avil._C", SOURCES_CPU, extra_compile_args={"cxx": cxx}, **common
        )
    return [ext], {"build_ext": cpp_extension.BuildExtension}


ext_modules, cmdclass = extensions()

setup(
    name="avil",
    version="0.1.0",
    description="αVIL: learning to leverage auxiliary tasks for multitask learning",
    packages=find_packages(include=["avil", "avil.*"]),
    python_requires=">=3.10",
    # torch is deliberately unpinned here and installed first by the Makefile
    # (torch==2.13.0); the pinned environment lives in requirements*.txt.
    install_requires=["torch>=2.4", "numpy", "scipy", "tqdm"],
    extras_require={
        "notebooks": ["matplotlib", "pandas", "papermill", "jupyterlab", "ipykernel"],
        "nlu": ["transformers", "datasets"],
        "tensorboard": ["tensorboard"],
        "test": ["pytest", "nbval", "papermill"],
    },
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    options={"bdist_wheel": {"py_limited_api": "cp39"}} if ext_modules else {},
)
