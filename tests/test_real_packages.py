"""Real packages from PyPI, signed, served over real HTTPS and imported in fresh interpreters.

Each test copies an installed package (``networkx``, ``tzdata``, ``pygments``)
out of site-packages, signs the copy, serves it with the project's server and
runs the same workload twice in fresh interpreters: once against the local
install (the reference) and once with the signed tree ``install()``ed.  The two
results must be equal, and the remote run must prove where its code and data
came from:

- every module of the package in ``sys.modules`` has an ``https://`` ``__file__``;
- an audit hook (``sys.addaudithook``) sees no ``open``/``listdir``/``scandir``
  of the local install or of the served directory, so no byte was read around
  the importer (the local reference run shows the hook does see such opens);
- the server's request log shows the data files were fetched over HTTPS.

networkx also runs a substantial part of its own test suite (shipped inside the
package) with ``pytest.main`` in the subprocess.  The test modules themselves
are imported by their real dotted names (``networkx.classes.tests.test_graph``)
so they too come from the signed tree; the local copies of the test files only
give pytest paths to collect and report.

These are the slowest tests of the suite (a few seconds to ~30 s each on two
cores); ``-k 'not real_packages'`` leaves them out.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from conftest import REPO, Signer, TLSFiles

from secure_urlimport.cli.devserver import TreeServer

TIMEOUT = 300

# -- what runs in the fresh interpreters -----------------------------------------

#: Shared start of every subprocess script.  Reads its configuration from the JSON
#: file named by argv[1]; with a "url", installs the signed tree before anything
#: else can import the package.
PRELUDE = r'''
import json
import os
import sys

CONFIG = json.loads(open(sys.argv[1], encoding="utf-8").read())
PACKAGE = CONFIG["package"]
WATCHED = [os.path.realpath(p) for p in CONFIG["watched"]]
TOUCHED = []


def _audit(event, args):
    # Every open/listdir/scandir of the local install or of the served directory.
    if event not in ("open", "os.listdir", "os.scandir") or not args:
        return
    path = args[0]
    if not isinstance(path, (str, bytes, os.PathLike)):
        return
    path = os.path.realpath(os.fsdecode(path))
    for root in WATCHED:
        if path == root or path.startswith(root + os.sep):
            TOUCHED.append(f"{event} {path}")


sys.addaudithook(_audit)
assert PACKAGE not in sys.modules, f"{PACKAGE} was imported before the tree was installed"

if CONFIG["url"]:
    import secure_urlimport

    secure_urlimport.install(CONFIG["url"], pubkey=CONFIG["pubkey"], cafile=CONFIG["cafile"])


def finish(result):
    """Write *result* plus where every module of the package came from."""
    modules = {
        name: getattr(module, "__file__", None)
        for name, module in list(sys.modules.items())
        if name == PACKAGE or name.startswith(PACKAGE + ".")
    }
    result["modules"] = modules
    result["touched"] = TOUCHED[:20]
    result["touched_count"] = len(TOUCHED)
    with open(CONFIG["result"], "w", encoding="utf-8") as handle:
        json.dump(result, handle)
'''

NETWORKX_SCRIPT = (
    PRELUDE
    + r'''
import importlib
import importlib.resources
import pathlib

import networkx
import pytest

ROOT = pathlib.Path(CONFIG["collect"])


class ByName(pytest.Module):
    """A test file imported by its real dotted name, so from wherever the package is.

    The file on disk under ROOT only gives pytest a path to collect and report.
    """

    def _getobj(self):
        name = ".".join(self.path.relative_to(ROOT).with_suffix("").parts)
        module = importlib.import_module(name)
        self.config.pluginmanager.consider_module(module)
        return module


class Harness:
    def __init__(self):
        self.outcomes = {}
        self.failures = {}
        self.deselected = []

    def pytest_deselected(self, items):
        self.deselected += [item.nodeid for item in items]

    @pytest.hookimpl(tryfirst=True)
    def pytest_pycollect_makemodule(self, module_path, parent):
        return ByName.from_parent(parent, path=module_path)

    def pytest_collectreport(self, report):
        if not report.passed:
            self.outcomes[report.nodeid] = f"collect-{report.outcome}"
            self.failures[report.nodeid] = str(report.longrepr)[-2000:]

    def pytest_runtest_logreport(self, report):
        xfail = hasattr(report, "wasxfail")
        if report.when == "call":
            outcome = report.outcome
            if xfail:
                outcome = "xpassed" if report.passed else "xfailed"
        elif report.failed:
            outcome = "error"
        elif report.skipped:
            outcome = "xfailed" if xfail else "skipped"
        else:
            return
        self.outcomes[report.nodeid] = outcome
        if report.failed:
            self.failures[report.nodeid] = str(report.longrepr)[-2000:]


harness = Harness()
# networkx's own conftest (options, the "slow" marker, fixtures), as a plugin:
# imported by name like the tests, so it is the remote one in the remote run.
conftest = importlib.import_module("networkx.conftest")
deselect = [arg for node in CONFIG["deselect"] for arg in ("--deselect", node)]
exit_code = pytest.main(
    ["-q", "-p", "no:cacheprovider", "--noconftest", "--assert=plain",
     "-c", str(ROOT / "pytest.ini"), "--rootdir", str(ROOT), *deselect, *CONFIG["paths"]],
    plugins=[harness, conftest],
)

# The data files of the deselected tests, read the portable way: read_bytes(),
# and as_file() where networkx's code insists on a file name.
import bz2
import pickle
from importlib.resources import as_file, files

import networkx.generators.atlas

flow = files("networkx.algorithms.flow.tests")
netgen = pickle.loads(bz2.decompress((flow / "netgen-2.gpickle.bz2").read_bytes()))
with as_file(flow / "gl1.gpickle.bz2") as path, bz2.BZ2File(path) as handle:
    gl1 = pickle.load(handle)
with as_file(files("networkx.generators") / "atlas.dat.gz") as path:
    saved, networkx.generators.atlas.ATLAS_FILE = networkx.generators.atlas.ATLAS_FILE, path
    atlas = networkx.graph_atlas_g()
    networkx.generators.atlas.ATLAS_FILE = saved
vf2 = importlib.import_module("networkx.algorithms.isomorphism.tests.test_isomorphvf2")
iso = files("networkx.algorithms.isomorphism.tests")
with as_file(iso / "iso_r01_s80.A99") as a, as_file(iso / "iso_r01_s80.B99") as b:
    g1, g2 = vf2.TestVF2GraphDB.create_graph(a), vf2.TestVF2GraphDB.create_graph(b)

finish({
    "exit_code": int(exit_code),
    "outcomes": harness.outcomes,
    "failures": harness.failures,
    "deselected": harness.deselected,
    "file": networkx.__file__,
    "version": networkx.__version__,
    "conftest": conftest.__file__,
    "atlas_file": str(files("networkx.generators") / "atlas.dat.gz"),
    "data": {
        "netgen-2 min cost": networkx.network_simplex(netgen)[0],
        "gl1 max flow": networkx.maximum_flow_value(gl1, 1, len(gl1)),
        "atlas graphs": len(atlas),
        "atlas edges": sum(g.number_of_edges() for g in atlas),
        "vf2 isomorphic": networkx.is_isomorphic(g1, g2),
    },
})
'''
)

TZDATA_SCRIPT = (
    PRELUDE
    + r"""
import importlib.resources
import zoneinfo
from datetime import UTC, datetime

import tzdata

assert zoneinfo.TZPATH == (), zoneinfo.TZPATH  # PYTHONTZPATH="": tzdata is the only source
keys = sorted(zoneinfo.available_timezones())
instants = [datetime(year, month, 15, 12, tzinfo=UTC)
            for year in (1890, 1945, 1970, 1995, 2024, 2037, 2100) for month in (1, 7)]
# Both sides of the 2024 transitions in Europe and North America.
instants += [datetime(2024, 3, 31, 0, 59, tzinfo=UTC), datetime(2024, 3, 31, 1, 0, tzinfo=UTC),
             datetime(2024, 11, 3, 5, 59, tzinfo=UTC), datetime(2024, 11, 3, 6, 0, tzinfo=UTC)]
zones = {}
for key in keys:
    zone = zoneinfo.ZoneInfo(key)
    local = [t.astimezone(zone) for t in instants]
    zones[key] = [[x.isoformat(), x.tzname(), str(x.dst())] for x in local]
# The ambiguous hour in New York: fold picks the offset.
new_york = zoneinfo.ZoneInfo("America/New_York")
ambiguous = datetime(2024, 11, 3, 1, 30, tzinfo=new_york)
finish({
    "zones": zones,
    "fold": [str(ambiguous.utcoffset()), str(ambiguous.replace(fold=1).utcoffset())],
    "file": tzdata.__file__,
    "europe": str(importlib.resources.files("tzdata.zoneinfo.Europe")),
    "version": tzdata.IANA_VERSION,
})
"""
)

PYGMENTS_SCRIPT = (
    PRELUDE
    + r'''
import hashlib

import pygments
import pygments.formatters
import pygments.lexers
import pygments.styles

SAMPLE = """\
# A comment
def greet(name: str) -> str:
    return f"hello {name!r}" if name else 'nobody'  /* 42 */ <b>&amp;</b>
"""


def digest(value):
    return hashlib.sha256(repr(value).encode()).hexdigest()


lexers = {}
for name, aliases, _filenames, _mimetypes in pygments.lexers.get_all_lexers(plugins=False):
    if aliases:
        lexer = pygments.lexers.get_lexer_by_name(aliases[0])
        lexers[aliases[0]] = digest(list(lexer.get_tokens(SAMPLE)))
styles = {}
for style in sorted(pygments.styles.get_all_styles()):
    styles[style] = digest(pygments.formatters.HtmlFormatter(style=style).get_style_defs())
python = pygments.lexers.get_lexer_for_filename("example.py")
finish({
    "lexers": lexers,
    "styles": styles,
    "html": pygments.highlight(SAMPLE, python, pygments.formatters.HtmlFormatter()),
    "guessed": pygments.lexers.guess_lexer_for_filename("example.py", SAMPLE).name,
    "file": pygments.__file__,
})
'''
)


# -- the test side ----------------------------------------------------------------


def _installed(name: str) -> Path:
    """The directory of the locally installed package *name* (a test dependency)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        pytest.fail(f"{name} is a test dependency: pip install -e '.[test]'")
    return Path(next(iter(spec.submodule_search_locations)))


@dataclass
class Published:
    name: str
    installed: Path  # the package in site-packages (the local reference)
    tree: Path  # the signed directory the server serves (holds <name>/)
    server: TreeServer
    pub: Path
    cafile: str

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture
def publish(
    tmp_path: Path, publisher: Signer, serve: Callable[..., TreeServer], tls: TLSFiles
) -> Callable[[str], Published]:
    """``publish(name)``: copy the installed package, sign the copy and serve it."""

    def do(name: str) -> Published:
        installed = _installed(name)
        tree = tmp_path / f"{name}-tree"
        shutil.copytree(installed, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
        publisher.sign(tree)  # raises SigningError listing every file it refuses
        return Published(name, installed, tree, serve(tree), publisher.pub, tls.cafile)

    return do


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def requests_log() -> Iterator[Callable[[], str]]:
    """The server's request log (one line per request) during the test.

    Kept out of pytest's log capture: thousands of lines would bury a failure.
    """
    logger = logging.getLogger("secure_urlimport.cli.devserver")
    handler, level, propagate = _Lines(), logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield lambda: "\n".join(handler.lines)
    logger.removeHandler(handler)
    logger.setLevel(level)
    logger.propagate = propagate


Started = tuple[subprocess.Popen[str], Path]


def _start(
    script: str,
    published: Published,
    tmp_path: Path,
    tag: str,
    *,
    remote: bool,
    env: dict[str, str] | None = None,
    **config: object,
) -> Started:
    """Run *script* in a fresh interpreter; ``remote`` installs the signed tree first."""
    run_dir = tmp_path / f"run-{published.name}-{tag}"
    run_dir.mkdir()
    result = run_dir / "result.json"
    config_file = run_dir / "config.json"
    config_file.write_text(
        json.dumps(
            {
                "package": published.name,
                "url": published.url if remote else None,
                "pubkey": str(published.pub),
                "cafile": published.cafile,
                "watched": [str(published.installed), str(published.tree)],
                "result": str(result),
                **config,
            }
        ),
        encoding="utf-8",
    )
    script_file = run_dir / "run.py"
    script_file.write_text(script, encoding="utf-8")
    child_env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "PYTHONTZPATH")
    }
    # Client state goes to this run's own directory; the conftest fixture
    # already removed the machine's CA and proxy variables from os.environ.
    child_env["SECURE_URLIMPORT_CACHE_DIR"] = str(run_dir / "client-state")
    child_env["PYTHONPATH"] = str(REPO)
    child_env["PYTHONDONTWRITEBYTECODE"] = "1"
    child_env.update(env or {})
    process = subprocess.Popen(
        [sys.executable, str(script_file), str(config_file)],
        cwd=run_dir,
        env=child_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return process, result


def _finish(started: Started) -> dict:
    process, result = started
    try:
        output, _ = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"subprocess timed out:\n{output[-5000:]}")
    assert process.returncode == 0, output[-5000:]
    assert result.exists(), output[-5000:]
    data: dict = json.loads(result.read_text(encoding="utf-8"))
    data["output"] = output
    return data


def _local_and_remote(
    script: str,
    published: Published,
    tmp_path: Path,
    *,
    env: dict[str, str] | None = None,
    **config: object,
) -> tuple[dict, dict]:
    """The same script against the local install and the signed tree, side by side."""
    local = _start(script, published, tmp_path, "local", remote=False, env=env, **config)
    remote = _start(script, published, tmp_path, "remote", remote=True, env=env, **config)
    try:
        return _finish(local), _finish(remote)
    finally:
        for process, _ in (local, remote):
            if process.poll() is None:  # the other run failed first: do not leave it behind
                process.kill()
                process.communicate()


def _assert_origins(published: Published, local: dict, remote: dict, minimum: int) -> None:
    """The local run used the install; the remote run used only the signed tree."""
    url = published.url + f"/{published.name}/"
    here = os.path.realpath(published.installed)
    assert local["file"].startswith(here), local["file"]
    assert local["touched_count"] > 0, "the audit hook saw nothing: it proves nothing"
    assert remote["file"] == url + "__init__.py"
    assert remote["touched"] == [], f"read around the importer: {remote['touched']}"
    not_remote = {
        name: file
        for name, file in remote["modules"].items()
        if file is not None and not file.startswith(url)
    }
    assert not not_remote, not_remote
    assert len(remote["modules"]) >= minimum, sorted(remote["modules"])
    assert remote["modules"].keys() == local["modules"].keys()


# -- networkx: its own test suite against the remote copy -------------------------

#: A substantial, quick part of networkx's own suite (2,200-3,100 tests by version): the
#: graph classes, generators, shortest paths, traversal, components, reading/writing
#: graphs, min-cost and max flow, VF2 isomorphism.
NETWORKX_TESTS = [
    "networkx/classes/tests",
    "networkx/generators/tests",
    "networkx/algorithms/shortest_paths/tests",
    "networkx/algorithms/traversal/tests",
    "networkx/algorithms/components/tests",
    "networkx/readwrite/tests",
    "networkx/algorithms/flow/tests/test_mincost.py",
    "networkx/algorithms/flow/tests/test_networksimplex.py",
    "networkx/algorithms/flow/tests/test_maxflow_large_graph.py",
    "networkx/algorithms/isomorphism/tests/test_isomorphvf2.py",
]
#: Deselected in both runs: these tests pass ``importlib.resources.files(pkg) / name``
#: to ``open()``/``gzip.open()``/``bz2.BZ2File()``, which works only when ``files()``
#: happens to be a ``pathlib.Path``.  The ``Traversable`` API does not promise that:
#: they fail the same way (TypeError) when networkx is imported from a zip file by
#: the standard zipimport.  Their data files are read the portable way instead
#: (``read_bytes()``/``as_file()``) at the end of NETWORKX_SCRIPT.
NETWORKX_NEEDS_FILE_PATHS = [
    "networkx/generators/tests/test_atlas.py",
    "networkx/algorithms/isomorphism/tests/test_isomorphvf2.py::TestAtlas",
    "networkx/algorithms/isomorphism/tests/test_isomorphvf2.py::TestVF2GraphDB",
    "networkx/algorithms/flow/tests/test_mincost.py::TestMinCostFlow::test_large",
    "networkx/algorithms/flow/tests/test_networksimplex.py::test_large",
    "networkx/algorithms/flow/tests/test_maxflow_large_graph.py::TestMaxflowLargeGraph::test_gl1",
    "networkx/algorithms/flow/tests/test_maxflow_large_graph.py::TestMaxflowLargeGraph::test_wlm3",
    "networkx/algorithms/flow/tests/test_maxflow_large_graph.py::"
    "TestMaxflowLargeGraph::test_preflow_push_global_relabel",
]
#: Data files the remote run must have fetched over HTTPS.
NETWORKX_DATA = [
    "networkx/generators/atlas.dat.gz",
    "networkx/algorithms/flow/tests/gl1.gpickle.bz2",
    "networkx/algorithms/flow/tests/netgen-2.gpickle.bz2",
    "networkx/algorithms/isomorphism/tests/iso_r01_s80.A99",
    "networkx/algorithms/isomorphism/tests/iso_r01_s80.B99",
]


def test_networkx_own_test_suite_gives_the_same_results_from_the_signed_tree(
    publish: Callable[[str], Published], tmp_path: Path, requests_log: Callable[[], str]
):
    published = publish("networkx")
    collect = tmp_path / "collect"  # local copies of the test files: paths for pytest only
    for rel in NETWORKX_TESTS:
        source = published.tree / rel
        assert source.exists(), f"{rel} is not in this networkx; update NETWORKX_TESTS"
        files = sorted(source.glob("test_*.py")) if source.is_dir() else [source]
        for file in files:
            target = collect / file.relative_to(published.tree)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, target)
    (collect / "pytest.ini").write_text("[pytest]\n", encoding="ascii")
    local, remote = _local_and_remote(
        NETWORKX_SCRIPT,
        published,
        tmp_path,
        collect=str(collect),
        paths=[str(collect / rel) for rel in NETWORKX_TESTS],
        deselect=NETWORKX_NEEDS_FILE_PATHS,
    )

    _assert_origins(published, local, remote, minimum=100)
    url = published.url + "/networkx/"
    assert remote["conftest"] == url + "conftest.py"
    assert remote["atlas_file"] == url + "generators/atlas.dat.gz"
    test_modules = {n: f for n, f in remote["modules"].items() if ".tests.test_" in n}
    assert len(test_modules) >= 60, sorted(test_modules)
    log = requests_log()
    for rel in NETWORKX_DATA:
        assert f'"GET /{quote(rel)} HTTP/1.1" 200' in log, f"{rel} was not fetched over HTTPS"

    counts = Counter(remote["outcomes"].values())
    summary = f"local {dict(Counter(local['outcomes'].values()))}, remote {dict(counts)}"
    assert counts["passed"] >= 2000, summary
    assert remote["exit_code"] == local["exit_code"], summary
    differ = {
        node: (local["outcomes"].get(node), outcome)
        for node, outcome in remote["outcomes"].items()
        if local["outcomes"].get(node) != outcome
    }
    differ.update(
        {
            node: (outcome, None)
            for node, outcome in local["outcomes"].items()
            if node not in remote["outcomes"]
        }
    )
    assert not differ, (
        summary,
        dict(list(differ.items())[:20]),
        {n: remote["failures"].get(n) for n in list(differ)[:3]},
    )
    assert len(remote["deselected"]) >= 10
    assert remote["deselected"] == local["deselected"]
    # The deselected tests' data, read portably; the numbers are the ones their tests expect.
    assert remote["data"] == local["data"]
    assert remote["data"]["netgen-2 min cost"] == 6749969302
    assert remote["data"]["gl1 max flow"] == 156545
    assert remote["data"]["atlas graphs"] == 1253
    assert remote["data"]["vf2 isomorphic"] is True
    print(
        f"networkx {remote['version']}: {summary}; deselected {len(remote['deselected'])};"
        f" {len(remote['modules'])} modules ({len(test_modules)} test modules) from {url}"
    )


# -- tzdata: every zone, read by zoneinfo through importlib.resources -------------


def test_tzdata_every_zone_from_the_signed_tree_matches_the_local_install(
    publish: Callable[[str], Published], tmp_path: Path, requests_log: Callable[[], str]
):
    published = publish("tzdata")
    # PYTHONTZPATH="": zoneinfo must not use the system's /usr/share/zoneinfo.
    local, remote = _local_and_remote(
        TZDATA_SCRIPT,
        published,
        tmp_path,
        env={"PYTHONTZPATH": ""},
    )

    _assert_origins(published, local, remote, minimum=20)
    assert remote["europe"] == published.url + "/tzdata/zoneinfo/Europe"
    assert remote["version"] == local["version"]
    assert len(remote["zones"]) >= 400
    assert remote["zones"] == local["zones"]
    assert remote["fold"] == local["fold"] == ["-1 day, 20:00:00", "-1 day, 19:00:00"]
    # Independent of both runs: known offsets, so "equal" cannot mean "equally wrong".
    summer, winter = 9, 8  # 2024-07-15 and 2024-01-15 in TZDATA_SCRIPT's instants
    zones = remote["zones"]
    assert zones["Europe/Paris"][summer][:2] == ["2024-07-15T14:00:00+02:00", "CEST"]
    assert zones["Europe/Paris"][winter][:2] == ["2024-01-15T13:00:00+01:00", "CET"]
    assert zones["America/New_York"][winter][:2] == ["2024-01-15T07:00:00-05:00", "EST"]
    assert zones["Asia/Kathmandu"][summer][0] == "2024-07-15T17:45:00+05:45"
    assert zones["America/Argentina/Buenos_Aires"][summer][0] == "2024-07-15T09:00:00-03:00"
    log = requests_log()
    root = published.tree
    for rel in (
        "tzdata/zones",
        "tzdata/zoneinfo/Europe/Paris",
        "tzdata/zoneinfo/Etc/GMT+5",
        "tzdata/zoneinfo/America/Argentina/Buenos_Aires",
    ):
        # The cache is content-addressed: a zone identical to one fetched
        # before (a link, such as Europe/Monaco) is not downloaded twice.
        twins = [
            p
            for p in root.rglob("*")
            if p.is_file() and p.read_bytes() == (root / rel).read_bytes()
        ]
        assert any(
            f'"GET /{quote(t.relative_to(root).as_posix())} HTTP/1.1" 200' in log for t in twins
        ), f"{rel} was not fetched over HTTPS"


# -- pygments: hundreds of modules imported dynamically ---------------------------


def test_pygments_every_lexer_and_style_from_the_signed_tree_matches_the_local_install(
    publish: Callable[[str], Published], tmp_path: Path
):
    published = publish("pygments")
    local, remote = _local_and_remote(PYGMENTS_SCRIPT, published, tmp_path)

    _assert_origins(published, local, remote, minimum=150)
    assert len(remote["lexers"]) >= 400 and len(remote["styles"]) >= 30
    assert remote["lexers"] == local["lexers"]
    assert remote["styles"] == local["styles"]
    assert remote["html"] == local["html"] and '<span class="k">def</span>' in remote["html"]
    assert remote["guessed"] == local["guessed"] == "Python"
