"""``secure-urlimport demo``: the whole product in one run, on loopback only.

Makes a key, signs the classic example tree, serves it over HTTPS with a
fresh local CA, imports from it through the verifying importer, then flips
one byte on the server and shows the import being refused.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["DEMO_TREE", "run_demo"]

#: The example tree of the classic "import modules from a URL" recipe.  The
#: repository's testcode/ directory holds the same files (a test keeps them equal).
DEMO_TREE: dict[str, str] = {
    "spam.py": """\
# spam.py
print("I'm spam")


def hello(name):
    print('Hello %s' % name)
""",
    "fib.py": """\
# fib.py
print("I'm fib")


def fib(n):
    if n < 2:
        return 1
    else:
        return fib(n-1) + fib(n-2)
""",
    "grok/__init__.py": """\
# grok/__init__.py
print("I'm grok.__init__")
""",
    "grok/blah.py": """\
# grok/blah.py
print("I'm grok.blah")
""",
}

_DEMO_MODULES = ("fib", "spam", "grok", "grok.blah")


def write_tree(root: Path) -> None:
    for rel, text in DEMO_TREE.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


@contextlib.contextmanager
def _clean_modules() -> Iterator[None]:
    """Leave the caller's sys.modules as it was (the demo's names are common)."""
    saved = {name: sys.modules.pop(name) for name in _DEMO_MODULES if name in sys.modules}
    try:
        yield
    finally:
        for name in _DEMO_MODULES:
            sys.modules.pop(name, None)
        sys.modules.update(saved)


def _session(say: Callable[[str], None], statement: str, run: Callable[[], object]) -> None:
    say(f">>> {statement}")
    result = run()
    if result is not None:
        say(repr(result))


def run_demo(say: Callable[[str], None] = print) -> int:
    from .. import Config, SecureImportError, install
    from .._format.keys import PrivateKey
    from .._format.paths import BUNDLE_NAME
    from ..publish.keyfile import write_public_key
    from ..publish.signing import sign_tree
    from .devserver import TreeServer
    from .local_ca import make_local_ca

    with tempfile.TemporaryDirectory(prefix="secure-urlimport-demo-") as tmp_name, _clean_modules():
        tmp = Path(tmp_name)
        tree = tmp / "testcode"
        write_tree(tree)
        key = PrivateKey.generate()
        write_public_key(key.public, tmp / "demo.pub")
        say(f"# 1. key pair made: demo.pub (key id {key.keyid}); the private key stays in memory")
        result = sign_tree(tree, [key])
        say(f"# 2. signed {result.files} files of the example tree as version {result.version}")
        ca = make_local_ca(tmp / "ca")
        with TreeServer(tree, certfile=str(ca.cert_file), keyfile=str(ca.key_file)) as server:
            say(f"# 3. serving it at {server.url} (HTTPS, certificate from a local demo CA)")
            config = Config(cafile=str(ca.ca_file), cache_dir=tmp / "state")
            say(f">>> secure_urlimport.install({server.url!r}, pubkey='demo.pub', cafile=...)")
            with install(server.url, pubkey=tmp / "demo.pub", config=config):
                _session(say, "import fib", lambda: importlib.import_module("fib") and None)
                _session(say, "fib.fib(10)", lambda: sys.modules["fib"].fib(10))
                _session(say, "import spam", lambda: importlib.import_module("spam") and None)
                _session(say, "spam.hello('Guido')", lambda: sys.modules["spam"].hello("Guido"))
                _session(
                    say, "import grok.blah", lambda: importlib.import_module("grok.blah") and None
                )
                _session(say, "grok.blah.__file__", lambda: sys.modules["grok.blah"].__file__)
            say("# 4. now an attacker on the server flips one byte of fib.py (and of the")
            say("#    bundle that holds every module), and a new client imports it ...")
            _flip_one_byte(tree / "fib.py")
            _flip_one_byte(tree / BUNDLE_NAME)  # fib.py comes first in it
            sys.modules.pop("fib", None)
            new_client = config.replace(cache_dir=tmp / "new-client")
            with install(server.url, pubkey=tmp / "demo.pub", config=new_client):
                say(">>> import fib")
                try:
                    importlib.import_module("fib")
                except SecureImportError as exc:
                    say(f"{type(exc).__name__}: {exc}")
                    say('# refused: the altered module never ran (no "I\'m fib" above)')
                else:
                    say("!!! the tampered module was imported: this is a bug")
                    return 1
    return 0


def _flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    index = data.index(b"fib")  # inside the print() string: still valid Python
    data[index] ^= 0x20  # 'f' -> 'F'
    path.write_bytes(bytes(data))
