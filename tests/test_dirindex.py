"""The manifest's directory index answers exactly what the set of every
directory prefix answered (the quadratic structure it replaced, issue #11 item 9)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from secure_urlimport._format.dirindex import DirectoryIndex

# Few letters, so paths share prefixes; '-', '.' and '0' sort right next to
# '/', where a range search over sorted paths could go wrong.
_component = st.text(alphabet="ab-.0/\u00e9", min_size=1, max_size=3).filter(lambda c: "/" not in c)
_path = st.lists(_component, min_size=1, max_size=6).map("/".join)


def _reference_directories(paths: set[str]) -> set[str]:
    dirs = {""}
    for path in paths:
        parts = path.split("/")[:-1]
        dirs.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    return dirs


def _reference_children(paths: set[str], directory: str) -> list[str]:
    prefix = f"{directory}/" if directory else ""
    return sorted({p[len(prefix) :].split("/", 1)[0] for p in paths if p.startswith(prefix)})


@given(st.sets(_path, max_size=30), st.lists(_path, max_size=10))
def test_index_agrees_with_the_set_of_every_directory_prefix(paths, probes):
    index = DirectoryIndex(paths)
    dirs = _reference_directories(paths)
    assert set(index) == dirs and len(index) == len(dirs)
    for candidate in [*dirs, *paths, *probes, "", "a/"]:
        assert (candidate in index) == (candidate in dirs), candidate
        assert index.children(candidate) == _reference_children(paths, candidate)
        prefix = f"{candidate}/" if candidate else ""
        below = sorted(p for p in paths if p.startswith(prefix))
        assert list(index.files_below(candidate, recursive=True)) == below
        assert list(index.files_below(candidate, recursive=False)) == [
            p for p in below if "/" not in p[len(prefix) :]
        ]


def test_index_of_no_files_has_only_the_root():
    index = DirectoryIndex([])
    assert set(index) == {""} and "" in index and "a" not in index
    assert 3 not in index  # type: ignore[comparison-overlap]  # not a path: simply absent
    assert index.children("") == []


def test_set_operators_give_plain_sets_of_directories():
    index = DirectoryIndex(["a/b/c.txt", "d.txt"])
    assert index | {"x"} == {"", "a", "a/b", "x"} and index - {""} == {"a", "a/b"}
    assert isinstance(index & {"a"}, frozenset)
