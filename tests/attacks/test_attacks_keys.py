"""Key rotation and revocation, threshold bypasses, and private-key handling in the CLI."""

from __future__ import annotations

import base64
import importlib
import json
import os
import subprocess
import sys

import pytest
from conftest import REPO, evil_source, write_tree
from simulator import RepositorySimulator, assert_never_ran, compose

from secure_urlimport import UntrustedKeyError, install, uninstall
from secure_urlimport._format.keys import PrivateKey
from secure_urlimport._format.paths import MANIFEST_NAME
from secure_urlimport.publish.keyfile import save_private_key


@pytest.fixture
def sim() -> RepositorySimulator:
    return RepositorySimulator()


@pytest.fixture
def keys() -> dict[str, PrivateKey]:
    return {name: PrivateKey.generate() for name in ("old", "new", "k1", "k2", "k3", "stranger")}


def pins(keys, names: str) -> list[bytes]:
    return [keys[n].public.raw for n in names.split("+")]


def fresh_import(name: str):
    sys.modules.pop(name, None)
    return importlib.import_module(name)


# -- rotation and revocation ------------------------------------------------------------


@pytest.mark.parametrize("pinned", ["old", "new", "old+new"])
def test_rotation_release_signed_by_old_and_new_keys_imports_for_every_client(sim, keys, pinned):
    sim.publish({"mod.py": "RELEASE = 1\n"}, [keys["old"], keys["new"]])
    install(sim.url, pubkey=pins(keys, pinned), fetcher=sim)
    assert importlib.import_module("mod").RELEASE == 1


def test_revoked_key_client_is_refused_once_only_the_new_key_signs(sim, keys, marker):
    sim.publish({"mod.py": "RELEASE = 1\n"}, [keys["old"], keys["new"]])
    for pinned in ("old", "old+new", "new"):
        install(sim.url, pubkey=pins(keys, pinned), fetcher=sim)
        assert fresh_import("mod").RELEASE == 1
        uninstall(sim.url)
    # Every consumer pins the new key now: the publisher drops the old one.
    sim.publish({"mod.py": "RELEASE = 2\n", "evil.py": evil_source(marker)}, [keys["new"]])
    for pinned in ("old+new", "new"):
        install(sim.url, pubkey=pins(keys, pinned), fetcher=sim)
        assert fresh_import("mod").RELEASE == 2
        uninstall(sim.url)
    sys.modules.pop("mod")
    with pytest.raises(UntrustedKeyError) as err:
        install(sim.url, pubkey=pins(keys, "old"), fetcher=sim)
    assert type(err.value) is UntrustedKeyError
    assert keys["new"].keyid in str(err.value) and keys["old"].keyid in str(err.value)
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("evil")
    assert_never_ran(marker, "mod", "evil")


# -- threshold ----------------------------------------------------------------------------


@pytest.mark.parametrize("signers", ["k1+k2", "k2+k3", "k1+k2+k3"])
def test_threshold_two_of_three_is_met_by_two_distinct_pinned_keys(sim, keys, signers):
    sim.publish({"mod.py": "VALUE = 1\n"}, [keys[n] for n in signers.split("+")])
    install(sim.url, pubkey=pins(keys, "k1+k2+k3"), threshold=2, fetcher=sim)
    assert importlib.import_module("mod").VALUE == 1


@pytest.mark.parametrize("signers", ["k1", "k1+k1", "k1+stranger"])
def test_threshold_bypass_is_rejected(sim, keys, marker, signers):
    sim.publish({"evil.py": evil_source(marker)}, [keys[n] for n in signers.split("+")])
    if signers == "k1+k1":
        assert sim.releases[-1].manifest_bytes.count(b"signature " + keys["k1"].keyid.encode()) == 2
    with pytest.raises(UntrustedKeyError) as err:
        install(sim.url, pubkey=pins(keys, "k1+k2+k3"), threshold=2, fetcher=sim)
    assert type(err.value) is UntrustedKeyError
    assert "2 of the pinned key(s)" in str(err.value)
    if signers == "k1+stranger":
        assert keys["stranger"].keyid in str(err.value)
    assert sim.requested_paths() == [MANIFEST_NAME]
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("evil")
    assert_never_ran(marker, "evil")


def test_file_signed_by_fewer_keys_than_the_threshold_is_rejected(sim, keys, marker):
    # The manifest meets the threshold, but one file carries only k1's signature
    # (a signing pipeline that let k1 alone add a file).
    k1, k2 = keys["k1"], keys["k2"]
    honest = compose({"ok.py": ""}, version=1, manifest_keys=[k1, k2])
    lone = compose({"evil.py": evil_source(marker)}, version=1, manifest_keys=[k1])
    sim.serve(
        compose(
            {"ok.py": "", "evil.py": evil_source(marker)},
            version=1,
            manifest_keys=[k1, k2],
            entries={"ok.py": honest.entry("ok.py"), "evil.py": lone.entry("evil.py")},
        )
    )
    install(sim.url, pubkey=pins(keys, "k1+k2+k3"), threshold=2, fetcher=sim)
    importlib.import_module("ok")
    with pytest.raises(UntrustedKeyError) as err:
        importlib.import_module("evil")
    assert type(err.value) is UntrustedKeyError and err.value.name == "evil"
    assert_never_ran(marker, "evil")


# -- private keys ---------------------------------------------------------------------------


@pytest.mark.parametrize("verbose", [False, True], ids=["quiet", "verbose"])
def test_sign_with_a_wrong_passphrase_fails_clearly_and_leaks_nothing(tmp_path, verbose):
    key = PrivateKey.generate()
    right, wrong = "right-horse-battery-7", "wrong-guess-Xq7"
    key_path = tmp_path / "publisher.key"
    save_private_key(key, key_path, right.encode())
    tree = write_tree(tmp_path / "tree", {"mod.py": "VALUE = 1\n"})
    env = {k: v for k, v in os.environ.items() if "CA_BUNDLE" not in k}
    env.update(PYTHONPATH=str(REPO), SECURE_URLIMPORT_PASSPHRASE=wrong)
    command = [
        sys.executable,
        "-m",
        "secure_urlimport",
        *(["--verbose"] if verbose else []),
        "sign",
        str(tree),
        "--key",
        str(key_path),
    ]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "wrong passphrase" in result.stderr and str(key_path) in result.stderr
    assert "Traceback" not in output
    if not verbose:
        assert result.stderr.count("\n") == 1
    sealed = json.loads(key_path.read_text())
    secrets = {
        "the wrong passphrase": wrong,
        "the right passphrase": right,
        "the seed (hex)": key.seed().hex(),
        "the seed (base64)": base64.b64encode(key.seed()).decode(),
        "the ciphertext": sealed["ciphertext"],
        "the salt": sealed["salt"],
    }
    leaked = [what for what, text in secrets.items() if text in output]
    assert not leaked, leaked
    assert not (tree / MANIFEST_NAME).exists()
