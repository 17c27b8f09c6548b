"""A hostile repository for the attack suite (issue #4).

:class:`RepositorySimulator` is modelled on python-tuf's
``tests/repository_simulator.py``: it *is* a :class:`~secure_urlimport._net.fetcher.Fetcher`,
the whole contract in memory (inject it with ``install(sim.url, pubkey=...,
fetcher=sim)``): it keeps signed releases, serves any bytes for any URL, answers
``If-None-Match`` with 304 Not Modified, and can put a stale CDN edge in front
of the origin.  It can be told to substitute, modify, drop or delay responses,
and it records every URL requested so a test can assert that no request was
made.

Releases are made with the project's real signer (:func:`sign_tree` on a
temporary directory) and real Ed25519 keys.  :func:`compose` builds a
manifest by hand from the project's own format helpers, for the cases where a
test needs a manifest that ``sign_tree`` would never write (a borrowed or
stale per-file signature inside a body the pinned key did sign).

:class:`HostileHTTPSServer` is the same idea over real HTTPS, for attacks that
only a real socket can stage (endless bodies, dripping, compression,
redirects, header leaks).
"""

from __future__ import annotations

import hashlib
import http.server
import os
import socketserver
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

# Imported at collection, before any test's import-system snapshot: the
# transport imports requests/urllib3 lazily on first use and caches their
# exception classes, and tests/conftest.py drops modules a test imported, so
# a later test would otherwise get a second urllib3 whose exceptions the cached
# classes do not catch (see also tests/test_parity.py).
import requests  # noqa: F401
import urllib3  # noqa: F401

from secure_urlimport._format.keys import PrivateKey
from secure_urlimport._format.manifest import (
    FileEntry,
    Manifest,
    encode_body,
    encode_manifest,
    file_message,
    manifest_message,
    parse_manifest_body,
    split_manifest_file,
)
from secure_urlimport._format.paths import MANIFEST_NAME, SHARD_DIR
from secure_urlimport._format.root import (
    Role,
    Root,
    encode_root,
    encode_root_body,
    root_file_name,
    root_message,
)
from secure_urlimport.errors import HTTPStatusError, ResponseTooLargeError
from secure_urlimport.publish.sharding import SHARD_THRESHOLD
from secure_urlimport.publish.signing import sign_tree

__all__ = [
    "HostileHTTPSServer",
    "Release",
    "RepositorySimulator",
    "assert_never_ran",
    "compose",
    "etag_of",
    "make_root",
]

DAY = timedelta(days=1)
Handler = Callable[[int], "bytes | None"]


# -- releases -----------------------------------------------------------------


@dataclass(frozen=True)
class Release:
    """One signed release: every file's bytes and the manifest's bytes."""

    version: int
    files: Mapping[str, bytes]
    manifest_bytes: bytes
    #: Tree path -> bytes of the shard files a sharded (format-2) release pins.
    shards: Mapping[str, bytes] = field(default_factory=dict)

    @cached_property
    def manifest(self) -> Manifest:
        """The parsed body (unverified: this is the test's own release)."""
        return parse_manifest_body(split_manifest_file(self.manifest_bytes).body)

    @property
    def body(self) -> bytes:
        return split_manifest_file(self.manifest_bytes).body

    def entry(self, path: str) -> FileEntry:
        return self.manifest.files[path]

    def everything(self) -> dict[str, bytes]:
        """Tree path -> bytes, the manifest included: what an honest server serves."""
        return {**self.files, **self.shards, MANIFEST_NAME: self.manifest_bytes}


def _as_bytes(content: str | bytes) -> bytes:
    return content.encode("utf-8") if isinstance(content, str) else content


def sign_release(
    files: Mapping[str, str | bytes],
    keys: Sequence[PrivateKey],
    *,
    version: int = 1,
    expires_in: timedelta = DAY,
    now: datetime | None = None,
    name: str = "tree",
    shard_threshold: int = SHARD_THRESHOLD,
) -> Release:
    """Write *files* to a fresh temporary tree, sign it with the real ``sign_tree``
    (sharded above *shard_threshold* files)."""
    with tempfile.TemporaryDirectory(prefix="sim-release-") as tmp:
        root = Path(tmp)
        for rel, content in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(_as_bytes(content))
        # allow_version_jump: the simulator also signs as an attacker holding a leaked key.
        sign_tree(
            root,
            keys,
            version=version,
            expires_in=expires_in,
            now=now,
            name=name,
            allow_version_jump=True,
            shard_threshold=shard_threshold,
        )
        manifest_bytes = (root / MANIFEST_NAME).read_bytes()
        shards = {
            f"{SHARD_DIR}/{p.name}": p.read_bytes() for p in sorted(root.glob(f"{SHARD_DIR}/*"))
        }
    data = {rel: _as_bytes(c) for rel, c in files.items()}
    return Release(version, data, manifest_bytes, shards)


def sign_entry(path: str, data: bytes, keys: Sequence[PrivateKey], version: int) -> FileEntry:
    """A manifest entry for *data* at *path*, signed exactly as ``sign_tree`` does."""
    digest = hashlib.sha256(data).hexdigest()
    sigs = {k.keyid: k.sign(file_message(k.keyid, version, path, digest, len(data))) for k in keys}
    return FileEntry(path, len(data), digest, sigs)


def compose(
    files: Mapping[str, str | bytes],
    *,
    version: int,
    manifest_keys: Sequence[PrivateKey],
    file_keys: Sequence[PrivateKey] | None = None,
    entries: Mapping[str, FileEntry] | None = None,
    expires_in: timedelta = DAY,
) -> Release:
    """A release whose manifest is assembled by hand with the project's format helpers.

    Each file gets an entry signed by *file_keys* (default: *manifest_keys*),
    except paths in *entries*, whose given entry is used verbatim -- e.g. one
    borrowed from another path or another release.  The body is then signed by
    *manifest_keys*, so the manifest signature itself is valid.
    """
    signers = list(file_keys if file_keys is not None else manifest_keys)
    data = {rel: _as_bytes(c) for rel, c in files.items()}
    built = {rel: sign_entry(rel, content, signers, version) for rel, content in data.items()}
    for rel, entry in (entries or {}).items():
        built[rel] = FileEntry(rel, entry.size, entry.sha256, dict(entry.signatures))
    now = datetime.now(UTC).replace(microsecond=0)
    manifest = Manifest(
        version=version,
        created=now,
        expires=now + expires_in,
        keyids=tuple(k.keyid for k in manifest_keys),
        files=built,
    )
    body = encode_body(manifest)
    sigs = [(k.keyid, k.sign(manifest_message(k.keyid, body))) for k in manifest_keys]
    return Release(version, data, encode_manifest(body, sigs))


def _role(keys: Sequence[PrivateKey], threshold: int) -> Role:
    return Role(tuple(sorted(k.keyid for k in keys)), threshold)


def make_root(
    version: int,
    *,
    root_keys: Sequence[PrivateKey],
    signers: Sequence[PrivateKey],
    sign_with: Sequence[PrivateKey] | None = None,
    root_threshold: int = 1,
    threshold: int = 1,
    name: str = "tree",
    trees: Mapping[str, tuple[Sequence[PrivateKey], int]] | None = None,
    expires_in: timedelta = 365 * DAY,
    body_version: int | None = None,
) -> bytes:
    """A root file built with the project's own format (``_format/root.py``),
    signed by *sign_with* (default: *root_keys*) with real keys.

    *body_version* puts another version in the body than the file is served as.
    """
    trees = trees or {}
    everyone = [*root_keys, *signers, *(k for keys, _ in trees.values() for k in keys)]
    now = datetime.now(UTC).replace(microsecond=0)
    root = Root(
        name=name,
        version=version if body_version is None else body_version,
        created=min(now, now + expires_in - DAY),
        expires=now + expires_in,
        keys={k.keyid: k.public for k in everyone},
        root=_role(root_keys, root_threshold),
        signers=_role(signers, threshold),
        trees={tree: _role(keys, t) for tree, (keys, t) in trees.items()},
    )
    body = encode_root_body(root)
    sigs = [(k.keyid, k.sign(root_message(k.keyid, body))) for k in (sign_with or root_keys)]
    return encode_root(body, sigs)


# -- the simulator --------------------------------------------------------------


@dataclass
class RepositorySimulator:
    """An in-memory repository that implements the Fetcher protocol.

    By default it serves the last published release honestly.  Tests then
    turn it hostile:

    - ``put(path, data)`` / ``put_url(url, data)``: serve any bytes at any URL;
    - ``modify(path, fn)``: replace what is served by ``fn(current_bytes)``;
    - ``drop(path)``: answer 404;
    - ``respond(path, fn)``: answer ``fn(n)``, *n* being how many times the URL
      was requested before (``None`` means 404);
    - ``delay(path, seconds)``: wait before choosing the answer (so the
      repository may change meanwhile).

    and in front of the origin:

    - ``stale_edge(release, *paths)``: a CDN edge (or proxy) keeps answering
      plain and conditional requests for *paths* (default: all of *release*,
      the manifest included) with *release*'s copies, until ``clear_edge()``;
      requests past the caches (``fetch_fresh``, ``fresh=True``) reach the origin.

    ``requests`` lists every URL fetched through the caches, in order (plain
    and conditional requests); ``fresh_requests`` every URL asked past them;
    ``not_modified`` every URL answered 304.  ETags are the served bytes' digest.
    """

    url: str = "https://repo.simulator.test/tree"
    requests: list[str] = field(default_factory=list)
    releases: list[Release] = field(default_factory=list)
    fresh_requests: list[str] = field(default_factory=list)
    not_modified: list[str] = field(default_factory=list)
    closed: int = 0
    #: Root version -> the root file served as ``secure-urlimport.root.<version>``,
    #: whichever release is served.
    roots: dict[int, bytes] = field(default_factory=dict)
    _served: dict[str, bytes] = field(default_factory=dict)
    _edge: dict[str, bytes] = field(default_factory=dict)
    _handlers: dict[str, Handler] = field(default_factory=dict)
    _delays: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- addresses

    def url_of(self, path: str) -> str:
        """The URL the importer requests for tree path *path* (as RemoteTree spells it)."""
        return f"{self.url}/{urllib.parse.quote(path)}"

    @property
    def manifest_url(self) -> str:
        return self.url_of(MANIFEST_NAME)

    # -- publishing

    def publish(
        self,
        files: Mapping[str, str | bytes],
        keys: Sequence[PrivateKey],
        *,
        version: int | None = None,
        expires_in: timedelta = DAY,
        now: datetime | None = None,
        name: str = "tree",
        shard_threshold: int = SHARD_THRESHOLD,
    ) -> Release:
        """Sign *files* as the next release (or *version*) and serve it."""
        if version is None:
            version = self.releases[-1].version + 1 if self.releases else 1
        release = sign_release(
            files,
            keys,
            version=version,
            expires_in=expires_in,
            now=now,
            name=name,
            shard_threshold=shard_threshold,
        )
        self.serve(release)
        return release

    def serve(self, release: Release) -> None:
        """Serve exactly *release* from now on (replaying an old one, say)."""
        with self._lock:
            if release not in self.releases:
                self.releases.append(release)
            self._served = {self.url_of(p): b for p, b in release.everything().items()}
            self._served.update({self.url_of(root_file_name(v)): b for v, b in self.roots.items()})
            self._handlers.clear()

    def put_root(self, version: int, data: bytes) -> None:
        """Publish *data* as root *version* (kept across releases)."""
        with self._lock:
            self.roots[version] = data
            self._served[self.url_of(root_file_name(version))] = data

    def drop_root(self, version: int) -> None:
        """Answer 404 for root *version* from now on."""
        with self._lock:
            self.roots.pop(version, None)
            self._served.pop(self.url_of(root_file_name(version)), None)

    # -- turning hostile

    def put(self, path: str, data: bytes | str) -> None:
        self.put_url(self.url_of(path), data)

    def put_url(self, url: str, data: bytes | str) -> None:
        with self._lock:
            self._served[url] = _as_bytes(data)

    def modify(self, path: str, fn: Callable[[bytes], bytes]) -> None:
        url = self.url_of(path)
        with self._lock:
            self._served[url] = fn(self._served[url])

    def drop(self, path: str) -> None:
        with self._lock:
            self._served.pop(self.url_of(path), None)

    def respond(self, path: str, fn: Handler) -> None:
        with self._lock:
            self._handlers[self.url_of(path)] = fn

    def delay(self, path: str, seconds: float) -> None:
        with self._lock:
            self._delays[self.url_of(path)] = seconds

    def stale_edge(self, release: Release, *paths: str) -> None:
        """Put a cache in front of the origin that still holds *release*'s copies
        of *paths* (all of its files and its manifest if none are named)."""
        held = release.everything()
        with self._lock:
            self._edge.update({self.url_of(p): held[p] for p in (paths or held)})

    def clear_edge(self) -> None:
        with self._lock:
            self._edge.clear()

    # -- what was asked

    def requested(self, path: str) -> int:
        """How many times tree path *path* was requested."""
        url = self.url_of(path)
        return sum(1 for u in self.requests if u == url)

    def requested_paths(self) -> list[str]:
        prefix = self.url + "/"
        return [
            urllib.parse.unquote(u[len(prefix) :]) if u.startswith(prefix) else u
            for u in self.requests
        ]

    # -- the Fetcher protocol

    def fetch(self, url: str, *, max_bytes: int) -> bytes:
        return self._answer(url, max_bytes, fresh=False)

    def fetch_fresh(self, url: str, *, max_bytes: int) -> bytes:
        return self._answer(url, max_bytes, fresh=True)

    def fetch_if_changed(
        self, url: str, *, max_bytes: int, etag: str | None, fresh: bool = False
    ) -> tuple[bytes | None, str | None]:
        data = self._answer(url, max_bytes, fresh=fresh, etag=etag)
        current = etag_of(data)
        if etag is not None and etag == current:
            with self._lock:
                self.not_modified.append(url)
            return None, current
        return data, current

    def _answer(self, url: str, max_bytes: int, *, fresh: bool, etag: str | None = None) -> bytes:
        """What the edge (or, *fresh*, the origin) serves at *url*; the size
        limit is not applied to a body a 304 would not send."""
        with self._lock:
            earlier = self.requests.count(url) + self.fresh_requests.count(url)
            (self.fresh_requests if fresh else self.requests).append(url)
            pause = self._delays.get(url, 0.0)
        if pause:
            time.sleep(pause)
        with self._lock:
            handler = self._handlers.get(url)
            data = None if fresh else self._edge.get(url)
            if data is None:
                data = handler(earlier) if handler is not None else self._served.get(url)
        if data is None:
            error = HTTPStatusError(f"cannot download {url}: HTTP 404 Not Found", path=url)
            error.status = 404
            raise error
        if len(data) > max_bytes and not (etag is not None and etag == etag_of(data)):
            raise ResponseTooLargeError(
                f"cannot download {url}: its body is larger, over the limit of {max_bytes} bytes",
                path=url,
            )
        return data

    def close(self) -> None:
        # Counted, not enforced: tests re-install the same simulator after uninstall().
        self.closed += 1


def etag_of(data: bytes) -> str:
    """The simulator's ETag for *data*: a strong validator, its digest."""
    return f'"{hashlib.sha256(data).hexdigest()[:16]}"'


# -- a hostile server over real HTTPS ----------------------------------------------

Route = Callable[["_Handler"], None]


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: HostileHTTPSServer

    def do_GET(self) -> None:
        self.server.seen.append((self.path, dict(self.headers)))
        path = urllib.parse.unquote(self.path.lstrip("/"))
        route = self.server.routes.get(path)
        if route is not None:
            route(self)
            return
        data = self.server.files.get(path)
        if data is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_body(data)

    def send_body(self, data: bytes, **headers: str) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class HostileHTTPSServer(http.server.ThreadingHTTPServer):
    """Serves ``files`` (tree path -> bytes) at its root, except paths in ``routes``.

    ``seen`` records (request path, headers) of every request.  Without a
    certificate it speaks plain http (to prove nothing was sent to it).  Slow
    routes must wait on ``stop``, so ``close()`` ends them at once.
    """

    daemon_threads = True

    def __init__(
        self,
        files: Mapping[str, bytes] | None = None,
        *,
        certfile: str | None = None,
        keyfile: str | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        if certfile is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(certfile, keyfile)
            self.socket = context.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )
        self.scheme = "https" if certfile is not None else "http"
        self.host = host
        self.files: dict[str, bytes] = dict(files or {})
        self.routes: dict[str, Route] = {}
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.stop = threading.Event()
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # no getfqdn(): a slow DNS lookup
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # attacks end in broken pipes and reset connections

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.server_port}"

    def close(self) -> None:
        self.stop.set()
        self.shutdown()
        self.server_close()


# -- assertions ---------------------------------------------------------------


def hostile_servers(tls: Any) -> Iterator[Callable[..., HostileHTTPSServer]]:
    """For a fixture: ``start(files, plain=False, host=...)`` makes a hostile
    HTTPS server with the test CA's certificate; all close at teardown."""
    servers: list[HostileHTTPSServer] = []

    def make(
        files: Mapping[str, bytes] | None = None, *, plain: bool = False, host: str = "127.0.0.1"
    ) -> HostileHTTPSServer:
        cert = {} if plain else {"certfile": tls.certfile, "keyfile": tls.keyfile}
        server = HostileHTTPSServer(files, host=host, **cert)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def cache_root() -> Path:
    """The client's cache directory for this test (conftest sets the variable)."""
    return Path(os.environ["SECURE_URLIMPORT_CACHE_DIR"])


def cached_file(content: str | bytes) -> Path:
    """Where the client's cache keeps the file with these bytes."""
    data = content.encode() if isinstance(content, str) else content
    digest = hashlib.sha256(data).hexdigest()
    return cache_root() / "files" / digest[:2] / digest[2:]


def assert_never_ran(marker: Path, *modules: str) -> None:
    """The attacker's code never ran, and nothing half-imported was left behind."""
    assert not marker.exists(), "attacker code ran"
    left = [name for name in modules if name in sys.modules]
    assert not left, f"half-imported modules left in sys.modules: {left}"


def child_env(cache: Path) -> dict[str, str]:
    """The environment of a fresh interpreter that imports this checkout, with
    its own cache directory and no CA bundle override."""
    env = {k: v for k, v in os.environ.items() if k != "REQUESTS_CA_BUNDLE"}
    env["SECURE_URLIMPORT_CACHE_DIR"] = str(cache)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return env


#: A fresh interpreter's import of pkg.mod from the tree at argv[1] (argv[2]:
#: the .pub file, argv[3]: the CA file); prints json of pkg.mod.SIGNED.
IMPORT_PKG_MOD = """
import json, logging, sys, secure_urlimport
logging.basicConfig(level=logging.WARNING)
secure_urlimport.install(sys.argv[1], pubkey=sys.argv[2], cafile=sys.argv[3])
import pkg.mod
print(json.dumps(pkg.mod.SIGNED))
"""


def run_fresh(
    script: str, env: Mapping[str, str], *args: str, flags: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    """Run *script* with *args* in a fresh interpreter (a real next process)."""
    return subprocess.run(
        [sys.executable, *flags, "-c", script, *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
