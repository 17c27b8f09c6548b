"""End-to-end: sign a tree, serve it over real HTTPS, import it — and every failure twin.

Attack tests assert two things: the exact error, and that the attacker's
module body never ran (it would have created the ``marker`` file).
"""

from __future__ import annotations

import importlib
import importlib.resources
import inspect
import logging
import os
import pkgutil
import sys
import threading
import traceback
import warnings
from pathlib import Path

import pytest
from conftest import Signer, evil_source, rebuild_bundle, write_tree

import secure_urlimport
from secure_urlimport import (
    Config,
    ExpiredManifestError,
    InsecureURLError,
    RollbackError,
    TamperedFileError,
    TLSError,
    UnpinnedURLWarning,
    UntrustedKeyError,
    install,
    install_path_hook,
    trust,
    uninstall,
)
from secure_urlimport._format.paths import BUNDLE_NAME, MANIFEST_NAME
from secure_urlimport._net.fetcher import Validators
from secure_urlimport._net.transport import RequestsFetcher

# -- the recipe's two interactive examples -----------------------------------


def test_recipe_meta_path_example(testcode, serve, tls, publisher, capsys):
    server = serve(testcode)
    install(server.url, pubkey=publisher.pub, cafile=tls.cafile)
    # The recipe's order, which the printed output must follow.
    import fib  # noqa: I001
    import spam
    import grok.blah

    assert capsys.readouterr().out == "I'm fib\nI'm spam\nI'm grok.__init__\nI'm grok.blah\n"
    assert fib.fib(10) == 89
    spam.hello("Guido")
    assert capsys.readouterr().out == "Hello Guido\n"
    assert grok.blah.__file__ == f"{server.url}/grok/blah.py"
    assert fib.__file__ == f"{server.url}/fib.py"
    assert grok.__path__ == [f"{server.url}/grok"]
    assert grok.__package__ == "grok" and grok.blah.__package__ == "grok"
    assert fib.__spec__.origin == fib.__file__
    assert inspect.getsource(fib) == (testcode / "fib.py").read_text()


def test_recipe_path_hook_example(testcode, serve, tls, publisher, capsys):
    server = serve(testcode)
    trust(server.url, pubkey=publisher.pub, cafile=tls.cafile)
    install_path_hook()
    sys.path.append(server.url)
    import fib
    import grok.blah

    assert capsys.readouterr().out == "I'm fib\nI'm grok.__init__\nI'm grok.blah\n"
    assert fib.__file__ == f"{server.url}/fib.py"
    assert grok.blah.__file__ == f"{server.url}/grok/blah.py"
    assert inspect.getsource(grok.blah) == (testcode / "grok" / "blah.py").read_text()


def test_install_accepts_every_pubkey_form(testcode, serve, tls, publisher):
    server = serve(testcode)
    text = publisher.pub.read_text()
    for form in (
        publisher.pub,
        str(publisher.pub),
        text,
        publisher.key.public.raw,
        [publisher.key.public.raw, text],
    ):
        importer = install(server.url, pubkey=form, cafile=tls.cafile)
        assert importer in sys.meta_path
        importer.uninstall()
        assert importer not in sys.meta_path


# -- failure twins of the basic path ------------------------------------------


def _evil_tree(root: Path, marker: Path, signer: Signer) -> Path:
    write_tree(
        root,
        {"evil.py": evil_source(marker), "pkg/__init__.py": "", "pkg/evil.py": evil_source(marker)},
    )
    signer.sign(root)
    return root


def test_tree_signed_by_unpinned_key_is_refused_at_install(
    tmp_path, serve, tls, publisher, stranger, marker
):
    server = serve(_evil_tree(tmp_path / "t", marker, stranger))
    with pytest.raises(UntrustedKeyError) as err:
        install(server.url, pubkey=publisher.pub, cafile=tls.cafile)
    assert stranger.key.keyid in str(err.value) and publisher.key.keyid in str(err.value)
    assert not any(isinstance(f, secure_urlimport.Importer) for f in sys.meta_path)
    with pytest.raises(ModuleNotFoundError):
        import evil  # noqa: F401
    assert not marker.exists()


def test_tree_signed_by_unpinned_key_is_refused_through_path_hook(
    tmp_path, serve, tls, publisher, stranger, marker
):
    server = serve(_evil_tree(tmp_path / "t", marker, stranger))
    trust(server.url, pubkey=publisher.pub, cafile=tls.cafile)
    install_path_hook()
    sys.path.append(server.url)
    with pytest.raises(UntrustedKeyError) as err:
        import evil  # noqa: F401
    assert err.value.name == "evil"
    assert "cannot import 'evil'" in str(err.value)
    assert not marker.exists()
    assert "evil" not in sys.modules


def test_one_flipped_byte_is_refused_and_never_runs(tmp_path, serve, tls, publisher, marker):
    root = _evil_tree(tmp_path / "t", marker, publisher)
    data = bytearray((root / "evil.py").read_bytes())
    data[-2] ^= 0x01
    (root / "evil.py").write_bytes(bytes(data))
    rebuild_bundle(root)
    server = serve(root)
    install(server.url, pubkey=publisher.pub, cafile=tls.cafile)
    with pytest.raises(TamperedFileError) as err:
        import evil  # noqa: F401
    message = str(err.value)
    assert err.value.name == "evil" and f"{server.url}/evil.py" in message
    assert "re-sign" in message
    assert not marker.exists()
    assert "evil" not in sys.modules


def test_unsigned_module_added_after_signing_is_not_importable(
    testcode, serve, tls, publisher, marker
):
    write_tree(testcode, {"extra.py": evil_source(marker), "grok/extra.py": evil_source(marker)})
    server = serve(testcode)
    install(server.url, pubkey=publisher.pub, cafile=tls.cafile)
    with pytest.raises(ModuleNotFoundError) as err:
        import extra  # noqa: F401
    assert err.value.name == "extra"
    with pytest.raises(ModuleNotFoundError) as err:
        import grok.extra  # noqa: F401
    assert err.value.name == "grok.extra"
    assert not marker.exists()


def test_http_url_is_refused_before_any_request(publisher):
    with pytest.raises(InsecureURLError) as err:
        install("http://127.0.0.1:9/tree", pubkey=publisher.pub)
    assert "http://127.0.0.1:9/tree" in str(err.value)
    with pytest.raises(InsecureURLError):
        trust("ftp://example.org/", pubkey=publisher.pub)


def test_server_certificate_from_untrusted_ca_is_refused(
    testcode, serve, publisher, other_ca_file, marker
):
    write_tree(testcode, {"evil.py": evil_source(marker)})
    server = serve(testcode)
    with pytest.raises(TLSError) as err:
        install(server.url, pubkey=publisher.pub, cafile=other_ca_file)
    assert "127.0.0.1" in str(err.value) and "cafile" in str(err.value)
    assert not marker.exists()


def test_untrusted_ca_fails_the_import_through_path_hook(
    testcode, serve, publisher, other_ca_file, marker
):
    write_tree(testcode, {"evil.py": evil_source(marker)})
    publisher.sign(testcode)
    server = serve(testcode)
    trust(server.url, pubkey=publisher.pub, cafile=other_ca_file)
    install_path_hook()
    sys.path.append(server.url)
    with pytest.raises(TLSError) as err:
        import evil  # noqa: F401
    assert err.value.name == "evil"
    assert not marker.exists() and "evil" not in sys.modules


def test_wrong_hostname_fails_the_import_through_path_hook(
    testcode, serve, tls_localhost_only, publisher, marker
):
    write_tree(testcode, {"evil.py": evil_source(marker)})
    publisher.sign(testcode)
    server = serve(testcode, tls_localhost_only)
    trust(server.url, pubkey=publisher.pub, cafile=tls_localhost_only.cafile)
    install_path_hook()
    sys.path.append(server.url)
    with pytest.raises(TLSError):
        import evil  # noqa: F401
    assert not marker.exists() and "evil" not in sys.modules


def test_certificate_for_wrong_hostname_is_refused(testcode, serve, tls_localhost_only, publisher):
    server = serve(testcode, tls_localhost_only)
    with pytest.raises(TLSError):
        install(server.url, pubkey=publisher.pub, cafile=tls_localhost_only.cafile)
    # The twin: the same certificate is accepted under the name it was issued for.
    url = server.url.replace("127.0.0.1", "localhost")
    install(url, pubkey=publisher.pub, cafile=tls_localhost_only.cafile)
    import fib

    assert fib.__file__ == f"{url}/fib.py"


def test_cafile_wins_over_attacker_ca_in_environment(
    testcode, serve, tls, publisher, other_ca_file, monkeypatch
):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", other_ca_file)
    monkeypatch.setenv("CURL_CA_BUNDLE", other_ca_file)
    server = serve(testcode)
    install(server.url, pubkey=publisher.pub, cafile=tls.cafile)
    import fib

    assert fib.fib(5) == 8


def test_expired_manifest_is_refused_with_when_and_what_to_do(tmp_path, serve, tls, publisher):
    root = write_tree(tmp_path / "t", {"mod.py": "x = 1\n"})
    from datetime import UTC, datetime, timedelta

    publisher.sign(root, now=datetime.now(UTC) - timedelta(days=2), expires_in=timedelta(days=1))
    server = serve(root)
    with pytest.raises(ExpiredManifestError) as err:
        install(server.url, pubkey=publisher.pub, cafile=tls.cafile)
    assert "expired at" in str(err.value) and "re-sign" in str(err.value)


def test_older_release_after_newer_is_refused_as_rollback(tmp_path, serve, tls, publisher):
    root = write_tree(tmp_path / "t", {"mod.py": "release = 1\n"})
    publisher.sign(root)
    old_manifest = (root / "secure-urlimport.manifest").read_bytes()
    old_module = (root / "mod.py").read_bytes()
    (root / "mod.py").write_text("release = 2\n")
    publisher.sign(root)
    server = serve(root)
    install(server.url, pubkey=publisher.pub, cafile=tls.cafile).uninstall()
    # The server (or a mirror) now replays release 1, validly signed.
    (root / "secure-urlimport.manifest").write_bytes(old_manifest)
    (root / "mod.py").write_bytes(old_module)
    with pytest.raises(RollbackError) as err:
        install(server.url, pubkey=publisher.pub, cafile=tls.cafile)
    assert "version 1" in str(err.value) and "version 2" in str(err.value)


# -- the import system behaves as for local files -----------------------------


def test_relative_imports_and_nested_packages(tmp_path, serve, tls, publisher):
    root = write_tree(
        tmp_path / "t",
        {
            "app/__init__.py": "from .core import VALUE\n",
            "app/core.py": "VALUE = 42\n",
            "app/sub/__init__.py": "",
            "app/sub/deep.py": (
                "from .. import core\nfrom ..core import VALUE as V\nX = core.VALUE + V\n"
            ),
        },
    )
    publisher.sign(root)
    server = serve(root)
    install(server.url, pubkey=publisher.pub, cafile=tls.cafile)
    import app.sub.deep

    assert app.VALUE == 42 and app.sub.deep.X == 84
    assert app.sub.__path__ == [f"{server.url}/app/sub"]
    assert app.sub.deep.__spec__.parent == "app.sub"


def test_traceback_shows_remote_source_lines(tmp_path, serve, tls, publisher):
    root = write_tree(
        tmp_path / "t",
        {
            "boom.py": "def explode():\n    return 1 / 0  # remote line\n",
        },
    )
    publisher.sign(root)
    server = serve(root)
    install(server.url, pubkey=publisher.pub, cafile=tls.cafile)
    import boom

    try:
        boom.explode()
    except ZeroDivisionError:
        text = traceback.format_exc()
    assert f'File "{server.url}/boom.py", line 2, in explode' in text
    assert "return 1 / 0  # remote line" in text


def test_resources_and_get_data_return_verified_bytes(tmp_path, serve, tls, publisher):
    root = write_tree(
        tmp_path / "t",
        {
            "pkg/__init__.py": "",
            "pkg/data/hello.txt": "hello, world\n",
            "pkg/blob.bin": bytes(range(256)),
        },
    )
    publisher.sign(root)
    server = serve(root)
    install(server.url, pubkey=publisher.pub, cafile=tls.cafile)
    import pkg

    files = importlib.resources.files(pkg)
    assert files.joinpath("data", "hello.txt").read_text() == "hello, world\n"
    assert (files / "blob.bin").read_bytes() == bytes(range(256))
    assert sorted(p.name for p in files.iterdir()) == ["__init__.py", "blob.bin", "data"]
    assert files.joinpath("data").is_dir() and not files.joinpath("nope").is_file()
    with importlib.resources.as_file(files / "blob.bin") as real:
        assert real.read_bytes() == bytes(range(256))
    joined = os.path.join(os.path.dirname(pkg.__file__), "data", "hello.txt")
    assert pkg.__loader__.get_data(joined) == b"hello, world\n"
    assert pkgutil.get_data("pkg", "data/hello.txt") == b"hello, world\n"


def test_tampered_data_file_is_refused_by_resources_and_get_data(tmp_path, serve, tls, publisher):
    root = write_tree(tmp_path / "t", {"pkg/__init__.py": "", "pkg/cfg.txt": "safe\n"})
    publisher.sign(root)
    (root / "pkg" / "cfg.txt").write_text("evil\n")
    server = serve(root)
    install(server.url, pubkey=publisher.pub, cafile=tls.cafile)
    import pkg

    with pytest.raises(TamperedFileError):
        importlib.resources.files(pkg).joinpath("cfg.txt").read_text()
    with pytest.raises(TamperedFileError):
        pkgutil.get_data("pkg", "cfg.txt")


def test_unsigned_data_file_is_not_found(tmp_path, serve, tls, publisher):
    root = write_tree(tmp_path / "t", {"pkg/__init__.py": ""})
    publisher.sign(root)
    write_tree(root, {"pkg/unsigned.txt": "not signed\n"})
    server = serve(root)
    install(server.url, pubkey=publisher.pub, cafile=tls.cafile)
    import pkg

    with pytest.raises(FileNotFoundError):
        pkgutil.get_data("pkg", "unsigned.txt")
    with pytest.raises(FileNotFoundError):
        importlib.resources.files(pkg).joinpath("unsigned.txt").read_bytes()


def test_module_raising_during_import_is_not_left_in_sys_modules(tmp_path, serve, tls, publisher):
    root = write_tree(tmp_path / "t", {"bad.py": "raise RuntimeError('no')\n"})
    publisher.sign(root)
    server = serve(root)
    install(server.url, pubkey=publisher.pub, cafile=tls.cafile)
    with pytest.raises(RuntimeError):
        import bad  # noqa: F401
    assert "bad" not in sys.modules


def test_signed_stdlib_name_never_shadows_the_standard_library(
    tmp_path, serve, tls, publisher, marker
):
    root = write_tree(tmp_path / "t", {"json.py": evil_source(marker), "ok.py": ""})
    publisher.sign(root)
    server = serve(root)
    install(server.url, pubkey=publisher.pub, cafile=tls.cafile)
    sys.modules.pop("json", None)  # after install(): requests imports json itself
    import json

    assert json.dumps([1]) == "[1]"
    assert not marker.exists()


def test_stray_local_directory_does_not_hijack_remote_package(
    testcode, serve, tls, publisher, tmp_path, marker, monkeypatch
):
    local = write_tree(tmp_path / "local", {"grok/blah.py": evil_source(marker)})
    monkeypatch.syspath_prepend(str(local))
    server = serve(testcode)
    install(server.url, pubkey=publisher.pub, cafile=tls.cafile)
    import grok.blah

    assert grok.blah.__file__ == f"{server.url}/grok/blah.py"
    assert not marker.exists()


@pytest.mark.parametrize("path_hook", ["installed", "removed"])
def test_package_path_url_never_reads_local_relative_directory(
    testcode, serve, tls, publisher, tmp_path, marker, monkeypatch, path_hook
):
    server = serve(testcode)
    # What the standard FileFinder would open for the __path__ entry
    # 'https://127.0.0.1:PORT/grok' read as a relative directory name.
    hostile = tmp_path / "cwd" / server.url.replace("https://", "https:/") / "grok"
    write_tree(hostile, {"evil.py": evil_source(marker)})
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.syspath_prepend("")
    install(server.url, pubkey=publisher.pub, cafile=tls.cafile)
    if path_hook == "removed":
        # Prove the meta-path finder's own defence, without the path hook's
        # (remove_path_hook() keeps it while install()ed trees remain).
        sys.path_hooks.remove(secure_urlimport.api.path_hook)
        sys.path_importer_cache.clear()
    import grok

    with pytest.raises(ModuleNotFoundError):
        import grok.evil  # noqa: F401
    assert not marker.exists()


def test_namespace_package_across_two_urls(tmp_path, serve, tls, publisher):
    one = write_tree(tmp_path / "one", {"ns/a.py": "NAME = 'a'\n"})
    two = write_tree(tmp_path / "two", {"ns/b.py": "NAME = 'b'\n"})
    publisher.sign(one)
    publisher.sign(two)
    first, second = serve(one), serve(two)
    for server in (first, second):
        trust(server.url, pubkey=publisher.pub, cafile=tls.cafile)
        sys.path.append(server.url)
    install_path_hook()
    import ns.a
    import ns.b

    assert (ns.a.NAME, ns.b.NAME) == ("a", "b")
    assert list(ns.__path__) == [f"{first.url}/ns", f"{second.url}/ns"]


def test_unpinned_https_entry_never_fetches_and_warns_once(testcode, serve, publisher):
    server = serve(testcode)
    install_path_hook()
    sys.path.append(server.url)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            with pytest.raises(ModuleNotFoundError):
                import fib  # noqa: F401
            importlib.invalidate_caches()
    pin_warnings = [w for w in caught if issubclass(w.category, UnpinnedURLWarning)]
    assert len(pin_warnings) == 1
    assert "secure_urlimport.trust(" in str(pin_warnings[0].message)
    assert server.url in str(pin_warnings[0].message)


class RecordingFetcher:
    """The real fetcher, recording every URL requested."""

    def __init__(self, cafile: str) -> None:
        self.inner = RequestsFetcher(Config(cafile=cafile))
        self.urls: list[str] = []

    def fetch(self, url: str, *, max_bytes: int) -> bytes:
        self.urls.append(url)
        return self.inner.fetch(url, max_bytes=max_bytes)

    def fetch_fresh(self, url: str, *, max_bytes: int) -> bytes:
        self.urls.append(url)
        return self.inner.fetch_fresh(url, max_bytes=max_bytes)

    def fetch_if_changed(
        self, url: str, *, max_bytes: int, etag: str | None, fresh: bool = False
    ) -> tuple[bytes | None, str | None]:
        self.urls.append(url)
        return self.inner.fetch_if_changed(url, max_bytes=max_bytes, etag=etag, fresh=fresh)

    def close(self) -> None:
        self.inner.close()


def test_server_supplied_bytecode_is_never_requested(testcode, serve, tls, publisher, marker):
    pyc = testcode / "__pycache__"
    pyc.mkdir()
    (pyc / f"fib.{sys.implementation.cache_tag}.pyc").write_bytes(b"\x00" * 64)
    server = serve(testcode)
    recorder = RecordingFetcher(tls.cafile)
    install(server.url, pubkey=publisher.pub, fetcher=recorder)
    import fib
    import grok.blah  # noqa: F401

    assert fib.fib(3) == 3
    assert not any("__pycache__" in u or u.endswith(".pyc") for u in recorder.urls)
    # Two requests: the manifest, and the bundle that holds every module.
    assert [u.rpartition("/")[2] for u in recorder.urls] == [MANIFEST_NAME, BUNDLE_NAME]


def test_debug_trail_logs_fetch_and_verify_but_no_secrets(testcode, serve, tls, publisher, caplog):
    server = serve(testcode)
    caplog.set_level(logging.DEBUG, logger="secure_urlimport")
    install(
        server.url,
        pubkey=publisher.pub,
        cafile=tls.cafile,
        headers={"Authorization": "Bearer s3cr3t-token"},
    )
    import fib  # noqa: F401

    text = caplog.text
    assert "verified manifest" in text and f"verified {server.url}/fib.py" in text
    assert "s3cr3t-token" not in text


def test_uninstall_removes_finder_and_context_manager_form(testcode, serve, tls, publisher):
    server = serve(testcode)
    with install(server.url, pubkey=publisher.pub, cafile=tls.cafile) as importer:
        assert install(server.url, pubkey=publisher.pub, cafile=tls.cafile) is importer
        assert sum(isinstance(f, secure_urlimport.Importer) for f in sys.meta_path) == 1
        import spam
    assert importer not in sys.meta_path
    del sys.modules["spam"]
    with pytest.raises(ModuleNotFoundError):
        import spam  # noqa: F401
    uninstall(server.url)  # harmless when already gone


def test_reload_after_resign_runs_new_code_and_shows_new_source(tmp_path, serve, tls, publisher):
    root = write_tree(tmp_path / "t", {"mod.py": "VALUE = 1\n"})
    publisher.sign(root)
    server = serve(root)
    install(server.url, pubkey=publisher.pub, cafile=tls.cafile)
    import mod

    assert inspect.getsource(mod) == "VALUE = 1\n"
    (root / "mod.py").write_text("VALUE = 2\n")
    publisher.sign(root)
    importlib.invalidate_caches()
    importlib.reload(mod)
    assert mod.VALUE == 2
    assert inspect.getsource(mod) == "VALUE = 2\n"


def test_threads_importing_concurrently_execute_each_module_once(tmp_path, serve, tls, publisher):
    names = [f"m{i}" for i in range(12)]
    root = write_tree(
        tmp_path / "t",
        {
            f"{n}.py": (
                "import builtins\nbuiltins.__dict__.setdefault('_runs', []).append(__name__)\n"
            )
            for n in names
        },
    )
    publisher.sign(root)
    server = serve(root)
    install(server.url, pubkey=publisher.pub, cafile=tls.cafile)
    import builtins

    builtins._runs = []  # type: ignore[attr-defined]
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for i in range(len(names)):
                importlib.import_module(names[(i + offset) % len(names)])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert sorted(builtins._runs) == sorted(names)  # type: ignore[attr-defined]
    del builtins._runs  # type: ignore[attr-defined]


def test_testcode_matches_the_demo_tree():
    from secure_urlimport.cli.demo import DEMO_TREE

    repo_tree = Path(__file__).resolve().parent.parent / "testcode"
    on_disk = {
        p.relative_to(repo_tree).as_posix(): p.read_text()
        for p in repo_tree.rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert on_disk == DEMO_TREE


@pytest.mark.parametrize("where", ["main", "thread"])
def test_uncaught_exception_shows_remote_source_line(tmp_path, serve, tls, publisher, where):
    import subprocess

    root = write_tree(
        tmp_path / "t",
        {
            "boom.py": "def explode():\n    raise ValueError('x')  # the remote line\n",
        },
    )
    publisher.sign(root)
    server = serve(root)
    call = (
        "import threading; t = threading.Thread(target=boom.explode); t.start(); t.join()"
        if where == "thread"
        else "boom.explode()"
    )
    script = (
        "import secure_urlimport\n"
        f"secure_urlimport.install({server.url!r}, pubkey={str(publisher.pub)!r}, "
        f"cafile={tls.cafile!r})\n"
        f"import boom\n{call}\n"
    )
    env = {k: v for k, v in os.environ.items() if "CA_BUNDLE" not in k}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert "raise ValueError('x')  # the remote line" in result.stderr, result.stderr
    assert f'File "{server.url}/boom.py", line 2, in explode' in result.stderr


def test_default_excepthook_is_restored_when_the_last_tree_goes(testcode, serve, tls, publisher):
    server = serve(testcode)
    with install(server.url, pubkey=publisher.pub, cafile=tls.cafile):
        if sys.version_info < (3, 13):
            assert sys.excepthook is not sys.__excepthook__
    assert sys.excepthook is sys.__excepthook__


def _two_releases(root: Path, signers: list, versions: tuple[int, int]) -> bytes:
    """Sign release A (returns its manifest bytes), then release B in place."""
    from secure_urlimport.publish.signing import sign_tree

    write_tree(root, {"mod.py": "release = 'old'\n"})
    sign_tree(root, signers, version=versions[0])
    old = (root / "secure-urlimport.manifest").read_bytes()
    (root / "secure-urlimport.manifest").unlink()
    write_tree(root, {"mod.py": "release = 'new'\n"})
    sign_tree(root, signers, version=versions[1])
    return old


def test_pinning_an_extra_key_for_rotation_keeps_rollback_protection(
    tmp_path, serve, tls, publisher, stranger
):
    root = tmp_path / "t"
    old_manifest = _two_releases(root, [publisher.key], (1, 9))
    server = serve(root)
    install(server.url, pubkey=publisher.pub, cafile=tls.cafile).uninstall()  # saw v9
    (root / "secure-urlimport.manifest").write_bytes(old_manifest)
    (root / "mod.py").write_text("release = 'old'\n")
    # Rotation step: the client now pins the old key and the new one.
    with pytest.raises(RollbackError):
        install(server.url, pubkey=[publisher.pub, stranger.pub], cafile=tls.cafile)


def test_leaked_key_at_max_version_does_not_brick_clients_after_rotation(
    tmp_path, serve, tls, publisher, stranger
):
    from secure_urlimport._format.manifest import MAX_VERSION
    from secure_urlimport.publish.signing import sign_tree

    root = write_tree(tmp_path / "t", {"mod.py": "release = 'leaked'\n"})
    sign_tree(
        root,
        [publisher.key],
        version=MAX_VERSION,  # the leaked key's release
        allow_version_jump=True,
    )
    server = serve(root)
    install(server.url, pubkey=publisher.pub, cafile=tls.cafile).uninstall()
    (root / "secure-urlimport.manifest").unlink()
    write_tree(root, {"mod.py": "release = 'fresh'\n"})
    sign_tree(root, [stranger.key], version=1)  # the publisher's new key
    install(server.url, pubkey=stranger.pub, cafile=tls.cafile)  # old key no longer pinned
    import mod

    assert mod.release == "fresh"


def test_rollback_refused_within_a_process_even_if_state_cannot_be_saved(
    tmp_path, serve, tls, publisher
):
    root = tmp_path / "t"
    old_manifest = _two_releases(root, [publisher.key], (1, 2))
    server = serve(root)
    config = Config(cache_dir=Path("/dev/null/not-a-directory"))
    install(server.url, pubkey=publisher.pub, cafile=tls.cafile, config=config)
    import mod

    assert mod.release == "new"
    (root / "secure-urlimport.manifest").write_bytes(old_manifest)
    (root / "mod.py").write_text("release = 'old'\n")
    importlib.invalidate_caches()
    with pytest.raises(RollbackError):
        importlib.reload(mod)
    assert mod.release == "new"


# -- regressions from the security review -------------------------------------


def test_path_hook_failure_never_hands_the_url_to_the_local_file_finder(
    testcode, serve, tls, publisher, tmp_path, marker, monkeypatch
):
    server = serve(testcode)
    hostile = tmp_path / "cwd" / server.url.replace("https://", "https:/")
    write_tree(hostile, {"fib.py": evil_source(marker)})
    monkeypatch.chdir(tmp_path / "cwd")
    trust(server.url, pubkey=publisher.pub, cafile=tls.cafile)
    install_path_hook()

    def broken(entry: str) -> None:
        raise secure_urlimport.ConfigurationError("the finder could not be built")

    monkeypatch.setattr(secure_urlimport.api.registry, "_finder_for", broken)
    sys.path.append(server.url)
    with pytest.raises(secure_urlimport.ConfigurationError) as err:
        import fib  # noqa: F401
    assert err.value.name == "fib"
    assert not marker.exists()


def test_trust_with_missing_cafile_fails_at_once(publisher, tmp_path):
    with pytest.raises(secure_urlimport.ConfigurationError):
        trust("https://127.0.0.1:9/t", pubkey=publisher.pub, cafile=str(tmp_path / "none.pem"))


def test_remove_path_hook_keeps_claiming_installed_package_paths(
    testcode, serve, tls, publisher, tmp_path, marker, monkeypatch
):
    server = serve(testcode)
    hostile = tmp_path / "cwd" / server.url.replace("https://", "https:/") / "grok"
    write_tree(hostile, {"evil.py": evil_source(marker)})
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.syspath_prepend("")
    install(server.url, pubkey=publisher.pub, cafile=tls.cafile)
    import grok

    secure_urlimport.remove_path_hook()
    assert secure_urlimport.api.path_hook in sys.path_hooks
    server.stop()  # the manifest refresh fails from now on
    importlib.invalidate_caches()
    # (the cached, verified manifest stands in for it: grok.evil is not in it)
    with pytest.raises(ImportError), pytest.warns(secure_urlimport.OfflineFallbackWarning):
        import grok.evil
    assert not marker.exists()
    assert grok.__file__.startswith("https://")


def test_expired_manifest_is_refused_in_a_running_process(tmp_path, serve, tls, publisher):
    import time
    from datetime import UTC, datetime, timedelta

    root = write_tree(tmp_path / "t", {"a.py": "", "b.py": ""})
    publisher.sign(
        root, now=datetime.now(UTC) - timedelta(seconds=58), expires_in=timedelta(seconds=60)
    )
    server = serve(root)
    install(server.url, pubkey=publisher.pub, cafile=tls.cafile)
    import a  # noqa: F401

    time.sleep(2.2)
    with pytest.raises(ExpiredManifestError):
        import b  # noqa: F401


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1:9/a/../b",
        "https://127.0.0.1:9/a/./b",
        "https://127.0.0.1:9/a//b",
        "https://127.0.0.1:9/a/%2e%2e/b",
        "https://127.0.0.1:9/a%2fb",
        "https://127.0.0.1:9/a?x=1",
    ],
)
def test_tree_url_with_dot_or_escaped_segments_is_refused(url, publisher):
    with pytest.raises(secure_urlimport.ConfigurationError):
        trust(url, pubkey=publisher.pub)


def test_default_port_is_the_same_tree():
    from secure_urlimport._client.remote import normalize_url

    assert normalize_url("https://Example.COM:443/t/") == "https://example.com/t"


def test_get_data_does_not_unescape_into_another_file(tmp_path, serve, tls, publisher):
    root = write_tree(tmp_path / "t", {"pkg/__init__.py": "", "pkg/dataA.txt": "OTHER\n"})
    publisher.sign(root)
    server = serve(root)
    install(server.url, pubkey=publisher.pub, cafile=tls.cafile)
    import pkg

    base = os.path.dirname(pkg.__file__)
    with pytest.raises(FileNotFoundError):
        pkg.__loader__.get_data(base + "/data%41.txt")
    assert pkg.__loader__.get_data(base + "/dataA.txt") == b"OTHER\n"


def test_server_chosen_key_ids_are_refused_before_reaching_messages(
    tmp_path, serve, tls, publisher
):
    root = write_tree(tmp_path / "t", {"mod.py": ""})
    publisher.sign(root)
    path = root / "secure-urlimport.manifest"
    data = path.read_bytes().replace(b"signature ", b"signature \x1b[2JOK-all-verified ", 1)
    path.write_bytes(data)
    server = serve(root)
    with pytest.raises(secure_urlimport.ManifestFormatError) as err:
        install(server.url, pubkey=publisher.pub, cafile=tls.cafile)
    assert "\x1b" not in str(err.value)


class _OldFetcher:
    """A fetcher written for the first, two-method protocol."""

    def fetch(self, url: str, *, max_bytes: int) -> bytes:
        raise AssertionError("never asked: refused when pinned")

    def close(self) -> None:
        pass


@pytest.mark.parametrize("function", ["install", "trust"])
def test_a_fetcher_lacking_part_of_the_contract_is_refused_when_pinned(function, publisher):
    call = getattr(secure_urlimport, function)
    with pytest.raises(secure_urlimport.ConfigurationError) as caught:
        call("https://example.invalid/tree", pubkey=publisher.pub, fetcher=_OldFetcher())
    message = str(caught.value)
    assert f"{function}(fetcher=...)" in message
    assert "fetch_fresh, fetch_if_changed" in message


def test_a_fetcher_with_the_whole_contract_is_accepted(publisher):
    class Whole(_OldFetcher):
        def fetch_fresh(self, url: str, *, max_bytes: int) -> bytes:
            return self.fetch(url, max_bytes=max_bytes)

        def fetch_if_changed(self, url, *, max_bytes, etag, fresh=False):
            return self.fetch(url, max_bytes=max_bytes), None

    secure_urlimport.trust("https://example.invalid/tree", pubkey=publisher.pub, fetcher=Whole())


def test_a_fetcher_whose_optional_fetch_if_modified_is_not_callable_is_refused(publisher):
    class Odd(_OldFetcher):
        fetch_if_modified = "not a method"

        def fetch_fresh(self, url: str, *, max_bytes: int) -> bytes:
            return self.fetch(url, max_bytes=max_bytes)

        def fetch_if_changed(self, url, *, max_bytes, etag, fresh=False):
            return self.fetch(url, max_bytes=max_bytes), None

    with pytest.raises(secure_urlimport.ConfigurationError, match="fetch_if_modified"):
        secure_urlimport.trust("https://example.invalid/tree", pubkey=publisher.pub, fetcher=Odd())


def test_a_fetcher_with_fetch_if_modified_is_asked_with_the_cached_validators(
    testcode, serve, tls, publisher
):
    server = serve(testcode)
    asked: list[Validators] = []

    class Modern(RecordingFetcher):
        def fetch_if_modified(self, url, *, max_bytes, validators, fresh=False):
            asked.append(validators)
            return self.inner.fetch_if_modified(
                url, max_bytes=max_bytes, validators=validators, fresh=fresh
            )

    install(server.url, pubkey=publisher.pub, fetcher=Modern(tls.cafile)).uninstall()
    install(server.url, pubkey=publisher.pub, fetcher=Modern(tls.cafile))
    assert asked[0] == Validators()
    assert asked[1].etag is not None  # the devserver's, from the cache
