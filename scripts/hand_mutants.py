#!/usr/bin/env python3
"""Hand-made mutants of the verification core that mutmut does not make.

mutmut mutates code inside functions; the core's module-level constants,
regular expressions, category sets and defaults are left alone, and they
are where a weakened check hides (a cap raised, a character let through).
This script applies each mutant below, one at a time, to a temporary copy
of the checkout, runs the tests that should notice, and reports::

    python scripts/hand_mutants.py            # every mutant
    python scripts/hand_mutants.py -k keyid   # those whose name contains 'keyid'
    python scripts/hand_mutants.py --list

A mutant is *killed* when a test failed (pytest exit status 1), or when the
test modules no longer import (status 2: a module-level known answer broke;
the unmutated copy is run first, so the mutant is the cause).  Any other
status (internal error, usage error, no test found) is reported as an error,
not a kill: a test id pytest cannot find once made mutmut count a mutant as
killed.  Exit status: 0 if every mutant was killed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: What the temporary copy needs to run the tests (testcode: test fixtures).
COPIED = ("secure_urlimport", "tests", "testcode", "pyproject.toml")

#: pytest exit statuses that mean the tests noticed the mutant.
KILLED = (1, 2)
VERDICTS = {0: "SURVIVED", 1: "killed", 2: "killed at collection"}

FORMATS = "tests/test_formats.py"
SIGNING = "tests/test_signing.py"
NAMES = "tests/attacks/test_attacks_names.py"
FRESHNESS = "tests/attacks/test_attacks_freshness.py"
OFFLINE = "tests/attacks/test_attacks_offline.py"
RESPONSES = "tests/test_responses.py"
WARM = "tests/test_warm_start.py"


@dataclass(frozen=True)
class Mutant:
    """Replace *old* (which must occur exactly once) by *new* in *module*."""

    name: str
    module: str
    old: str
    new: str
    tests: tuple[str, ...] = (FORMATS,)


_PLAIN = r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]*(?:/[A-Za-z0-9_\-][A-Za-z0-9_.\-]*)*"
_CATEGORIES = '("Cc", "Cf", "Cs", "Zl", "Zp")'


def _without_category(category: str) -> Mutant:
    kept = _CATEGORIES.replace(f'"{category}", ', "").replace(f', "{category}"', "")
    return Mutant(
        f"paths-category-{category}-allowed", "paths.py", _CATEGORIES, kept, (FORMATS, SIGNING)
    )


MUTANTS: tuple[Mutant, ...] = (
    # -- manifest.py: caps
    Mutant(
        "manifest-file-cap-raised", "manifest.py", "MAX_FILES = 1_000_000", "MAX_FILES = 10_000_000"
    ),
    Mutant(
        "manifest-file-cap-removed",
        "manifest.py",
        "not isinstance(files_raw, dict) or len(files_raw) > MAX_FILES",
        "not isinstance(files_raw, dict)",
    ),
    Mutant(
        "manifest-file-cap-off-by-one",
        "manifest.py",
        "len(files_raw) > MAX_FILES",
        "len(files_raw) > MAX_FILES + 1",
    ),
    Mutant(
        "manifest-signature-lines-cap-raised",
        "signedfile.py",
        "MAX_SIGNATURE_LINES = 64",
        "MAX_SIGNATURE_LINES = 65",
    ),
    Mutant(
        "manifest-version-cap-raised",
        "signedfile.py",
        "MAX_VERSION = 2**63 - 1",
        "MAX_VERSION = 2**64",
    ),
    Mutant(
        "manifest-name-cap-raised", "manifest.py", "MAX_NAME_CHARS = 200", "MAX_NAME_CHARS = 201"
    ),
    # -- manifest.py: the key-id pattern (server-chosen ids reach messages)
    Mutant("manifest-keyid-upper-case", "signedfile.py", 'r"[0-9a-f]{16}"', 'r"[0-9a-fA-F]{16}"'),
    Mutant("manifest-keyid-any-16-chars", "signedfile.py", 'r"[0-9a-f]{16}"', 'r".{16}"'),
    Mutant(
        "manifest-keyid-1-to-64-digits", "signedfile.py", 'r"[0-9a-f]{16}"', 'r"[0-9a-f]{1,64}"'
    ),
    Mutant("manifest-keyid-unicode-digits", "signedfile.py", 'r"[0-9a-f]{16}"', 'r"[\\da-f]{16}"'),
    Mutant(
        "manifest-keyid-prefix-match",
        "signedfile.py",
        "_KEYID.fullmatch(keyid)",
        "_KEYID.match(keyid)",
    ),
    # -- manifest.py: the format constants (shared with every published tree)
    Mutant(
        "manifest-magic-line",
        "manifest.py",
        'MAGIC = b"secure-urlimport-manifest v1\\n"',
        'MAGIC = b"secure-urlimport-manifest v2\\n"',
    ),
    Mutant(
        "manifest-file-tag",
        "manifest.py",
        'FILE_TAG = b"secure-urlimport/file/v1"',
        'FILE_TAG = b"secure-urlimport/manifest/v1"',
    ),
    Mutant(
        "manifest-manifest-tag",
        "manifest.py",
        'MANIFEST_TAG = b"secure-urlimport/manifest/v1"',
        'MANIFEST_TAG = b"secure-urlimport/file/v1"',
    ),
    Mutant(
        "manifest-body-type",
        "manifest.py",
        'BODY_TYPE = "secure-urlimport/manifest"',
        'BODY_TYPE = "secure-urlimport/other"',
    ),
    Mutant("manifest-format-version", "manifest.py", "FORMAT_VERSION = 1", "FORMAT_VERSION = 2"),
    Mutant(
        "manifest-time-without-zone",
        "signedfile.py",
        'TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"',
        'TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"',
    ),
    # -- paths.py: the backslash rule, in the rule and in the fast path
    Mutant(
        "paths-backslash-rule-removed",
        "paths.py",
        '    if "\\\\" in path:\n        return "backslash in path"\n',
        "",
        (FORMATS, SIGNING),
    ),
    Mutant(
        "paths-fast-path-allows-backslash",
        "paths.py",
        _PLAIN,
        _PLAIN.replace(r"[A-Za-z0-9_.\-]*(?:", r"[A-Za-z0-9_.\-\\]*(?:", 1),
        (FORMATS, SIGNING),
    ),
    Mutant(
        "paths-fast-path-allows-dot-first",
        "paths.py",
        _PLAIN,
        _PLAIN.replace(r"[A-Za-z0-9_\-]", r"[A-Za-z0-9_.\-]"),
        (FORMATS, SIGNING),
    ),
    Mutant(
        "paths-fast-path-allows-any-character",
        "paths.py",
        _PLAIN,
        r"[^/.][^/]*(?:/[^/.][^/]*)*",
        (FORMATS, SIGNING),
    ),
    # -- paths.py: the forbidden Unicode categories, one at a time
    *(_without_category(c) for c in ("Cc", "Cf", "Cs", "Zl", "Zp")),
    Mutant(
        "paths-nfd-instead-of-nfc",
        "paths.py",
        'unicodedata.normalize("NFC", path)',
        'unicodedata.normalize("NFD", path)',
    ),
    Mutant("paths-length-cap-raised", "paths.py", "MAX_PATH_CHARS = 1024", "MAX_PATH_CHARS = 1025"),
    Mutant(
        "paths-bundle-name-not-reserved",
        "paths.py",
        'BUNDLE_NAME = "secure-urlimport.bundle"',
        'BUNDLE_NAME = "secure-urlimport.bundle2"',
    ),
    Mutant(
        "paths-module-names-not-ascii-only",
        "paths.py",
        "return all(part.isascii() and part.isidentifier() for part in parts)",
        "return all(part.isidentifier() for part in parts)",
        (FORMATS, NAMES),
    ),
    Mutant(
        "paths-stdlib-names-builtins-only",
        "paths.py",
        "frozenset(sys.stdlib_module_names) | frozenset(sys.builtin_module_names)",
        "frozenset(sys.builtin_module_names)",
        (NAMES,),
    ),
    # -- keys.py: key ids, sizes, small-order points, the threshold
    Mutant("keys-keyid-length", "keys.py", "KEYID_HEX_CHARS = 16", "KEYID_HEX_CHARS = 15"),
    Mutant(
        "keys-keyid-tag",
        "keys.py",
        'KEYID_TAG = b"secure-urlimport/keyid/v1\\x00"',
        'KEYID_TAG = b"secure-urlimport/keyid/v1"',
    ),
    Mutant("keys-signature-length", "keys.py", "SIGNATURE_BYTES = 64", "SIGNATURE_BYTES = 63"),
    Mutant(
        "keys-small-order-set-misses-order-8",
        "keys.py",
        "_SMALL_ORDER_Y = frozenset({0, 1, _P - 1, _ORDER_8_Y, _P - _ORDER_8_Y})",
        "_SMALL_ORDER_Y = frozenset({0, 1, _P - 1})",
    ),
    Mutant(
        "keys-small-order-set-misses-order-4",
        "keys.py",
        "_SMALL_ORDER_Y = frozenset({0, 1, _P - 1, _ORDER_8_Y, _P - _ORDER_8_Y})",
        "_SMALL_ORDER_Y = frozenset({1, _P - 1, _ORDER_8_Y, _P - _ORDER_8_Y})",
    ),
    Mutant("keys-field-prime", "keys.py", "_P = 2**255 - 19", "_P = 2**255 - 21"),
    Mutant(
        "keys-threshold-may-be-zero",
        "keys.py",
        "not 1 <= self.threshold <= len(self.keys)",
        "not 0 <= self.threshold <= len(self.keys)",
    ),
    Mutant(
        "keys-threshold-default-zero", "keys.py", "    threshold: int\n", "    threshold: int = 0\n"
    ),
    # -- verify.py: the signer set (rollback records are kept per signer)
    Mutant(
        "verify-manifest-stops-at-threshold",
        "verify.py",
        "all_signers=True,",
        "all_signers=False,",
        (FORMATS, FRESHNESS),
    ),
    Mutant(
        "verify-repeated-key-id-stops-the-loop",
        "verify.py",
        "        if keyid in good:\n            continue\n",
        "        if keyid in good:\n            break\n",
        (FORMATS, FRESHNESS),
    ),
    # -- offline start and max_age (the client's guards around the cached manifest)
    Mutant(
        "offline-start-after-a-verification-failure",
        "current.py",
        "            if refused or past_caches:  # never after a verification failure",
        "            if past_caches:  # never after a verification failure",
        (OFFLINE,),
    ),
    Mutant(
        "offline-start-after-a-4xx",
        "failures.py",
        "return exc.status >= 500 or exc.status in OUTAGE_STATUSES",
        "return exc.status >= 400",
        (RESPONSES,),
    ),
    Mutant(
        "max-age-clock-gone-back-counts-as-fresh",
        "warm.py",
        "if not 0 <= age < config.max_age:",
        "if not age < config.max_age:",
        (WARM,),
    ),
    Mutant(
        "last-modified-cap-raised",
        "cache.py",
        "MAX_LAST_MODIFIED_CHARS = 64",
        "MAX_LAST_MODIFIED_CHARS = 65",
        (RESPONSES,),
    ),
)


def copy_checkout(destination: Path) -> None:
    for name in COPIED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(
                source,
                destination / name,
                ignore=shutil.ignore_patterns("__pycache__", ".hypothesis"),
            )
        else:
            shutil.copy2(source, destination / name)


#: The layer package of each mutated module (README, Architecture).
LAYER = {
    "paths.py": "_format",
    "keys.py": "_format",
    "manifest.py": "_format",
    "signedfile.py": "_format",
    "verify.py": "_trust",
    "current.py": "_client",
    "warm.py": "_client",
    "failures.py": "_net",
    "cache.py": "_store",
}


def module_path(root: Path, mutant: Mutant) -> Path:
    return root / "secure_urlimport" / LAYER[mutant.module] / mutant.module


def apply(mutant: Mutant, root: Path) -> str:
    """Write the mutant into the copy at *root*; return the original text."""
    path = module_path(root, mutant)
    original = path.read_text(encoding="utf-8")
    count = original.count(mutant.old)
    if count != 1:
        raise SystemExit(
            f"mutant {mutant.name}: {mutant.old!r} occurs {count} times in "
            f"{mutant.module} (update scripts/hand_mutants.py)"
        )
    path.write_text(original.replace(mutant.old, mutant.new), encoding="utf-8")
    return original


def run_tests(root: Path, tests: Sequence[str]) -> int:
    """pytest's exit status for *tests* in the copy at *root*, stopping at the first failure."""
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-x",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
        *tests,
    ]
    result = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        command, cwd=root, env=env, capture_output=True, check=False, stdin=subprocess.DEVNULL
    )
    return result.returncode


def check_copy_is_imported(root: Path) -> None:
    # The tests must import the mutated copy, not the installed checkout.
    env = {**os.environ, "PYTHONPATH": str(root)}
    found = subprocess.run(
        [sys.executable, "-c", "import secure_urlimport; print(secure_urlimport.__file__)"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(found).resolve().is_relative_to(root.resolve()):
        raise SystemExit(f"the tests would import {found}, not the mutated copy in {root}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "-k", dest="match", default="", help="only mutants whose name contains this"
    )
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if args.match in m.name]
    if args.list:
        for mutant in chosen:
            print(f"{mutant.name}: {mutant.module}: {mutant.old!r} -> {mutant.new!r}")
        return 0
    survived: list[str] = []
    with tempfile.TemporaryDirectory(prefix="hand-mutants-") as tmp:
        root = Path(tmp)
        copy_checkout(root)
        check_copy_is_imported(root)
        baseline = sorted({t for m in chosen for t in m.tests})
        if (status := run_tests(root, baseline)) != 0:
            print(f"the unmutated tests fail (pytest exit {status}): fix them first")
            return 1
        for mutant in chosen:
            started = time.monotonic()
            original = apply(mutant, root)
            try:
                status = run_tests(root, mutant.tests)
            finally:
                module_path(root, mutant).write_text(original, encoding="utf-8")
            verdict = VERDICTS.get(status, f"ERROR (pytest exit {status})")
            if status not in KILLED:
                survived.append(mutant.name)
            print(f"{verdict:<24} {mutant.name} ({time.monotonic() - started:.1f} s)", flush=True)
    print(f"{len(chosen) - len(survived)} of {len(chosen)} hand-made mutants killed")
    if survived:
        print("not killed: " + ", ".join(survived))
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
