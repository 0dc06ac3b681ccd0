"""Build script: compiles the Cython extensions in pfilter/ (cython and numpy are build requirements).

PFILTER_DEBUG=1 rebuilds with Cython's bounds checks, wraparound and C asserts turned back on.
PFILTER_ASAN=1 builds with AddressSanitizer and UndefinedBehaviorSanitizer (scripts/asan.sh builds
so in a copy of the tree and runs tests with libasan preloaded).
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("PFILTER_DEBUG", "") not in ("", "0")

directives = {
    "language_level": "3",
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "embedsignature": True,
}

ASAN = os.environ.get("PFILTER_ASAN", "") not in ("", "0")
SANITIZE = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"] if ASAN else []

# Under the sanitizers: -Og -g1 (line tables, which the reports name): compiled in 40% of the CPU
# time of -O1 -g (capture/_reader.c: 5.6 s against 14.3 s), the sanitized tests as fast.
extra = (["-O0", "-g", "-UNDEBUG"] if DEBUG else ["-Og", "-g1"] if ASAN else ["-O3"]) + SANITIZE

# The VM's core, pfilter/_vm_core.pxi (compiled into pfilter._vm and pfilter.capture._fastcopy),
# includes pfilter/_vm_cases.pxi, written (git-ignored) by scripts/gen_vm.py from its tables; an
# sdist carries the file and not the script.
if Path("scripts/gen_vm.py").exists():
    subprocess.run([sys.executable, "scripts/gen_vm.py"], check=True)

# Every pfilter/**/*.pyx becomes an extension of the same dotted name (pfilter/_vm.pyx -> pfilter._vm).
extensions = [
    Extension(str(src.with_suffix("")).replace(os.sep, "."), [str(src)],
              include_dirs=[numpy.get_include()], extra_compile_args=extra, extra_link_args=SANITIZE,
              define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")])
    for src in sorted(Path("pfilter").rglob("*.pyx"))
]
# PFILTER_BUILD_ONLY=pfilter/_vm.pyx[,pfilter/capture/_reader.pyx] builds just those extensions
# (`python setup.py build_ext --inplace`), so that one extension can be rebuilt while another is
# being edited.
ONLY = [p for p in os.environ.get("PFILTER_BUILD_ONLY", "").split(",") if p]
if ONLY:
    extensions = [e for e in extensions if e.sources[0] in ONLY]

# The `pfilter` command is bin/pfilter (see its docstring), installed with its first line
# pointing at the installing interpreter.
# Cython's translation and the C compiler run on every usable core (an sdist install, pip install -e
# and scripts/asan.sh alike): the serial build was the longest single step of a fresh install.
JOBS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
setup(ext_modules=cythonize(extensions, compiler_directives=directives, nthreads=JOBS if JOBS > 1 else 0,
                            annotate=os.environ.get("PFILTER_ANNOTATE") == "1"),
      options={"build_ext": {"parallel": JOBS}},
      scripts=["bin/pfilter"])
