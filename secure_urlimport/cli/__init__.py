"""The ``secure-urlimport`` command line, the development server and the demo."""

from .main import main

__all__ = ["main"]
