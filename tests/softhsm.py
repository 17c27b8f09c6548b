"""A fresh SoftHSM2 token store for the tests: its own config file and token directory.

Not a test module: ``tests/test_pkcs11.py`` wraps :func:`make_softhsm` in a
session fixture.  SoftHSM2 reads ``$SOFTHSM2_CONF`` when a process first loads
it, so one store serves the whole test session (and every subprocess given
:attr:`SoftHSM.env`); nothing of the machine's own tokens is touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from secure_urlimport.publish.pkcs11 import WELL_KNOWN_MODULES

__all__ = ["REQUIRE_ENV", "SoftHSM", "find_softhsm", "make_softhsm"]

#: Set to 1 (CI does) to make a missing SoftHSM2 or python-pkcs11 a test failure, not a skip.
REQUIRE_ENV = "SECURE_URLIMPORT_REQUIRE_SOFTHSM"
USER_PIN = "246813579"
SO_PIN = "97531086"


@dataclass(frozen=True)
class SoftHSM:
    """A token store with initialised tokens ``release`` and ``spare``, and two
    tokens both labelled ``twin``."""

    conf: Path
    module: str
    util: str
    pin: str = USER_PIN

    @property
    def env(self) -> dict[str, str]:
        return {"SOFTHSM2_CONF": str(self.conf), "SECURE_URLIMPORT_PKCS11_MODULE": self.module}


def find_softhsm() -> tuple[str, str] | None:
    """``(softhsm2-util, libsofthsm2.so)``, or None when SoftHSM2 is not installed."""
    util = shutil.which("softhsm2-util") or next(
        (
            p
            for p in ("/usr/bin/softhsm2-util", "/usr/local/bin/softhsm2-util")
            if os.path.isfile(p)
        ),
        None,
    )
    module = next((p for p in WELL_KNOWN_MODULES if os.path.isfile(p)), None)
    return None if util is None or module is None else (util, module)


def make_softhsm(directory: Path, util: str, module: str) -> SoftHSM:
    tokens = directory / "tokens"
    tokens.mkdir(parents=True)
    conf = directory / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n",
        encoding="utf-8",
    )
    store = SoftHSM(conf, module, util)
    for label in ("release", "spare", "twin", "twin"):
        pins = ("--pin", USER_PIN, "--so-pin", SO_PIN)
        subprocess.run(
            [util, "--init-token", "--free", "--label", label, *pins],
            env={**os.environ, **store.env},
            check=True,
            capture_output=True,
            timeout=60,
        )
    return store
