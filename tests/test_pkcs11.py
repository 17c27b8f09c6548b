"""Keys that never touch disk: signing with an Ed25519 key in a real SoftHSM2 token.

The URI tests always run.  The token tests need SoftHSM2 (Debian: softhsm2) and
python-pkcs11 (the [pkcs11] extra, in [test]); without them they are skipped,
unless ``SECURE_URLIMPORT_REQUIRE_SOFTHSM=1`` (set by .ci/run) makes that a failure.
"""

from __future__ import annotations

import contextlib
import os
import pty
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from conftest import REPO, TESTCODE
from softhsm import REQUIRE_ENV, SoftHSM, find_softhsm, make_softhsm

from secure_urlimport._format.keys import PrivateKey, PublicKey
from secure_urlimport.errors import KeyFileError
from secure_urlimport.publish import pkcs11 as token_keys
from secure_urlimport.publish.pkcs11uri import PIN_ENV, Pkcs11URI
from secure_urlimport.publish.signers import load_signer
from secure_urlimport.publish.signing import sign_tree

p11: ModuleType | None
try:  # imported once for the session: the import-system cleanup must not reload it
    import pkcs11 as p11
except ImportError:
    p11 = None

WRONG_PIN = "13572468-not-the-pin"
KEY = "pkcs11:token=release;object=publisher"


# -- RFC 7512 URIs (no token needed) ---------------------------------------------------


def test_a_uri_is_percent_decoded_into_token_object_id_and_query_attributes():
    uri = Pkcs11URI.parse(
        "pkcs11:token=my%20token;object=r%C3%A9lease;id=%01%ff;slot-id=7;serial=abc;"
        "manufacturer=SoftHSM%20project;model=SoftHSM%20v2;type=private"
        "?module-path=/opt/lib%2Dp11.so&pin-source=file:/run/pin"
    )
    assert (uri.token, uri.object, uri.id, uri.slot_id) == ("my token", "rélease", b"\x01\xff", 7)
    assert (uri.serial, uri.manufacturer, uri.model) == ("abc", "SoftHSM project", "SoftHSM v2")
    assert (uri.module_path, uri.pin_source, uri.pin_value) == (
        "/opt/lib-p11.so",
        "file:/run/pin",
        None,
    )


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("pkcs11:token=t;object=k;colour=red", "attribute 'colour' is not supported"),
        ("pkcs11:token=t;object=k;pin-value=1", "a query attribute: put it after '?'"),
        ("pkcs11:token=t?object=k", "a path attribute: put it before '?'"),
        ("pkcs11:token=t;object=k?module-name=softhsm2", "'module-name' is not supported"),
        ("pkcs11:token=t;token=u;object=k", "'token' is given twice"),
        ("pkcs11:token=t;object=k%2", "'%' must start an escape of two hex digits"),
        ("pkcs11:token=t;object=", "'object' is empty"),
        ("pkcs11:token=t;object", "has no value"),
        ("pkcs11:token=t;object=%ff", "not UTF-8"),
        ("pkcs11:object=k", "names no token"),
        ("pkcs11:token=t", "names no key"),
        ("pkcs11:slot-id=x;object=k", "slot-id='x' is not a decimal number"),
        ("pkcs11:token=t;object=k;type=cert", "a signing key is type=private"),
        ("pkcs11:token=t;object=k?pin-value=1&pin-source=/f", "pin-value or pin-source, not both"),
        ("file:key.key", "must start with 'pkcs11:'"),
    ],
)
def test_a_malformed_or_unknown_uri_attribute_is_refused_saying_what_to_write(text, says):
    with pytest.raises(KeyFileError) as caught:
        Pkcs11URI.parse(text)
    assert says in str(caught.value)


def test_the_pin_value_is_never_in_the_uri_repr_nor_a_parse_error():
    uri = Pkcs11URI.parse(f"pkcs11:token=t;object=k?pin-value={WRONG_PIN}")
    assert uri.pin_value == WRONG_PIN
    assert WRONG_PIN not in repr(uri) and WRONG_PIN not in uri.describe_key()
    with pytest.raises(KeyFileError) as caught:
        Pkcs11URI.parse(f"pkcs11:token=t;object=k;colour=red?pin-value={WRONG_PIN}")
    assert WRONG_PIN not in str(caught.value)


def test_importing_the_package_and_its_signers_does_not_import_python_pkcs11():
    code = (
        "import sys, secure_urlimport, secure_urlimport.cli.main\n"
        "import secure_urlimport.publish.signers, secure_urlimport.publish.pkcs11\n"
        "assert 'pkcs11' not in sys.modules, 'pkcs11 imported'\n"
    )
    result = _python(code, {})
    assert result.returncode == 0, result.stderr


BLOCK_PKCS11 = """
import sys
class NoPkcs11:
    def find_spec(self, name, path=None, target=None):
        if name == "pkcs11" or name.startswith("pkcs11."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NoPkcs11())
from secure_urlimport.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_without_python_pkcs11_a_token_key_says_how_to_install_the_extra(tmp_path: Path):
    tree = _tree(tmp_path)
    result = _python(BLOCK_PKCS11, {}, "sign", str(tree), "--key", KEY)
    assert result.returncode != 0
    assert "pip install 'secure_urlimport[pkcs11]'" in result.stderr
    assert "Traceback" not in result.stderr
    keygen = _python(BLOCK_PKCS11, {}, "keygen", "--pkcs11", KEY, str(tmp_path / "k"))
    assert keygen.returncode != 0 and "secure_urlimport[pkcs11]" in keygen.stderr
    assert not (tmp_path / "k.pub").exists()


SHADOW_PKCS11 = "raise ImportError('python-pkcs11 hidden by the test')\n"


@pytest.mark.parametrize(("required", "outcome"), [("", "1 skipped"), ("1", "1 error")])
def test_a_missing_token_stack_skips_the_token_tests_here_and_fails_them_in_ci(
    tmp_path: Path, required: str, outcome: str
):
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "pkcs11.py").write_text(SHADOW_PKCS11)
    test = f"{Path(__file__)}::test_keygen_refuses_a_label_already_in_the_token_and_an_existing_pub"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", test]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=300,
        env={**_env({REQUIRE_ENV: required}), "PYTHONPATH": f"{shadow}{os.pathsep}{REPO}"},
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert outcome in result.stdout, result.stdout + result.stderr
    assert "python-pkcs11 (pip install 'secure_urlimport[pkcs11]')" in result.stdout


def test_sign_check_with_a_token_key_asks_for_its_public_key_file(tmp_path: Path):
    result = _cli({}, "sign", "--check", str(_tree(tmp_path)), "--key", KEY)
    assert result.returncode == 2
    assert "--pubkey PREFIX.pub" in result.stderr


# -- a real SoftHSM2 token -------------------------------------------------------------


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> SoftHSM:
    """Two fresh tokens for the session; skipped without SoftHSM2 or the extra, unless CI."""
    found = find_softhsm()
    missing = [
        *(["SoftHSM2 (Debian/Ubuntu: apt-get install softhsm2)"] if found is None else []),
        *([f"python-pkcs11 ({token_keys.INSTALL_HINT})"] if p11 is None else []),
    ]
    if missing:
        what = " and ".join(missing)
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(
                f"{what} missing, but {REQUIRE_ENV}=1 says the token tests must run: "
                f"install it (.ci/run does) or unset {REQUIRE_ENV}",
                pytrace=False,
            )
        pytest.skip(f"{what} missing (with {REQUIRE_ENV}=1 this is a failure)")
    assert found is not None
    return make_softhsm(tmp_path_factory.mktemp("softhsm"), *found)


@pytest.fixture
def token(softhsm: SoftHSM, monkeypatch: pytest.MonkeyPatch) -> SoftHSM:
    """The session's tokens, for this process too (SoftHSM2 reads its config once)."""
    for name, value in softhsm.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv(PIN_ENV, raising=False)
    return softhsm


@pytest.fixture(scope="session")
def token_pub(softhsm: SoftHSM, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The publisher's key, made in the token by ``keygen --pkcs11``: its .pub file."""
    prefix = tmp_path_factory.mktemp("token-key") / "publisher"
    result = _cli(_pin_env(softhsm), "keygen", "--pkcs11", KEY, str(prefix))
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout and softhsm.pin not in result.stdout
    return prefix.with_suffix(".pub")


def test_keygen_makes_a_sensitive_never_extractable_ed25519_key_and_writes_only_the_pub(
    token: SoftHSM, token_pub: Path
):
    public = PublicKey.from_line(token_pub.read_text(), source=str(token_pub))
    assert not token_pub.with_suffix(".key").exists()
    assert p11 is not None
    lib = p11.lib(token.module)
    with lib.get_token(token_label="release").open(user_pin=token.pin) as session:
        private = session.get_key(object_class=p11.ObjectClass.PRIVATE_KEY, label="publisher")
        assert private.key_type == p11.KeyType.EC_EDWARDS
        assert private[p11.Attribute.SENSITIVE] and not private[p11.Attribute.EXTRACTABLE]
        assert private[p11.Attribute.TOKEN] and private[p11.Attribute.PRIVATE]
    assert public.keyid in token_pub.read_text()


def test_keygen_refuses_a_label_already_in_the_token_and_an_existing_pub(
    token: SoftHSM, token_pub: Path, tmp_path: Path
):
    again = _cli(_pin_env(token), "keygen", "--pkcs11", KEY, str(tmp_path / "again"))
    assert again.returncode != 0 and "already holds a key labelled 'publisher'" in again.stderr
    assert not (tmp_path / "again.pub").exists()
    taken = _cli(_pin_env(token), "keygen", "--pkcs11", KEY, str(token_pub.with_suffix("")))
    assert taken.returncode != 0 and "already exists" in taken.stderr
    same_id = _cli(
        _pin_env(token),
        "keygen",
        "--pkcs11",
        f"{KEY}-2;id={_token_id(token)}",
        str(tmp_path / "id"),
    )
    assert same_id.returncode != 0 and "already holds a key with that id" in same_id.stderr


def test_keygen_with_a_pin_value_in_the_uri_never_prints_the_pin(token: SoftHSM, tmp_path: Path):
    uri = f"pkcs11:token=spare;object=printed?pin-value={token.pin}"
    result = _cli(token.env, "keygen", "--pkcs11", uri, str(tmp_path / "printed"))
    assert result.returncode == 0, result.stderr
    assert "--key 'pkcs11:token=spare;object=printed'" in result.stdout
    assert token.pin not in result.stdout + result.stderr


def test_a_tree_signed_in_the_token_verifies_and_imports_over_https_in_a_fresh_interpreter(
    token: SoftHSM, token_pub: Path, tmp_path: Path, serve, tls
):
    tree = _tree(tmp_path)
    signed = _cli(_pin_env(token), "sign", str(tree), "--key", KEY)
    assert signed.returncode == 0, signed.stderr
    assert PublicKey.from_line(token_pub.read_text()).keyid in signed.stdout
    check = _cli({}, "sign", "--check", str(tree), "--pubkey", str(token_pub))
    assert check.returncode == 0, check.stdout + check.stderr
    assert _cli({}, "verify", str(tree), "--pubkey", str(token_pub)).returncode == 0
    server = serve(tree)
    code = (
        "import sys, secure_urlimport\n"
        "secure_urlimport.install(sys.argv[1], pubkey=sys.argv[2], cafile=sys.argv[3])\n"
        "import fib\nprint(fib.fib(10))\n"
    )
    fresh = _python(code, {}, server.url, str(token_pub), tls.cafile)
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout.splitlines()[-1] == "89"


def test_a_root_key_in_the_token_signs_root_init_and_update_and_consumers_pin_it(
    token: SoftHSM, token_pub: Path, tmp_path: Path, serve, tls
):
    """Issue #13's "one offline root key (or a token)": the root key never leaves the token."""
    tree = _tree(tmp_path)
    ci1, ci2 = PrivateKey.generate(), PrivateKey.generate()
    pubs = []
    for number, key in enumerate((ci1, ci2), start=1):
        pub = tmp_path / f"ci{number}.pub"
        pub.write_text(key.public.to_line(), encoding="ascii")
        pubs.append(pub)
    made = _cli(
        _pin_env(token), "root", "init", str(tree), "--root-key", KEY, "--signer", str(pubs[0])
    )
    assert made.returncode == 0, made.stderr
    sign_tree(tree, [ci1])
    rotated = _cli(
        _pin_env(token), "root", "update", str(tree), "--root-key", KEY,
        "--add-signer", str(pubs[1]), "--remove-signer", str(pubs[0]),
    )  # fmt: skip
    assert rotated.returncode == 0, rotated.stderr
    sign_tree(tree, [ci2], version=2)
    server = serve(tree)
    code = (
        "import sys, secure_urlimport\n"
        "secure_urlimport.install(sys.argv[1], root=sys.argv[2], cafile=sys.argv[3])\n"
        "import fib\nprint(fib.fib(10))\n"
    )
    fresh = _python(code, {}, server.url, str(token_pub), tls.cafile)
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout.splitlines()[-1] == "89"
    # The failure twin: a root key that is not the token's is refused.
    other = tmp_path / "other-root.pub"
    other.write_text(PrivateKey.generate().public.to_line(), encoding="ascii")
    refused = _python(
        code.replace("print(fib.fib(10))", ""), {}, server.url, str(other), tls.cafile
    )
    assert refused.returncode == 1
    assert "UntrustedRootError" in refused.stderr or "root" in refused.stderr


def test_a_token_signer_signs_many_messages_in_one_session_and_refuses_after_close(
    token: SoftHSM, token_pub: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv(PIN_ENV, token.pin)
    public = PublicKey.from_line(token_pub.read_text())
    with token_keys.load_token_signer(KEY) as signer:
        assert signer.public == public and signer.keyid == public.keyid
        messages = [b"file %d" % n for n in range(200)]
        signatures = [signer.sign(m) for m in messages]
        assert all(public.verifies(s, m) for s, m in zip(signatures, messages, strict=True))
        assert token.pin not in repr(signer) and "open" in repr(signer)
    assert "closed" in repr(signer)
    with pytest.raises(KeyFileError, match="was closed"):
        signer.sign(b"late")
    signer.close()  # twice is fine


def test_signing_speed_per_file_token_against_key_file(
    token: SoftHSM, token_pub: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    monkeypatch.setenv(PIN_ENV, token.pin)
    rounds = 300
    file_key = PrivateKey.generate()
    with token_keys.load_token_signer(KEY) as in_token:
        speeds = {}
        for name, signer in (("token", in_token), ("key file", file_key)):
            start = time.perf_counter()
            for n in range(rounds):
                signer.sign(b"secure-urlimport file message %d" % n)
            speeds[name] = (time.perf_counter() - start) / rounds * 1e6
    with capsys.disabled():
        print(
            f"\nsignature per file: token {speeds['token']:.0f} us, "
            f"key file {speeds['key file']:.0f} us"
        )
    assert speeds["token"] < 20_000  # a tree of 10,000 files signs in under 200 s


def test_a_wrong_pin_is_refused_as_wrong_and_never_printed(
    token: SoftHSM, token_pub: Path, tmp_path
):
    tree = _tree(tmp_path)
    by_env = _cli({**token.env, PIN_ENV: WRONG_PIN}, "sign", str(tree), "--key", KEY)
    by_uri = _cli(token.env, "sign", "-v", str(tree), "--key", f"{KEY}?pin-value={WRONG_PIN}")
    for result in (by_env, by_uri):
        assert result.returncode != 0
        assert "wrong PIN" in result.stderr and "Traceback" not in result.stderr
        assert WRONG_PIN not in result.stdout + result.stderr
    assert not (tree / "secure-urlimport.manifest").exists()


def test_the_pin_comes_from_a_pin_source_file_or_a_file_uri(
    token: SoftHSM, token_pub: Path, tmp_path: Path
):
    pin_file = tmp_path / "pin"
    pin_file.write_text(token.pin + "\n")
    for source in (str(pin_file), f"file://{pin_file}", f"file:{pin_file}"):
        tree = _tree(tmp_path / source.replace("/", "_"))
        result = _cli(token.env, "sign", str(tree), "--key", f"{KEY}?pin-source={source}")
        assert result.returncode == 0, result.stderr


def test_no_pin_and_no_terminal_is_a_clear_error(token: SoftHSM, token_pub: Path, tmp_path: Path):
    result = _cli(token.env, "sign", str(_tree(tmp_path)), "--key", KEY)
    assert result.returncode != 0
    assert f"needs its user PIN: set {PIN_ENV}" in result.stderr


def test_an_unknown_token_is_refused_listing_the_tokens_there(token: SoftHSM, tmp_path: Path):
    result = _cli(
        _pin_env(token), "sign", str(_tree(tmp_path)), "--key", "pkcs11:token=nope;object=k"
    )
    assert result.returncode != 0
    assert "no PKCS#11 token matches 'token=nope'" in result.stderr
    assert "'release' (serial" in result.stderr and "'spare' (serial" in result.stderr


def test_an_unknown_object_is_refused_listing_the_keys_in_the_token(
    token: SoftHSM, token_pub: Path, tmp_path: Path
):
    uri = "pkcs11:token=release;object=nobody"
    result = _cli(_pin_env(token), "sign", str(_tree(tmp_path)), "--key", uri)
    assert result.returncode != 0
    assert "token 'release' has no private key object='nobody'" in result.stderr
    assert "'publisher' (id " in result.stderr


def test_two_tokens_with_one_label_are_refused_as_ambiguous_and_serial_chooses_one(
    token: SoftHSM, tmp_path: Path
):
    tree = str(_tree(tmp_path))
    twins = _cli(_pin_env(token), "sign", tree, "--key", "pkcs11:token=twin;id=%01")
    assert twins.returncode != 0
    assert "2 PKCS#11 tokens match 'token=twin'" in twins.stderr and "add serial=" in twins.stderr
    serial = twins.stderr.split("'twin' (serial ")[1].split(",")[0]
    one = _cli(_pin_env(token), "sign", tree, "--key", f"pkcs11:serial={serial};id=%01")
    assert "token 'twin' has no private key id=01" in one.stderr


def test_two_private_keys_with_one_label_are_refused_as_ambiguous(
    token: SoftHSM, monkeypatch: pytest.MonkeyPatch
):
    with _session(token) as session:
        for n in (0x0D, 0x0E):
            _ed25519_pair(session, "doubled", bytes([n]))
    monkeypatch.setenv(PIN_ENV, token.pin)
    with pytest.raises(KeyFileError, match="has 2 private keys object='doubled'; add id="):
        load_signer("pkcs11:token=spare;object=doubled")
    with token_keys.load_token_signer("pkcs11:token=spare;object=doubled;id=%0e") as signer:
        assert signer.public.verifies(signer.sign(b"m"), b"m")


#: Runs in the child: make the pty on stdin its controlling terminal, then the CLI.
#: (pty.fork() would fork this multi-threaded test process: Python 3.12 warns
#: that the child may deadlock; subprocess's fork_exec does not run Python in between.)
_ON_A_TERMINAL = (
    "import fcntl, os, sys, termios\n"
    "os.setsid()\n"
    "fcntl.ioctl(0, termios.TIOCSCTTY, 0)\n"
    "os.execv(sys.executable, [sys.executable, '-m', 'secure_urlimport', *sys.argv[1:]])\n"
)


def test_the_pin_is_asked_on_a_terminal_and_not_echoed(token: SoftHSM, token_pub: Path, tmp_path):
    tree = _tree(tmp_path)
    fd, terminal = pty.openpty()
    child = subprocess.Popen(
        [sys.executable, "-c", _ON_A_TERMINAL, "sign", str(tree), "--key", KEY],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=_env(token.env),
        close_fds=True,
    )
    os.close(terminal)
    output = b""
    try:
        while b"User PIN for token 'release': " not in output:
            assert select.select([fd], [], [], 60)[0], f"no PIN prompt: {output!r}"
            output += os.read(fd, 1024)
        os.write(fd, token.pin.encode() + b"\n")
        with contextlib.suppress(OSError):  # EIO once the child is gone
            while chunk := os.read(fd, 1024):
                output += chunk
        assert child.wait(timeout=60) == 0, output
    finally:
        if child.poll() is None:
            child.kill()
        os.close(fd)
    assert b"signed 4 file(s)" in output
    assert token.pin.encode() not in output


def test_a_missing_module_or_a_file_that_is_not_one_is_refused_naming_it(
    token: SoftHSM, tmp_path: Path
):
    uri = f"{KEY}?module-path=/nonexistent/libp11.so"
    result = _cli(_pin_env(token), "sign", str(_tree(tmp_path)), "--key", uri)
    assert result.returncode != 0
    assert "PKCS#11 module '/nonexistent/libp11.so' (module-path) does not exist" in result.stderr
    not_a_module = tmp_path / "not-a-module.so"
    not_a_module.write_bytes(b"not an ELF file")
    uri = f"{KEY}?module-path={not_a_module}"
    wrong = _cli(_pin_env(token), "sign", str(_tree(tmp_path / "2")), "--key", uri)
    assert wrong.returncode != 0 and "Traceback" not in wrong.stderr
    assert f"cannot load '{not_a_module}' as a PKCS#11 module" in wrong.stderr


def test_a_key_that_is_not_ed25519_is_refused_at_load(
    token: SoftHSM, monkeypatch: pytest.MonkeyPatch
):
    assert p11 is not None
    with _session(token) as session:
        session.generate_keypair(
            p11.KeyType.EC,
            store=True,
            label="p256",
            id=b"\x25\x60",
            public_template={
                p11.Attribute.EC_PARAMS: p11.util.ec.encode_named_curve_parameters("secp256r1")
            },
        )
    monkeypatch.setenv(PIN_ENV, token.pin)
    with pytest.raises(KeyFileError, match=r"not an Ed25519 key \(EC\)"):
        load_signer("pkcs11:token=spare;object=p256")


def test_a_public_key_object_that_is_not_the_private_keys_twin_fails_at_load(
    token: SoftHSM, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    """A wrong public object must fail before any manifest is written, not after."""
    assert p11 is not None
    with _session(token) as session:
        pairs = [
            _ed25519_pair(session, label, bytes([n])) for n, label in ((1, "mixed"), (2, "other"))
        ]
        pairs[0][0].destroy()
        pairs[1][0][p11.Attribute.LABEL] = "mixed"
        pairs[1][0][p11.Attribute.ID] = b"\x01"
    tree = _tree(tmp_path)
    result = _cli(_pin_env(token), "sign", str(tree), "--key", "pkcs11:token=spare;object=mixed")
    assert result.returncode != 0
    assert "do not belong together" in result.stderr
    assert not (tree / "secure-urlimport.manifest").exists()


# -- helpers ---------------------------------------------------------------------------


def _session(token: SoftHSM) -> Any:
    assert p11 is not None
    return p11.lib(token.module).get_token(token_label="spare").open(rw=True, user_pin=token.pin)


def _ed25519_pair(session: Any, label: str, keyid: bytes) -> Any:
    assert p11 is not None
    return session.generate_keypair(
        p11.KeyType.EC_EDWARDS,
        store=True,
        label=label,
        id=keyid,
        public_template={
            p11.Attribute.EC_PARAMS: p11.util.ec.encode_named_curve_parameters("1.3.101.112")
        },
    )


def _token_id(token: SoftHSM) -> str:
    """The percent-encoded CKA_ID of the publisher's key in the release token."""
    assert p11 is not None
    with p11.lib(token.module).get_token(token_label="release").open(user_pin=token.pin) as s:
        key = s.get_key(object_class=p11.ObjectClass.PRIVATE_KEY, label="publisher")
        return "".join(f"%{byte:02x}" for byte in key[p11.Attribute.ID])


def _pin_env(softhsm: SoftHSM) -> dict[str, str]:
    return {**softhsm.env, PIN_ENV: softhsm.pin}


def _tree(directory: Path) -> Path:
    root = directory / "tree"
    shutil.copytree(TESTCODE, root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _python(code: str, extra: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return _run([sys.executable, "-c", code, *args], extra)


def _cli(extra: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return _run([sys.executable, "-m", "secure_urlimport", *args], extra)


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SECURE_URLIMPORT_PKCS11", "SOFTHSM2")) and k != "REQUESTS_CA_BUNDLE"
    }
    env.update(PYTHONPATH=str(REPO), **extra)
    return env


def _run(command: list[str], extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(extra),
        stdin=subprocess.DEVNULL,
        check=False,
    )
