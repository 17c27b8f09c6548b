"""scripts/hand_mutants.py still applies: every hand-made mutant's text occurs exactly once
in the module it weakens (a reformat or a move must not silently turn one into a no-op)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _hand_mutants():  # the script is not a package module: load it by path
    spec = importlib.util.spec_from_file_location(
        "hand_mutants", REPO / "scripts" / "hand_mutants.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["hand_mutants"] = module
    spec.loader.exec_module(module)
    return module


HAND = _hand_mutants()


@pytest.mark.parametrize("mutant", HAND.MUTANTS, ids=lambda m: m.name)
def test_each_hand_made_mutant_applies_to_exactly_one_place(mutant):
    text = HAND.module_path(REPO, mutant).read_text(encoding="utf-8")
    assert text.count(mutant.old) == 1
    assert mutant.new != mutant.old
