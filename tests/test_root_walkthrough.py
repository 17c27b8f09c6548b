"""README's "one offline root key, one online CI key" walk-through, for real (issue #13).

Every step runs the CLI in a subprocess against a tree served by a real nginx,
then starts a *fresh* consumer interpreter with the same consumer line,
``install(url, root="root.pub")``, which never changes: init, sign, rotate the
CI key, revoke a leaked CI key (the thief's release at version 2**63-1 is
refused and its code never runs), rotate the root key (the retired root key
alone can no longer publish anything a consumer accepts).  A machine that
joins after all of that, with the original ``root.pub`` and an empty cache,
walks the chain from version 1 and gets the newest release.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, TLSFiles, evil_source

PASSPHRASE = "walk-through passphrase"
pytestmark = pytest.mark.usefixtures("nginx_binary")


def cli(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "REQUESTS_CA_BUNDLE"}
    env["PYTHONPATH"] = str(REPO)
    env["SECURE_URLIMPORT_PASSPHRASE"] = PASSPHRASE
    result = subprocess.run(
        [sys.executable, "-m", "secure_urlimport", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return result


def ok(*args: str | Path, cwd: Path) -> str:
    result = cli(*args, cwd=cwd)
    assert result.returncode == 0, f"{args}: {result.stdout}{result.stderr}"
    return result.stdout


#: The consumer's whole configuration; the test never edits it.
CONSUMER = """\
import sys
import secure_urlimport
secure_urlimport.install(sys.argv[1], root="keys/root.pub", cafile=sys.argv[2])
import job
print("release", job.RELEASE)
"""


def consume(home: Path, url: str, tls: TLSFiles, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "REQUESTS_CA_BUNDLE"}
    env["PYTHONPATH"] = str(REPO)
    env["SECURE_URLIMPORT_CACHE_DIR"] = str(cache)
    return subprocess.run(
        [sys.executable, "consumer.py", url, tls.cafile],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=home,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def publish(tree: Path, www: Path) -> None:
    """What the publisher's CI does after signing: copy the tree to the web root."""
    shutil.copytree(tree, www, dirs_exist_ok=True)


def release(tree: Path, number: int, key: str, cwd: Path, www: Path) -> None:
    (tree / "job.py").write_text(f"RELEASE = {number}\n", encoding="utf-8")
    ok("sign", tree, "--key", key, cwd=cwd)
    publish(tree, www)


def plant(thief_tree: Path, www: Path) -> None:
    """What a thief with write access to the web root does with a release it signed."""
    for name in ("secure-urlimport.manifest", "secure-urlimport.bundle", "job.py"):
        shutil.copy(thief_tree / name, www / name)


def forge_root_with_retired_key(tree: Path, office: Path, *, evil: Path) -> None:
    """Root 5, listing *evil* as a signer, signed by the retired root key only."""
    from secure_urlimport._format.keys import PublicKey
    from secure_urlimport._format.root import (
        Role,
        encode_root,
        encode_root_body,
        parse_root_body,
        root_message,
        split_root_file,
    )
    from secure_urlimport.publish.keyfile import load_private_key

    retired = load_private_key(office / "keys/root.key", PASSPHRASE.encode())
    thief = PublicKey.from_line((evil).read_text(encoding="ascii"))
    current = parse_root_body(split_root_file((tree / "secure-urlimport.root.4").read_bytes()).body)
    keys = {retired.keyid: retired.public, thief.keyid: thief}
    forged = dataclasses.replace(
        current,
        version=5,
        keys=keys,
        root=Role((retired.keyid,), 1),
        signers=Role((thief.keyid,), 1),
        trees={},
    )
    body = encode_root_body(forged)
    signature = retired.sign(root_message(retired.keyid, body))
    (tree / "secure-urlimport.root.5").write_bytes(encode_root(body, [(retired.keyid, signature)]))


def test_the_consumer_line_never_changes_through_rotation_revocation_and_root_rotation(
    nginx, tls, tmp_path, marker
):
    office, consumer_home = tmp_path / "office", tmp_path / "consumer"
    tree, www = tmp_path / "tree", tmp_path / "www"
    for directory in (office / "keys", consumer_home / "keys", tree, www):
        directory.mkdir(parents=True)
    (consumer_home / "consumer.py").write_text(CONSUMER, encoding="utf-8")
    cache = tmp_path / "consumer-cache"

    # 1. One offline root key, one online CI key; the consumer pins the root only.
    ok("keygen", "keys/root", cwd=office)
    ok("keygen", "keys/ci1", cwd=office)
    shutil.copy(office / "keys/root.pub", consumer_home / "keys/root.pub")
    ok("root", "init", tree, "--root-key", "keys/root.key", "--signer", "keys/ci1.pub", cwd=office)
    # The root key stays offline from here on (in a safe, or a token); CI holds ci*.key.
    release(tree, 1, "keys/ci1.key", office, www)
    server = nginx(www)
    seen = consume(consumer_home, server.url, tls, cache)
    assert seen.returncode == 0, seen.stderr
    assert seen.stdout.splitlines() == ["release 1"]

    # 2. Rotate the CI key: the root publishes version 2; the consumer picks it up.
    ok("keygen", "keys/ci2", cwd=office)
    ok(
        "root", "update", tree, "--root-key", "keys/root.key",
        "--add-signer", "keys/ci2.pub", "--remove-signer", "keys/ci1.pub",
        cwd=office,
    )  # fmt: skip
    refused = cli("sign", tree, "--key", "keys/ci1.key", cwd=office)
    assert refused.returncode != 0 and "root" in refused.stderr
    release(tree, 2, "keys/ci2.key", office, www)
    seen = consume(consumer_home, server.url, tls, cache)
    assert seen.returncode == 0, seen.stderr
    assert seen.stdout.splitlines() == ["release 2"]

    # 3. ci2 leaks.  The root drops it; the thief's release is refused everywhere.
    ok("keygen", "keys/ci3", cwd=office)
    ok(
        "root", "update", tree, "--root-key", "keys/root.key",
        "--add-signer", "keys/ci3.pub", "--remove-signer", "keys/ci2.pub",
        cwd=office,
    )  # fmt: skip
    publish(tree, www)  # the new root is out before anything else
    thief_tree = tmp_path / "thief"
    shutil.copytree(tree, thief_tree)
    for stale_root in thief_tree.glob("secure-urlimport.root.*"):
        stale_root.unlink()  # the thief signs as if there were no root
    (thief_tree / "job.py").write_text(evil_source(marker) + "RELEASE = 666\n", encoding="utf-8")
    ok(
        "sign", thief_tree, "--key", "keys/ci2.key",
        "--version", str(2**63 - 1), "--allow-version-jump", "--name", "tree",
        cwd=office,
    )  # fmt: skip
    plant(thief_tree, www)
    seen = consume(consumer_home, server.url, tls, cache)
    assert seen.returncode == 1
    assert "UntrustedKeyError" in seen.stderr
    assert not marker.exists()
    release(tree, 3, "keys/ci3.key", office, www)
    seen = consume(consumer_home, server.url, tls, cache)
    assert seen.returncode == 0, seen.stderr
    assert seen.stdout.splitlines() == ["release 3"]

    # 4. Rotate the root key: the old and the new root keys sign the transition.
    ok("keygen", "keys/root2", cwd=office)
    ok(
        "root", "update", tree, "--root-key", "keys/root.key", "--root-key", "keys/root2.key",
        "--add-root-key", "keys/root2.pub", "--remove-root-key", "keys/root.pub",
        cwd=office,
    )  # fmt: skip
    release(tree, 4, "keys/ci3.key", office, www)
    seen = consume(consumer_home, server.url, tls, cache)
    assert seen.returncode == 0, seen.stderr
    assert seen.stdout.splitlines() == ["release 4"]

    # The retired root key alone can neither make the tool publish a root...
    refused = cli(
        "root", "update", tree, "--root-key", "keys/root.key", "--add-signer", "keys/ci1.pub",
        cwd=office,
    )  # fmt: skip
    assert refused.returncode != 0
    # ...nor forge one by hand that the consumer accepts.
    forge_root_with_retired_key(www, office, evil=office / "keys/ci1.pub")
    thief_release = tmp_path / "thief2"
    shutil.copytree(tree, thief_release)
    for root_file in thief_release.glob("secure-urlimport.root.*"):
        root_file.unlink()
    (thief_release / "job.py").write_text(evil_source(marker), encoding="utf-8")
    ok(
        "sign", thief_release, "--key", "keys/ci1.key",
        "--version", str(2**62), "--allow-version-jump", "--name", "tree",
        cwd=office,
    )  # fmt: skip
    plant(thief_release, www)
    seen = consume(consumer_home, server.url, tls, cache)
    assert seen.returncode == 1
    assert "UntrustedRootError" in seen.stderr
    assert not marker.exists()
    (www / "secure-urlimport.root.5").unlink()
    release(tree, 5, "keys/ci3.key", office, www)

    # A machine that joins now, with the original root.pub and nothing cached,
    # walks the chain from version 1 and runs the newest release.
    newcomer = consume(consumer_home, server.url, tls, tmp_path / "newcomer-cache")
    assert newcomer.returncode == 0, newcomer.stderr
    assert newcomer.stdout.splitlines() == ["release 5"]
    assert (consumer_home / "consumer.py").read_text(encoding="utf-8") == CONSUMER
