"""A real CDN tier: consumers behind a caching nginx edge while a release is published.

The origin (nginx) serves the tree; an edge (nginx ``proxy_cache``,
tests/nginx_edge.py) in front keeps 200s for 10 minutes whatever the origin
says.  Release 1 is cached at the edge, release 2 is published at the origin,
and then the edge is made to serve each mix of the two a real CDN can: a new
manifest with the old bundle and files, the old manifest with new files, the
old manifest to a consumer that has already seen the new one.  Two kinds of
edge: one that revalidates with the origin on the client's ``Cache-Control:
no-cache`` retry, and one that ignores it and serves its copy until the TTL.

Each consumer is a fresh Python process.  Every module of the tree logs the
release it belongs to when it runs, so a test sees exactly which code ran: it
is always one whole release, or nothing (a verification error), never a mix.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import Signer, write_tree
from nginx_edge import Edge

from secure_urlimport._format.paths import BUNDLE_NAME, MANIFEST_NAME

MODULES = ("app/__init__.py", "app/core.py", "app/util.py")
EVERYTHING = (MANIFEST_NAME, BUNDLE_NAME, *MODULES)
CHANGED = ("app/__init__.py", "app/core.py")  # util.py is the same in both releases

# Each module appends "<module> <release>" to $RAN when it runs.
_LOG = "import os\nopen(os.environ['RAN'], 'a').write(__name__ + ' {release}\\n')\n"

CONSUMER = """
import json, logging, sys
import secure_urlimport
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
url, pub, ca = sys.argv[1:4]
try:
    secure_urlimport.install(url, pubkey=pub, cafile=ca)
    import app.core, app.util
    print(json.dumps({"release": app.core.RELEASE, "util": app.util.VALUE}))
except secure_urlimport.SecureImportError as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
"""


def _release(directory: Path, release: int, signer: Signer) -> Path:
    """Release *release* of the tree: app and app.core carry its number;
    core.py of release 1 is the longer one, so a stale copy of it is longer
    than release 2 signs (refused by length), __init__.py the same length
    (refused by digest); util.py does not change."""
    padding = "#" * (400 if release == 1 else 100)
    write_tree(
        directory,
        {
            "app/__init__.py": _LOG.format(release=release) + f"RELEASE = {release}\n",
            "app/core.py": _LOG.format(release=release)
            + f"from . import RELEASE as PACKAGE_RELEASE\nRELEASE = {release}\n"
            + "assert PACKAGE_RELEASE == RELEASE, 'a mix of two releases'\n"
            + padding
            + "\n",
            "app/util.py": _LOG.format(release="any") + "VALUE = 'unchanged'\n",
        },
    )
    signer.sign(directory, version=release)
    return directory


@dataclass
class Site:
    """The origin's document root, switched between releases as docs/hosting.md says."""

    root: Path
    releases: Path
    signer: Signer

    def publish(self, release: int) -> None:
        """Publish *release* in one step: a new directory, then the symlink switched."""
        target = _release(self.releases / str(release), release, self.signer)
        # A minute apart, as releases are: nginx's ETag is the mtime (in
        # seconds) and the size, so two releases signed within one second with
        # manifests of one length would share an ETag (docs/hosting.md).
        stamp = 1_700_000_000 + 60 * release
        for path in target.rglob("*"):
            os.utime(path, (stamp, stamp))
        link = self.root.with_name("next")
        link.symlink_to(target, target_is_directory=True)
        os.replace(link, self.root)


@pytest.fixture
def site(tmp_path: Path, publisher: Signer) -> Site:
    site = Site(tmp_path / "srv" / "current", tmp_path / "srv" / "releases", publisher)
    site.releases.mkdir(parents=True)
    site.publish(1)
    return site


@dataclass
class Outcome:
    """What one consumer process got."""

    result: dict[str, object]
    ran: list[str]
    stderr: str

    @property
    def release(self) -> object:
        return self.result.get("release")


def _consume(edge: Edge, publisher: Signer, state: Path, tmp_path: Path, *, cafile: str) -> Outcome:
    """Run a fresh consumer process behind *edge* with the client state *state*
    (reused to play a consumer that ran before)."""
    ran = tmp_path / f"ran-{len(list(tmp_path.glob('ran-*')))}"
    ran.touch()
    env = dict(os.environ, SECURE_URLIMPORT_CACHE_DIR=str(state), RAN=str(ran))
    done = subprocess.run(
        [sys.executable, "-c", CONSUMER, edge.url, str(publisher.pub), cafile],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    outcome = Outcome(json.loads(done.stdout), ran.read_text().splitlines(), done.stderr)
    _assert_one_release_ran(outcome)
    return outcome


def _assert_one_release_ran(outcome: Outcome) -> None:
    """The code that ran is of one release only (all of it, on success)."""
    releases = {line.split()[1] for line in outcome.ran if not line.startswith("app.util")}
    assert len(releases) <= 1, outcome
    if "release" in outcome.result:
        assert releases == {str(outcome.release)}, outcome
        assert outcome.result["util"] == "unchanged"


def _new_state(tmp_path: Path) -> Path:
    return tmp_path / f"consumer-{len(list(tmp_path.glob('consumer-*')))}"


EDGES = pytest.mark.parametrize(
    "honours_no_cache", [True, False], ids=["edge-revalidates-on-no-cache", "edge-ignores-no-cache"]
)


@EDGES
def test_consumers_get_the_old_release_cached_at_the_edge_until_it_is_refreshed(
    edge, site, publisher, tls, tmp_path, honours_no_cache
):
    cdn = edge(site.root, honours_no_cache=honours_no_cache)
    cdn.prime(*EVERYTHING)
    site.publish(2)

    old = _consume(cdn, publisher, _new_state(tmp_path), tmp_path, cafile=tls.cafile)
    assert old.release == 1  # the old release, whole and verified: a freshness delay only
    assert cdn.cache_statuses(MANIFEST_NAME)[-1] == "HIT"

    cdn.refresh(*EVERYTHING)  # the TTL ran out, or the publisher purged
    new = _consume(cdn, publisher, _new_state(tmp_path), tmp_path, cafile=tls.cafile)
    assert new.release == 2


@EDGES
def test_a_new_manifest_at_the_edge_with_the_old_bundle_ends_in_the_new_release(
    edge, site, publisher, tls, tmp_path, honours_no_cache
):
    # The edge has the old bundle; the files it never cached come from the origin.
    cdn = edge(site.root, honours_no_cache=honours_no_cache)
    cdn.prime(MANIFEST_NAME, BUNDLE_NAME)
    site.publish(2)
    cdn.refresh(MANIFEST_NAME)

    got = _consume(cdn, publisher, _new_state(tmp_path), tmp_path, cafile=tls.cafile)
    assert got.release == 2
    assert cdn.cache_statuses(BUNDLE_NAME)[-1] == "HIT"  # the old bundle was served, and unused
    assert cdn.cache_statuses("app/core.py") == ["MISS"]


def test_a_new_manifest_at_the_edge_with_old_files_gets_them_past_the_edge(
    edge, site, publisher, tls, tmp_path
):
    # Manifest new, bundle and modules old at the edge.  The old __init__.py
    # has the new one's length (refused by digest), the old core.py is longer
    # (refused by length): both are asked for again with no-cache.
    cdn = edge(site.root, honours_no_cache=True)
    cdn.prime(*EVERYTHING)
    site.publish(2)
    cdn.refresh(MANIFEST_NAME)

    got = _consume(cdn, publisher, _new_state(tmp_path), tmp_path, cafile=tls.cafile)
    assert got.release == 2
    for path in CHANGED:
        assert cdn.cache_statuses(path)[-2:] == ["HIT", "BYPASS"], path
    assert cdn.cache_statuses("app/util.py")[-1] == "HIT"  # unchanged: the edge's copy is good


def test_a_new_manifest_with_old_files_at_an_edge_ignoring_no_cache_is_refused_until_they_expire(
    edge, site, publisher, tls, tmp_path
):
    cdn = edge(site.root, honours_no_cache=False)
    cdn.prime(*EVERYTHING)
    site.publish(2)
    cdn.refresh(MANIFEST_NAME)

    refused = _consume(cdn, publisher, _new_state(tmp_path), tmp_path, cafile=tls.cafile)
    assert refused.result["error"] == "TamperedFileError"
    assert refused.ran == []  # the old __init__.py never ran under the new manifest
    message = str(refused.result["message"])
    assert "app/__init__.py" in message and "no-cache" in message and "CDN" in message
    assert cdn.cache_statuses("app/__init__.py")[-2:] == ["HIT", "HIT"]

    cdn.refresh(*CHANGED)  # their TTL ran out, or the publisher purged them
    got = _consume(cdn, publisher, _new_state(tmp_path), tmp_path, cafile=tls.cafile)
    assert got.release == 2


def test_the_old_manifest_and_bundle_at_the_edge_with_new_files_give_the_old_release(
    edge, site, publisher, tls, tmp_path
):
    cdn = edge(site.root, honours_no_cache=False)
    cdn.prime(MANIFEST_NAME, BUNDLE_NAME)
    site.publish(2)

    got = _consume(cdn, publisher, _new_state(tmp_path), tmp_path, cafile=tls.cafile)
    assert got.release == 1  # every module from the old bundle; no new file was asked for
    assert cdn.cache_statuses("app/core.py") == []


def test_the_old_manifest_at_the_edge_with_new_files_ends_in_the_new_release_fetched_past_it(
    edge, site, publisher, tls, tmp_path
):
    # The edge kept the old manifest but never cached a file (or dropped them):
    # the bundle and files it fetches now are the new release's.
    cdn = edge(site.root, honours_no_cache=True)
    cdn.prime(MANIFEST_NAME)
    site.publish(2)

    got = _consume(cdn, publisher, _new_state(tmp_path), tmp_path, cafile=tls.cafile)
    assert got.release == 2
    assert "the manifest a cache served (version 1) is older than the files" in got.stderr
    assert cdn.cache_statuses(MANIFEST_NAME)[-2:] == ["HIT", "BYPASS"]


def test_the_old_manifest_with_new_files_at_an_edge_ignoring_no_cache_is_refused_until_it_expires(
    edge, site, publisher, tls, tmp_path
):
    cdn = edge(site.root, honours_no_cache=False)
    cdn.prime(MANIFEST_NAME)
    site.publish(2)

    refused = _consume(cdn, publisher, _new_state(tmp_path), tmp_path, cafile=tls.cafile)
    assert refused.result["error"] == "TamperedFileError"
    assert refused.ran == []
    assert "no-cache" in str(refused.result["message"])
    assert cdn.cache_statuses(MANIFEST_NAME)[-2:] == ["HIT", "HIT"]  # asked past it, in vain

    cdn.refresh(MANIFEST_NAME)
    got = _consume(cdn, publisher, _new_state(tmp_path), tmp_path, cafile=tls.cafile)
    assert got.release == 2


def test_a_consumer_that_ran_old_code_is_refused_a_new_file_rather_than_switching_release(
    edge, site, publisher, tls, tmp_path
):
    # The old manifest and the old app/__init__.py at the edge, the new core.py:
    # app ran as release 1, so switching to release 2 for app.core would mix them.
    cdn = edge(site.root, honours_no_cache=True)
    cdn.prime(MANIFEST_NAME, "app/__init__.py")
    site.publish(2)

    refused = _consume(cdn, publisher, _new_state(tmp_path), tmp_path, cafile=tls.cafile)
    assert refused.ran == ["app 1"]
    assert refused.result["error"] == "TamperedFileError"
    assert "app/core.py" in str(refused.result["message"])
    assert cdn.cache_statuses(MANIFEST_NAME) == ["MISS", "HIT"]  # no switch was tried


def _saw_release_2_at_a_fresh_pop_then_meets_a_stale_pop(
    edge, site, publisher, tls, tmp_path, *, honours_no_cache: bool
) -> tuple[Edge, Outcome]:
    """One URL, two points of presence: the stale one cached release 1; a
    consumer gets release 2 from the fresh one (and records it), then is sent
    to the stale one."""
    cdn = edge(site.root, honours_no_cache=honours_no_cache, pop="stale")
    cdn.prime(*EVERYTHING)
    site.publish(2)
    cdn.switch_pop("fresh")
    state = _new_state(tmp_path)
    assert _consume(cdn, publisher, state, tmp_path, cafile=tls.cafile).release == 2
    cdn.switch_pop("stale")
    return cdn, _consume(cdn, publisher, state, tmp_path, cafile=tls.cafile)


def test_a_consumer_that_saw_the_new_release_gets_it_past_an_edge_serving_the_old_manifest(
    edge, site, publisher, tls, tmp_path
):
    cdn, got = _saw_release_2_at_a_fresh_pop_then_meets_a_stale_pop(
        edge, site, publisher, tls, tmp_path, honours_no_cache=True
    )
    assert got.release == 2
    assert cdn.cache_statuses(MANIFEST_NAME)[-2:] == ["HIT", "BYPASS"]


def test_a_consumer_that_saw_the_new_release_is_told_an_edge_ignoring_no_cache_serves_an_old_one(
    edge, site, publisher, tls, tmp_path
):
    cdn, refused = _saw_release_2_at_a_fresh_pop_then_meets_a_stale_pop(
        edge, site, publisher, tls, tmp_path, honours_no_cache=False
    )
    assert refused.result["error"] == "RollbackError"
    assert refused.ran == []  # not the old code, and not a crash
    message = str(refused.result["message"])
    assert "version 1, older than version 2" in message
    assert "a cache in front of the server" in message and "is serving an old release" in message
    assert cdn.cache_statuses(MANIFEST_NAME)[-2:] == ["HIT", "HIT"]
