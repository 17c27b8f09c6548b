"""The generated trees and their signing."""

from __future__ import annotations

import compileall
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from .common import BenchError, Workspace

PACKAGE = "benchpkg"
SUBPACKAGES = 10


# -- the generated tree -------------------------------------------------------

DATACLASS_MODULE = '''\
"""{dotted}: generated benchmark module {index}.

A dataclass with methods, a cached function and a few constants.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field

LIMIT = {index}
NAMES = ("alpha", "beta", "gamma", "m{index}")
SEPARATOR = os.sep


@dataclass
class Record:
    """A small record."""

    name: str
    values: list[int] = field(default_factory=list)

    def total(self) -> int:
        return sum(self.values) + LIMIT

    def label(self) -> str:
        return SEPARATOR.join((self.name, str(len(self.values))))


@functools.lru_cache(maxsize=128)
def scaled(x: int) -> int:
    return x * {index} + 7


def make(n: int = 3) -> Record:
    return Record(NAMES[n % len(NAMES)], [scaled(k) for k in range(n)])
'''

CLASS_MODULE = '''\
"""{dotted}: generated benchmark module {index}.

A plain class with methods, a few functions and constants.
"""

from __future__ import annotations

import functools
import os

WIDTH = {index} % 17 + 3
PREFIX = "m{index}"


class Counter:
    """Counts labelled events."""

    def __init__(self, label: str = PREFIX) -> None:
        self.label = label
        self.counts: dict[str, int] = {{}}

    def add(self, key: str, amount: int = 1) -> int:
        self.counts[key] = self.counts.get(key, 0) + amount
        return self.counts[key]

    def __repr__(self) -> str:
        return f"Counter({{self.label!r}}, {{len(self.counts)}} keys)"


def pad(text: str) -> str:
    return text.rjust(WIDTH)


def joined(*parts: str) -> str:
    return os.sep.join(functools.reduce(lambda acc, p: [*acc, pad(p)], parts, []))
'''


def module_source(index: int, dotted: str) -> str:
    template = DATACLASS_MODULE if index % 2 == 0 else CLASS_MODULE
    return template.format(dotted=dotted, index=index)


def write_tree(root: Path, modules: int) -> None:
    """``root/benchpkg`` with *modules* modules spread over up to 10 subpackages."""
    package = root / PACKAGE
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(f'"""{PACKAGE}: generated."""\n\nVERSION = "1.0"\n')
    subpackages = min(SUBPACKAGES, modules)
    width = max(3, len(str(modules - 1)))
    for sub in range(subpackages):
        directory = package / f"sub_{sub:02d}"
        directory.mkdir()
        dotted = f"{PACKAGE}.sub_{sub:02d}"
        (directory / "__init__.py").write_text(f'"""{dotted}: generated."""\n\nINDEX = {sub}\n')
    for index in range(modules):
        sub = index * subpackages // modules
        name = f"mod_{index:0{width}d}"
        dotted = f"{PACKAGE}.sub_{sub:02d}.{name}"
        (package / f"sub_{sub:02d}" / f"{name}.py").write_text(module_source(index, dotted))


def count_files(root: Path) -> int:
    return sum(1 for path in root.rglob("*.py") if "__pycache__" not in path.parts)


def build_trees(ws: Workspace, sizes: Sequence[int]) -> None:
    """Generate and copy each tree: served (to be signed), source-only, precompiled."""
    for modules in sizes:
        write_tree(ws.served(modules), modules)
        source = ws.local("local-source", modules)
        shutil.copytree(ws.served(modules), source)
        bytecode = ws.local("local-bytecode", modules)
        shutil.copytree(ws.served(modules), bytecode)
        if not compileall.compile_dir(bytecode, quiet=1):
            raise BenchError(f"compileall failed for {bytecode}")


def sign_trees(ws: Workspace, sizes: Sequence[int], rounds: int) -> list[float]:
    """Sign every tree with a fresh key; files/s of each signing of the largest tree."""
    from secure_urlimport._format.keys import PrivateKey
    from secure_urlimport.publish.signing import sign_tree

    key = PrivateKey.generate()
    ws.pubkey.write_text(key.public.to_line(), encoding="ascii")
    rates: list[float] = []
    largest = max(sizes)
    for modules in sorted(sizes):
        for _ in range(rounds if modules == largest else 1):
            started = time.perf_counter()
            result = sign_tree(ws.served(modules), [key])
            elapsed = time.perf_counter() - started
            if modules == largest:
                rates.append(result.files / elapsed)
    return rates
