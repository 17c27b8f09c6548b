"""Arbitrary code, substitution and mix-and-match, staged with the repository simulator.

Every attack asserts the exact error class, that the attacker's code never ran
(it would have created ``marker``) and that nothing half-imported is left in
``sys.modules``.
"""

from __future__ import annotations

import base64
import importlib
import importlib.resources
import pkgutil
import sys

import pytest
from conftest import evil_source
from simulator import RepositorySimulator, assert_never_ran, compose

import secure_urlimport
from secure_urlimport import (
    BadSignatureError,
    ManifestFormatError,
    TamperedFileError,
    UntrustedKeyError,
    WrongTreeError,
    install,
)
from secure_urlimport._format.keys import PrivateKey
from secure_urlimport._format.manifest import MAGIC
from secure_urlimport._format.paths import MANIFEST_NAME


@pytest.fixture
def sim() -> RepositorySimulator:
    return RepositorySimulator()


@pytest.fixture
def key() -> PrivateKey:
    return PrivateKey.generate()


def dormant_source(marker) -> str:
    """Signed, harmless source whose payload runs if byte 3 ('0') becomes '1'."""
    return f"if 0:\n    open({str(marker)!r}, 'w').write('ran')\nVALUE = 1\n"


def padded(source: str, like: str) -> str:
    """*source* padded with a comment to the length of *like*, so a swap passes the
    size check (and the cap of the download) and only the SHA-256 can catch it."""
    assert len(source) + 2 <= len(like)
    return source + "#" * (len(like) - len(source) - 1) + "\n"


def no_importer() -> bool:
    return not any(isinstance(f, secure_urlimport.Importer) for f in sys.meta_path)


# -- arbitrary code ----------------------------------------------------------------


def test_one_flipped_byte_in_a_module_is_rejected(sim, key, marker):
    sim.publish({"mod.py": dormant_source(marker)}, [key])
    # One bit: `if 0:` becomes `if 1:` and the payload would run.
    sim.modify("mod.py", lambda b: b[:3] + bytes([b[3] ^ 0x01]) + b[4:])
    install(sim.url, pubkey=key.public.raw, fetcher=sim)
    with pytest.raises(TamperedFileError) as err:
        importlib.import_module("mod")
    assert type(err.value) is TamperedFileError
    assert err.value.name == "mod" and sim.url_of("mod.py") in str(err.value)
    assert_never_ran(marker, "mod")


def test_unsigned_module_added_to_the_tree_is_rejected(sim, key, marker):
    sim.publish({"ok.py": "", "pkg/__init__.py": ""}, [key])
    sim.put("evil.py", evil_source(marker))
    sim.put("pkg/evil.py", evil_source(marker))
    install(sim.url, pubkey=key.public.raw, fetcher=sim)
    with pytest.raises(ModuleNotFoundError) as err:
        importlib.import_module("evil")
    assert type(err.value) is ModuleNotFoundError and err.value.name == "evil"
    with pytest.raises(ModuleNotFoundError) as err:
        importlib.import_module("pkg.evil")
    assert type(err.value) is ModuleNotFoundError and err.value.name == "pkg.evil"
    assert sim.requested("evil.py") == sim.requested("pkg/evil.py") == 0
    assert_never_ran(marker, "evil", "pkg.evil")


def test_unsigned_data_file_added_to_the_tree_is_rejected(sim, key, marker):
    sim.publish({"pkg/__init__.py": ""}, [key])
    sim.put("pkg/settings.txt", "admin = true\n")
    install(sim.url, pubkey=key.public.raw, fetcher=sim)
    pkg = importlib.import_module("pkg")
    with pytest.raises(FileNotFoundError):
        pkgutil.get_data("pkg", "settings.txt")
    with pytest.raises(FileNotFoundError):
        importlib.resources.files(pkg).joinpath("settings.txt").read_bytes()
    assert sim.requested("pkg/settings.txt") == 0
    assert_never_ran(marker)


def test_tree_signed_by_an_unpinned_key_is_rejected(sim, key, marker):
    stranger = PrivateKey.generate()
    sim.publish({"evil.py": evil_source(marker)}, [stranger])
    with pytest.raises(UntrustedKeyError) as err:
        install(sim.url, pubkey=key.public.raw, fetcher=sim)
    assert type(err.value) is UntrustedKeyError
    assert stranger.keyid in str(err.value) and key.keyid in str(err.value)
    assert no_importer()
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("evil")
    assert sim.requested_paths() == [MANIFEST_NAME]
    assert_never_ran(marker, "evil")


def _sig_line(manifest: bytes) -> bytes:
    return manifest[len(MAGIC) :].split(b"\n", 1)[0]


def _replace_signature(manifest: bytes, signature_b64: bytes) -> bytes:
    line = _sig_line(manifest)
    head, _, _ = line.rpartition(b" ")
    return manifest.replace(line, head + b" " + signature_b64, 1)


def _b64_of_sig(manifest: bytes) -> bytes:
    return _sig_line(manifest).rpartition(b" ")[2]


MANIFEST_ATTACKS = {
    "empty": (lambda m: b"", ManifestFormatError),
    "garbage": (lambda m: bytes(range(256)) * 8, ManifestFormatError),
    "magic-only": (lambda m: MAGIC, ManifestFormatError),
    "body-only": (lambda m: m.partition(b"\n\n")[2], ManifestFormatError),
    "crlf": (lambda m: m.replace(b"\n", b"\r\n"), ManifestFormatError),
    "truncated-in-header": (lambda m: m[: len(MAGIC) + 30], ManifestFormatError),
    "truncated-in-body": (lambda m: m[:-25], BadSignatureError),
    "signature-line-removed": (
        lambda m: m.replace(_sig_line(m) + b"\n", b"", 1),
        ManifestFormatError,
    ),
    "signature-line-empty": (lambda m: m.replace(_sig_line(m), b"", 1), ManifestFormatError),
    "signature-cut-by-one-char": (
        lambda m: _replace_signature(m, _b64_of_sig(m)[:-1]),
        ManifestFormatError,
    ),
    "signature-cut-to-63-bytes": (
        lambda m: _replace_signature(m, base64.b64encode(base64.b64decode(_b64_of_sig(m))[:63])),
        BadSignatureError,
    ),
    "signature-empty": (lambda m: _replace_signature(m, b""), BadSignatureError),
    "signature-garbage": (
        lambda m: _replace_signature(m, base64.b64encode(bytes(range(64)))),
        BadSignatureError,
    ),
    "signature-all-zero": (
        lambda m: _replace_signature(m, base64.b64encode(bytes(64))),
        BadSignatureError,
    ),
    "signature-not-base64": (lambda m: _replace_signature(m, b"!" * 88), ManifestFormatError),
    "manifest-duplicated": (lambda m: m + m, BadSignatureError),
    "flipped-byte-in-body": (
        lambda m: m[:-10] + bytes([m[-10] ^ 0x20]) + m[-9:],
        BadSignatureError,
    ),
}


@pytest.mark.parametrize("attack", sorted(MANIFEST_ATTACKS))
def test_corrupted_manifest_is_rejected(sim, key, marker, attack):
    mutate, expected = MANIFEST_ATTACKS[attack]
    sim.publish({"evil.py": evil_source(marker)}, [key])
    sim.modify(MANIFEST_NAME, mutate)
    with pytest.raises(expected) as err:
        install(sim.url, pubkey=key.public.raw, fetcher=sim)
    assert type(err.value) is expected, err.value
    assert no_importer()
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("evil")
    assert sim.requested_paths() == [MANIFEST_NAME]
    assert_never_ran(marker, "evil")


def test_duplicated_signature_line_changes_nothing_at_threshold_one(sim, key):
    # The harmless twin of the corruptions above: one key signing twice is still one key.
    sim.publish({"mod.py": "VALUE = 1\n"}, [key])
    sim.modify(
        MANIFEST_NAME, lambda m: m.replace(_sig_line(m), _sig_line(m) + b"\n" + _sig_line(m), 1)
    )
    install(sim.url, pubkey=key.public.raw, fetcher=sim)
    assert importlib.import_module("mod").VALUE == 1


@pytest.mark.parametrize("failure", ["garbage", "dropped", "unpinned-key"])
def test_failed_manifest_refresh_never_falls_through_to_a_local_module(
    sim, key, marker, tmp_path, monkeypatch, failure
):
    # An old, vulnerable copy of `tool` sits on sys.path; the remote tree owns the name.
    local = tmp_path / "site"
    local.mkdir()
    (local / "tool.py").write_text(evil_source(marker))
    monkeypatch.syspath_prepend(str(local))
    sim.publish({"first.py": "", "tool.py": "SAFE = True\n"}, [key])
    install(sim.url, pubkey=key.public.raw, fetcher=sim)
    importlib.import_module("first")
    if failure == "garbage":
        sim.put(MANIFEST_NAME, b"garbage")
        expected: type[ImportError] = ManifestFormatError
    elif failure == "dropped":
        sim.drop(MANIFEST_NAME)
        expected = secure_urlimport.HTTPStatusError
    else:
        sim.publish({"first.py": "", "tool.py": "SAFE = True\n"}, [PrivateKey.generate()])
        expected = UntrustedKeyError
    importlib.invalidate_caches()
    for _ in range(2):  # and again: the failure is remembered, not retried per import
        with pytest.raises(expected) as err:
            importlib.import_module("tool")
        assert type(err.value) is expected and err.value.name == "tool"
    assert sim.requested_paths().count(MANIFEST_NAME) == 2
    assert_never_ran(marker, "tool")


# -- substitution ------------------------------------------------------------------


@pytest.mark.parametrize("how", ["bytes-swapped", "entry-borrowed-in-signed-manifest"])
def test_validly_signed_file_served_under_another_path_is_rejected(sim, key, marker, how):
    # wipe.py is signed, but meant to run only when asked for by name.
    files = {"mod.py": padded("VALUE = 1\n", evil_source(marker)), "wipe.py": evil_source(marker)}
    release = sim.publish(files, [key])
    if how == "bytes-swapped":
        sim.put("mod.py", files["wipe.py"])
        expected: type[Exception] = TamperedFileError
    else:
        # Even a manifest the pinned key signed cannot relabel wipe.py's signed
        # entry as mod.py: the path is part of every per-file signature.
        sim.serve(
            compose(
                {"mod.py": files["wipe.py"], "wipe.py": files["wipe.py"]},
                version=1,
                manifest_keys=[key],
                entries={"mod.py": release.entry("wipe.py")},
            )
        )
        expected = BadSignatureError
    install(sim.url, pubkey=key.public.raw, fetcher=sim)
    with pytest.raises(expected) as err:
        importlib.import_module("mod")
    assert type(err.value) is expected
    assert_never_ran(marker, "mod")


@pytest.mark.parametrize("how", ["bytes-swapped", "entry-borrowed-in-signed-manifest"])
def test_module_and_package_init_swapped_are_rejected(sim, key, marker, how):
    # Both signed: the package wins (as for local files), mod.py is an old leftover.
    files = {
        "mod/__init__.py": padded("VALUE = 'package'\n", evil_source(marker)),
        "mod.py": evil_source(marker),
    }
    release = sim.publish(files, [key])
    if how == "bytes-swapped":
        sim.put("mod/__init__.py", files["mod.py"])
        sim.put("mod.py", files["mod/__init__.py"])
        expected: type[Exception] = TamperedFileError
    else:
        sim.serve(
            compose(
                {"mod/__init__.py": files["mod.py"], "mod.py": files["mod.py"]},
                version=1,
                manifest_keys=[key],
                entries={"mod/__init__.py": release.entry("mod.py")},
            )
        )
        expected = BadSignatureError
    install(sim.url, pubkey=key.public.raw, fetcher=sim)
    with pytest.raises(expected) as err:
        importlib.import_module("mod")
    assert type(err.value) is expected
    assert sim.requested("mod.py") == 0
    assert_never_ran(marker, "mod")


def test_unsigned_package_init_next_to_a_signed_module_is_ignored(sim, key, marker):
    sim.publish({"mod.py": "VALUE = 'module'\n"}, [key])
    sim.put("mod/__init__.py", evil_source(marker))
    install(sim.url, pubkey=key.public.raw, fetcher=sim)
    mod = importlib.import_module("mod")
    assert mod.VALUE == "module" and mod.__file__ == sim.url_of("mod.py")
    assert sim.requested("mod/__init__.py") == 0
    assert_never_ran(marker)


@pytest.mark.parametrize("how", ["served-as-py", "entry-borrowed-in-signed-manifest"])
def test_data_file_served_as_a_module_is_rejected(sim, key, marker, how):
    files = {"pkg/__init__.py": "", "pkg/payload.txt": evil_source(marker)}
    release = sim.publish(files, [key])
    if how == "served-as-py":
        sim.put("pkg/payload.py", files["pkg/payload.txt"])
        expected: type[Exception] = ModuleNotFoundError
    else:
        sim.serve(
            compose(
                {**files, "pkg/payload.py": files["pkg/payload.txt"]},
                version=1,
                manifest_keys=[key],
                entries={"pkg/payload.py": release.entry("pkg/payload.txt")},
            )
        )
        expected = BadSignatureError
    install(sim.url, pubkey=key.public.raw, fetcher=sim)
    with pytest.raises(expected) as err:
        importlib.import_module("pkg.payload")
    assert type(err.value) is expected
    if how == "served-as-py":
        assert sim.requested("pkg/payload.py") == 0
    assert_never_ran(marker, "pkg.payload")


def test_another_tree_signed_by_the_same_key_served_at_this_url_is_rejected(key, marker):
    """One key signs /stable and /dev; the host serves /dev under /stable's URL.

    Every byte is validly signed, so only the signed tree name (pinned with
    ``name=``) tells them apart -- and the refused manifest must not become
    /stable's rollback floor.
    """
    stable = RepositorySimulator(url="https://code.example.test/stable")
    stable_release = stable.publish(
        {"tool.py": "MODE = 'stable'\n"}, [key], version=3, name="stable"
    )
    dev = RepositorySimulator(url="https://code.example.test/dev")
    dev_release = dev.publish(
        {"tool.py": evil_source(marker) + "MODE = 'dev'\n"}, [key], version=7, name="dev"
    )
    stable.serve(dev_release)
    with pytest.raises(WrongTreeError) as err:
        install(stable.url, pubkey=key.public.raw, fetcher=stable, name="stable")
    assert "'dev'" in str(err.value) and "'stable'" in str(err.value)
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("tool")
    assert_never_ran(marker, "tool")
    # The twin: the real stable release (version 3 < 7) still installs.
    stable.serve(stable_release)
    install(stable.url, pubkey=key.public.raw, fetcher=stable, name="stable")
    assert importlib.import_module("tool").MODE == "stable"


# -- mix-and-match -----------------------------------------------------------------


def test_file_from_release_n_inside_release_n_plus_1_is_rejected(sim, key, marker):
    old = sim.publish({"mod.py": evil_source(marker) + "V = 1\n"}, [key])  # vulnerable
    sim.publish({"mod.py": padded("V = 2\n", old.files["mod.py"].decode())}, [key])
    sim.put("mod.py", old.files["mod.py"])
    install(sim.url, pubkey=key.public.raw, fetcher=sim)
    with pytest.raises(TamperedFileError) as err:
        importlib.import_module("mod")
    assert type(err.value) is TamperedFileError
    assert_never_ran(marker, "mod")


@pytest.mark.parametrize("file_changed", [True, False], ids=["changed", "unchanged"])
def test_file_and_its_signature_from_release_n_inside_release_n_plus_1_are_rejected(
    sim, key, marker, file_changed
):
    v1_source = evil_source(marker) + "V = 1\n"
    old = sim.publish({"mod.py": v1_source, "other.py": ""}, [key])
    new_files = {"mod.py": "V = 2\n" if file_changed else v1_source, "other.py": ""}
    # Release 2's body, signed by the pinned key, carries release 1's entry
    # (hash, size and per-file signature) for mod.py: the tree version inside
    # every per-file signature tells them apart.
    mixed = compose(
        {**new_files, "mod.py": v1_source},
        version=2,
        manifest_keys=[key],
        entries={"mod.py": old.entry("mod.py")},
    )
    sim.serve(mixed)
    install(sim.url, pubkey=key.public.raw, fetcher=sim)
    importlib.import_module("other")  # the rest of release 2 is fine
    with pytest.raises(BadSignatureError) as err:
        importlib.import_module("mod")
    assert type(err.value) is BadSignatureError
    assert_never_ran(marker, "mod")
