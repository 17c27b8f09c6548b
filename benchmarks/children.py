"""One measurement in a fresh interpreter: the child's code and how it is run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import CHILD_TIMEOUT, DROPPED_ENV, BenchError, Workspace, tail
from .servers import Server

# -- the child: one measurement in a fresh interpreter ------------------------

CHILD_CODE = r'''
import importlib, json, os, sys, time


def peak_rss_kib():
    """This process's own peak resident set (VmHWM). Not ru_maxrss: Linux carries
    that across fork+exec, so it never reads below the parent's peak."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource  # not Linux: ru_maxrss (bytes on macOS, KiB elsewhere)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss // 1024 if sys.platform == "darwin" else rss


def module_names(root):
    """Sorted dotted names of every module under root, and the .py paths."""
    names, files = [], set()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        for filename in filenames:
            if not filename.endswith(".py"):
                continue
            rel = filename if rel_dir == "." else rel_dir + "/" + filename
            files.add(rel)
            dotted = rel[:-3].replace("/", ".")
            names.append(dotted[:-9] if filename == "__init__.py" else dotted)
    return sorted(names), files


def install_naive(url, cafile, files):
    """The classic recipe: a meta-path finder, one keep-alive session, one GET
    per file, no signature checks."""
    import importlib.machinery
    import requests

    session = requests.Session()
    session.verify = cafile

    class NaiveLoader:
        def __init__(self, file_url):
            self.file_url = file_url

        def create_module(self, spec):
            return None

        def exec_module(self, module):
            response = session.get(self.file_url, timeout=30)
            response.raise_for_status()
            code = compile(response.content, self.file_url, "exec", dont_inherit=True)
            exec(code, module.__dict__)

    class NaiveFinder:
        def find_spec(self, fullname, path=None, target=None):
            rel = fullname.replace(".", "/")
            for candidate, package in ((rel + "/__init__.py", True), (rel + ".py", False)):
                if candidate in files:
                    origin = url + "/" + candidate
                    spec = importlib.machinery.ModuleSpec(
                        fullname, NaiveLoader(origin), origin=origin, is_package=package)
                    if package:
                        spec.submodule_search_locations = [url + "/" + rel]
                    spec.has_location = True
                    return spec
            return None

    sys.meta_path.insert(0, NaiveFinder())


def main():
    spec = json.loads(sys.argv[1])
    if "names" in spec:  # the scaling table: a given selection (no walk of a big tree)
        names, files = spec["names"], set()
    else:
        names, files = module_names(spec["names_from"])
    mode = spec["mode"]
    for name in spec["preload"]:
        importlib.import_module(name)
    if mode == "local":
        sys.dont_write_bytecode = spec["dont_write_bytecode"]
    elif mode == "remote":
        import secure_urlimport
    started = time.perf_counter()
    if mode == "local":
        sys.path.insert(0, spec["root"])
    elif mode == "remote":
        fresh = {"max_age": spec["max_age"]} if "max_age" in spec else {}
        secure_urlimport.install(
            spec["url"], pubkey=spec["pubkey"], cafile=spec["cafile"], **fresh)
    else:
        install_naive(spec["url"], spec["cafile"], files)
    setup = time.perf_counter() - started
    for name in names:
        importlib.import_module(name)
    seconds = time.perf_counter() - started
    rss = peak_rss_kib()
    for name in names:
        origin = sys.modules[name].__file__ or ""
        if not origin.startswith(spec["origin_prefix"]):
            sys.exit(f"{name} was imported from {origin}, not {spec['origin_prefix']}")
    print(json.dumps({"seconds": seconds, "setup": setup, "maxrss_kib": rss,
                      "modules": len(names)}))


main()
'''


# -- running children ---------------------------------------------------------


def child_env(ws: Workspace, cache_dir: Path, library: str | None) -> dict[str, str]:
    """The parent's environment without proxy, CA and PYTHON* settings (but PYTHONPATH)."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in DROPPED_ENV and (not name.startswith("PYTHON") or name == "PYTHONPATH")
    }
    if library is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [library, env.get("PYTHONPATH")]))
    env["SECURE_URLIMPORT_CACHE_DIR"] = str(cache_dir)
    return env


@dataclass(frozen=True)
class Run:
    seconds: float
    setup: float  # of seconds: install() / making the naive session / sys.path insert
    rss_kib: int
    requests: int


def run_child(
    ws: Workspace,
    server: Server,
    label: str,
    *,
    spec: dict[str, Any],
    cache_dir: Path,
    flags: Sequence[str] = (),
    baseline: bool = False,
) -> Run:
    before = server.requests_served()
    env = child_env(ws, cache_dir, ws.baseline_path if baseline else ws.library_path)
    data = run_python(label, spec, cwd=ws.cwd, env=env, flags=flags)
    return Run(
        float(data["seconds"]),
        float(data["setup"]),
        int(data["maxrss_kib"]),
        server.requests_served() - before,
    )


def run_python(
    label: str,
    spec: dict[str, Any],
    *,
    cwd: Path,
    env: dict[str, str],
    flags: Sequence[str] = (),
    timeout: float = CHILD_TIMEOUT,
) -> dict[str, Any]:
    """Run CHILD_CODE with *spec* in a fresh interpreter; its JSON result."""
    command = [sys.executable, *flags, "-c", CHILD_CODE, json.dumps(spec)]
    try:
        result = subprocess.run(  # noqa: S603
            command,
            capture_output=True,
            text=True,
            cwd=cwd,
            timeout=timeout,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"{label}: no result within {timeout:.0f} s") from None
    if result.returncode != 0:
        raise BenchError(
            f"{label}: the child exited with {result.returncode}:\n"
            + tail(result.stderr or result.stdout)
        )
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data
