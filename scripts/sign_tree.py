#!/usr/bin/env python3
"""Sign a source tree for publishing: ``python scripts/sign_tree.py DIR --key KEY``.

A thin wrapper, identical to ``secure-urlimport sign DIR --key KEY ...``; run
``python scripts/sign_tree.py --help`` for the options.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from secure_urlimport.cli.main import main
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from secure_urlimport.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["sign", *sys.argv[1:]]))
