"""avil: the αVIL reference implementation (arXiv 2405.07769).

Build with ``pip install --no-build-isolation -e .`` (torch must already be
installed: it is never a build requirement, so no other torch is pulled in).

Environment:
  AVIL_BUILD_EXT=0   skip the C++/CUDA extension (avil.ops falls back to PyTorch)
  DEBUG=1            build the extension with -O0 -g
"""
import os

from setuptools import find_packages, setup

SOURCES_CPU = ["csrc/merge.cpp"]
SOURCES_CUDA = ["csrc/cuda/merge.cu"]


def extensions():
    if os.environ.get("AVIL_BUILD_EXT", "1") == "0" or not os.path.exists(SOURCES_CPU[0]):
        return [], {}
    import torch
    from torch.utils import cpp_extension

    debug = os.environ.get("DEBUG", "0") == "1"
    # No -march=native or -mavx2: the wheel must run on any x86-64 (or ARM)
    # machine. The kernels are plain loops GCC vectorises at -O3 with the
    # baseline instruction set, which is enough to saturate memory bandwidth.
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
    install_requires=["torch>=2.4", "numpy", "tqdm"],
    extras_require={
        "notebooks": ["matplotlib", "pandas", "papermill", "jupyterlab", "ipykernel"],
        "nlu": ["transformers", "datasets"],
        "test": ["pytest", "nbval", "papermill"],
    },
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    options={"bdist_wheel": {"py_limited_api": "cp39"}} if ext_modules else {},
)
