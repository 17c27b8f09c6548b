"""The commands that run something: ``serve``, ``run`` and ``demo``."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import SecureImportError

if TYPE_CHECKING:
    pass

from .common import EXIT_OK, UsageError, check_pins

__all__ = ["cmd_demo", "cmd_run", "cmd_serve"]


def cmd_serve(args: argparse.Namespace) -> int:
    import tempfile

    from .devserver import TreeServer
    from .local_ca import make_local_ca

    if not args.directory.is_dir():
        raise UsageError(f"{args.directory} is not a directory")
    if (args.cert is None) != (args.key is None):
        raise UsageError("--cert and --key go together")
    with tempfile.TemporaryDirectory(prefix="secure-urlimport-ca-") as tmp:
        cafile = None
        certfile, keyfile = args.cert, args.key
        if certfile is None:
            ca = make_local_ca(Path(tmp), hostnames=(args.host, "localhost"))
            certfile, keyfile, cafile = str(ca.cert_file), str(ca.key_file), str(ca.ca_file)
        server = TreeServer(
            args.directory, certfile=certfile, keyfile=keyfile, host=args.host, port=args.port
        )
        pub = args.pubkey or "publisher.pub"
        print(f"Serving {args.directory} at {server.url}")
        ca_arg = ""
        if cafile:
            print(f"CA certificate (trust it in the consumer): {cafile}")
            ca_arg = f", cafile={cafile!r}"
        print(
            f"Paste in the consumer:\n  secure_urlimport.install({server.url!r}, "
            f"pubkey={pub!r}{ca_arg})",
            flush=True,
        )
        # SIGTERM ends the server like Ctrl-C, so the temporary CA is removed.
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            print("stopped", flush=True)
        finally:
            server.stop()
    return EXIT_OK


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def cmd_run(args: argparse.Namespace) -> int:
    """``python -m MODULE ARGS`` for a module of a signed remote tree."""
    import runpy

    from ..api import install
    from .runner import import_signed_packages

    check_pins(args)
    if args.root is not None:
        importer = install(
            args.url,
            root=[Path(p) for p in args.root],
            root_threshold=args.root_threshold,
            cafile=args.cafile,
            name=args.name,
        )
    else:
        importer = install(
            args.url,
            pubkey=[Path(p) for p in args.pubkey],
            cafile=args.cafile,
            threshold=args.threshold,
            name=args.name,
        )
    # Not importlib.util.find_spec: it imports parents, from the working
    # directory if need be, before the name could be refused (runner.py).
    import_signed_packages(importer, args.module)
    # As with python -m, the module sees only its own arguments (runpy then
    # puts the module's location, its URL, in argv[0]).
    sys.argv = [args.module, *args.args]
    try:
        runpy.run_module(args.module, run_name="__main__", alter_sys=True)
    except ImportError as exc:
        # runpy wraps loading errors in a plain ImportError; show ours as one line.
        if type(exc) is ImportError and isinstance(exc.__cause__, SecureImportError):
            raise exc.__cause__ from None
        raise
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo()
