"""Tiny real extension modules, compiled with the system C compiler for the tests.

``build(directory, "fast", value="signed")`` writes ``fast<EXT_SUFFIX>`` whose
init function sets ``SIGNED = value``; with ``marker=path`` it first writes
that file, as attacker code would, so its absence proves the module was
never loaded.  Tests that need one are skipped when there is no compiler.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

__all__ = ["EXT_SUFFIX", "build", "build_library", "needs_compiler"]

EXT_SUFFIX = str(sysconfig.get_config_var("EXT_SUFFIX"))
_CC = shutil.which("cc") or shutil.which("gcc")

needs_compiler = pytest.mark.skipif(_CC is None, reason="needs a C compiler (cc or gcc)")

_SOURCE = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define CAT(a, b) a##b
#define INIT(n) CAT(PyInit_, n)
#define STR2(x) #x
#define STR(x) STR2(x)
#ifdef HELPER
extern const char *helper_value(void);
#undef VALUE
#define VALUE helper_value()
#endif
static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, STR(MODNAME), NULL, -1, NULL};
PyMODINIT_FUNC INIT(MODNAME)(void) {
#ifdef MARKER
    FILE *f = fopen(MARKER, "w");
    if (f) { fputs("ran", f); fclose(f); }
#endif
    PyObject *m = PyModule_Create(&def);
    if (m && PyModule_AddStringConstant(m, "SIGNED", VALUE) < 0) { Py_DECREF(m); return NULL; }
    return m;
}
"""


_LIBRARY = r"""
const char *helper_value(void) { return VALUE; }
"""


def build_library(directory: Path, name: str, *, value: str) -> Path:
    """Compile the shared library ``lib<name>.so`` whose ``helper_value()``
    returns *value*, into *directory*."""
    assert _CC is not None
    directory.mkdir(parents=True, exist_ok=True)
    source = directory / f".lib{name}.c"
    source.write_text(_LIBRARY, encoding="ascii")
    target = directory / f"lib{name}.so"
    subprocess.run(
        [_CC, "-shared", "-fPIC", f"-DVALUE={_c_string(value)}", str(source), "-o", str(target)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    source.unlink()
    return target


def _c_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def build(
    directory: Path,
    name: str,
    *,
    value: str = "compiled",
    marker: Path | None = None,
    library: Path | None = None,
) -> Path:
    """Compile the extension module file *name* into *directory*; returns its
    path.  ``__init__`` makes the package *directory* (its init function is
    named for the package, as CPython looks it up).  With *library* (from
    :func:`build_library`), ``SIGNED`` is what that library returns, and the
    module finds it as wheels do: ``RPATH $ORIGIN/<relative path>``."""
    assert _CC is not None
    directory.mkdir(parents=True, exist_ok=True)
    source = directory / f".{name}.c"
    source.write_text(_SOURCE, encoding="ascii")
    target = directory / f"{name}{EXT_SUFFIX}"
    module = directory.name if name == "__init__" else name
    defines = [f"-DMODNAME={module}", f"-DVALUE={_c_string(value)}"]
    if marker is not None:
        defines.append(f"-DMARKER={_c_string(str(marker))}")
    linking: list[str] = []
    if library is not None:
        relative = os.path.relpath(library.parent, directory)
        name_only = library.name.removeprefix("lib").removesuffix(".so")
        defines.append("-DHELPER")
        linking = [f"-L{library.parent}", f"-l{name_only}", f"-Wl,-rpath,$ORIGIN/{relative}"]
    include = sysconfig.get_paths()["include"]
    subprocess.run(
        [
            _CC,
            "-shared",
            "-fPIC",
            "-O0",
            f"-I{include}",
            *defines,
            str(source),
            "-o",
            str(target),
            *linking,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    source.unlink()
    return target
