"""``python -m secure_urlimport`` is the ``secure-urlimport`` command."""

import sys

from .cli import main

sys.exit(main())
