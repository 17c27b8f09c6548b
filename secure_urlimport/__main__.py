"""``python -m secure_urlimport`` is the ``secure-urlimport`` command."""

import sys

from .cli.main import main

sys.exit(main())
