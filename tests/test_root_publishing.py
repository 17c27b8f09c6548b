"""The publisher's root of trust (issue #13): root init/update from Python, the
local chain check, the writer that never overwrites, and sign's root rules."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import write_tree

import secure_urlimport as su
from secure_urlimport._format.keys import PrivateKey, TrustedKeys
from secure_urlimport._format.manifest import parse_manifest_body, split_manifest_file
from secure_urlimport._format.paths import MANIFEST_NAME, is_metadata_file
from secure_urlimport._format.root import ROOT_PREFIX, Role, root_file_name
from secure_urlimport._trust.root_chain import TrustedRoot
from secure_urlimport.errors import ConfigurationError, SigningError
from secure_urlimport.publish.keyargs import public_key_arg, signer_key_id
from secure_urlimport.publish.keyfile import save_private_key
from secure_urlimport.publish.rootchain import read_root_chain
from secure_urlimport.publish.roots import write_new_root
from secure_urlimport.publish.signcheck import check_tree
from secure_urlimport.publish.signing import sign_tree


def _now() -> datetime:
    return datetime.now(UTC)


def pin(*keys: PrivateKey, threshold: int = 1) -> TrustedKeys:
    return TrustedKeys({k.keyid: k.public for k in keys}, threshold)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "tree", {"mod.py": "X = 1\n", "pkg/__init__.py": ""})


@pytest.fixture
def root_key() -> PrivateKey:
    return PrivateKey.generate()


@pytest.fixture
def ci() -> PrivateKey:
    return PrivateKey.generate()


@pytest.fixture
def rooted(tree: Path, root_key: PrivateKey, ci: PrivateKey) -> Path:
    su.init_root(tree, root_keys=[root_key], signers=[ci.public])
    return tree


def data(tree: Path, version: int) -> bytes:
    return (tree / root_file_name(version)).read_bytes()


def manifest_files(tree: Path) -> set[str]:
    signed = split_manifest_file((tree / MANIFEST_NAME).read_bytes())
    return set(parse_manifest_body(signed.body).files)


# -- init ------------------------------------------------------------------------


def test_init_writes_root_1_that_the_pinned_root_key_accepts(rooted, root_key, ci):
    trusted = TrustedRoot.from_pin(data(rooted, 1), pin(root_key), url="root.1")
    assert trusted is not None
    assert trusted.root.version == 1
    assert trusted.root.signers.keyids == (ci.keyid,)
    assert trusted.root.name == "tree"
    assert trusted.root.expires - trusted.root.created == timedelta(days=365)


def test_init_root_1_is_not_accepted_by_a_key_that_is_not_its_root_key(rooted, ci):
    assert TrustedRoot.from_pin(data(rooted, 1), pin(ci), url="root.1") is None


def test_init_takes_the_name_from_the_signed_manifest(tree, root_key, ci):
    sign_tree(tree, [ci], name="fleet-tools")
    result = su.init_root(tree, root_keys=root_key, signers=[ci.public])
    assert result.root.name == "fleet-tools"


def test_init_refuses_a_tree_that_already_has_a_root(rooted, root_key, ci):
    with pytest.raises(SigningError, match=r"already holds a root \(version 1\)"):
        su.init_root(rooted, root_keys=[root_key], signers=[ci.public])


def test_init_refuses_a_root_with_no_signer(tree, root_key):
    with pytest.raises(ConfigurationError, match="a root with no signer is refused"):
        su.init_root(tree, root_keys=[root_key], signers=[])
    assert not (tree / root_file_name(1)).exists()


def test_init_refuses_a_root_without_a_root_key(tree, ci):
    with pytest.raises(SigningError, match="at least one --root-key"):
        su.init_root(tree, root_keys=[], signers=[ci.public])


def test_init_accepts_a_threshold_equal_to_the_signers(tree, root_key, ci):
    other = PrivateKey.generate()
    result = su.init_root(
        tree, root_keys=[root_key], signers=[ci.public, other.public], threshold=2
    )
    assert result.root.signers.threshold == 2


def test_init_refuses_a_threshold_above_the_signers(tree, root_key, ci):
    with pytest.raises(ConfigurationError, match=r"--threshold 2 cannot be met by the 1 key\(s\)"):
        su.init_root(tree, root_keys=[root_key], signers=[ci.public], threshold=2)


def test_init_refuses_a_root_threshold_above_the_root_keys(tree, root_key, ci):
    with pytest.raises(ConfigurationError, match="--root-threshold 2 cannot be met"):
        su.init_root(tree, root_keys=[root_key], signers=[ci.public], root_threshold=2)


def test_init_refuses_an_expiry_in_the_past(tree, root_key, ci):
    with pytest.raises(ConfigurationError, match="expiry must be in the future"):
        su.init_root(tree, root_keys=[root_key], signers=[ci.public], expires_in=-timedelta(1))


def test_init_refuses_the_same_signer_given_twice(tree, root_key, ci):
    with pytest.raises(
        ConfigurationError, match=f"cannot add signer {ci.keyid}: it is given twice"
    ):
        su.init_root(tree, root_keys=[root_key], signers=[ci.public, ci.public])


def test_init_refuses_a_root_key_that_is_also_a_signer(tree, root_key):
    with pytest.raises(
        ConfigurationError, match=f"key\\(s\\) {root_key.keyid} would be both a root key and"
    ):
        su.init_root(tree, root_keys=[root_key], signers=[root_key.public])


def test_update_refuses_adding_a_root_key_as_a_tree_signer(rooted, root_key):
    with pytest.raises(ConfigurationError, match="would be both a root key and a release signer"):
        su.update_root(rooted, root_keys=root_key, tree_signers={"docs": [root_key.public]})


# -- update ------------------------------------------------------------------------


def test_update_adds_and_removes_signers_and_the_chain_advances(rooted, root_key, ci):
    new = PrivateKey.generate()
    result = su.update_root(
        rooted, root_keys=root_key, add_signers=[new.public], remove_signers=[ci.keyid]
    )
    assert result.version == 2
    trusted = TrustedRoot.from_pin(data(rooted, 1), pin(root_key), url="root.1")
    assert trusted is not None
    trusted.advance(data(rooted, 2), url="root.2")
    assert trusted.root.signers.keyids == (new.keyid,)


def test_update_removes_a_signer_given_as_its_pub_file(rooted, root_key, ci, tmp_path):
    pub = tmp_path / "ci.pub"
    pub.write_text(ci.public.to_line())
    result = su.update_root(
        rooted, root_keys=root_key, add_signers=[PrivateKey.generate().public], remove_signers=[pub]
    )
    assert ci.keyid not in result.root.signers.keyids


def test_update_refuses_to_remove_a_signer_that_is_not_there(rooted, root_key, ci):
    stranger = PrivateKey.generate()
    with pytest.raises(
        ConfigurationError,
        match=f"cannot remove signer {stranger.keyid}: root version 1 does not list it "
        f"as a signer \\(its signers: {ci.keyid}\\)",
    ):
        su.update_root(rooted, root_keys=root_key, remove_signers=[stranger.keyid])
    assert not (rooted / root_file_name(2)).exists()


def test_update_refuses_to_add_a_signer_that_is_already_there(rooted, root_key, ci):
    with pytest.raises(
        ConfigurationError, match=f"cannot add signer {ci.keyid}: it is already a signer"
    ):
        su.update_root(rooted, root_keys=root_key, add_signers=[ci.public])


def test_update_refuses_to_remove_the_last_signer(rooted, root_key, ci):
    with pytest.raises(ConfigurationError, match="a root with no signer is refused"):
        su.update_root(rooted, root_keys=root_key, remove_signers=[ci.keyid])


def test_update_refuses_a_threshold_above_the_signers_left(rooted, root_key, ci):
    other = PrivateKey.generate()
    su.update_root(rooted, root_keys=root_key, add_signers=[other.public], threshold=2)
    with pytest.raises(ConfigurationError, match="--threshold 2 cannot be met by the 1 key"):
        su.update_root(rooted, root_keys=root_key, remove_signers=[other.keyid])
    result = su.update_root(rooted, root_keys=root_key, remove_signers=[other.keyid], threshold=1)
    assert result.root.signers == Role((ci.keyid,), 1)


def test_update_refuses_a_root_key_that_is_not_a_root_key(rooted, root_key, ci):
    with pytest.raises(
        SigningError, match=f"--root-key key {ci.keyid} is not a root key of the new root"
    ):
        su.update_root(rooted, root_keys=[root_key, ci], expires_in=timedelta(days=30))


def test_update_renews_the_expiry(rooted, root_key):
    result = su.update_root(rooted, root_keys=root_key, expires_in=timedelta(days=30))
    assert result.root.expires - result.root.created == timedelta(days=30)


def test_update_refuses_a_tree_with_no_root(tree, root_key):
    with pytest.raises(SigningError, match="holds no root to update"):
        su.update_root(tree, root_keys=root_key)


# -- root key rotation ---------------------------------------------------------------


def test_root_key_rotation_signed_by_old_and_new_keys_advances_the_chain(rooted, root_key):
    new_root = PrivateKey.generate()
    su.update_root(
        rooted,
        root_keys=[root_key, new_root],
        add_root_keys=[new_root.public],
        remove_root_keys=[root_key.keyid],
    )
    trusted = TrustedRoot.from_pin(data(rooted, 1), pin(root_key), url="root.1")
    assert trusted is not None
    trusted.advance(data(rooted, 2), url="root.2")
    assert trusted.root.root.keyids == (new_root.keyid,)


def test_root_key_rotation_without_the_new_key_is_refused_naming_it(rooted, root_key):
    new_root = PrivateKey.generate()
    with pytest.raises(
        SigningError,
        match=f"the new root version 2 must be signed by its own root keys too .*1 of the "
        f"root keys {new_root.keyid} must sign; 0 given, missing: {new_root.keyid}",
    ):
        su.update_root(
            rooted,
            root_keys=[root_key],
            add_root_keys=[new_root.public],
            remove_root_keys=[root_key.keyid],
        )


def test_root_key_rotation_without_the_old_key_is_refused_naming_it(rooted, root_key):
    new_root = PrivateKey.generate()
    with pytest.raises(
        SigningError,
        match=f"root version 1 must approve the next root: 1 of the root keys {root_key.keyid} "
        f"must sign; 0 given, missing: {root_key.keyid}",
    ):
        su.update_root(
            rooted,
            root_keys=[new_root],
            add_root_keys=[new_root.public],
            remove_root_keys=[root_key.keyid],
        )


def test_after_rotation_the_old_root_key_alone_cannot_sign_the_next_root(rooted, root_key):
    new_root = PrivateKey.generate()
    su.update_root(
        rooted,
        root_keys=[root_key, new_root],
        add_root_keys=[new_root.public],
        remove_root_keys=[root_key.keyid],
    )
    with pytest.raises(SigningError, match=f"--root-key key {root_key.keyid} is not a root key"):
        su.update_root(rooted, root_keys=[root_key])
    su.update_root(rooted, root_keys=[new_root])  # the twin: the new key alone can
    assert read_root_chain(rooted).version == 3  # type: ignore[union-attr]


def test_root_threshold_two_needs_two_old_root_keys(tree, root_key, ci):
    second = PrivateKey.generate()
    su.init_root(tree, root_keys=[root_key, second], signers=[ci.public], root_threshold=2)
    with pytest.raises(
        SigningError,
        match=f"root version 1 must approve the next root: 2 of the root keys .*; "
        f"1 given, missing: {second.keyid}",
    ):
        su.update_root(tree, root_keys=[root_key])
    assert su.update_root(tree, root_keys=[root_key, second]).version == 2


# -- per-tree roles --------------------------------------------------------------------


def test_tree_roles_are_added_and_removed(rooted, root_key):
    other = PrivateKey.generate()
    result = su.update_root(rooted, root_keys=root_key, tree_signers={"docs": [other.public]})
    assert result.root.role_for("docs") == result.root.trees["docs"]
    result = su.update_root(rooted, root_keys=root_key, remove_trees=["docs"])
    assert result.root.trees == {}


def test_removing_a_tree_role_that_is_not_there_is_refused(rooted, root_key):
    with pytest.raises(ConfigurationError, match="cannot remove tree 'docs'"):
        su.update_root(rooted, root_keys=root_key, remove_trees=["docs"])


# -- the writer never overwrites, never follows ----------------------------------------


def test_the_writer_refuses_an_existing_root_version(rooted):
    planted = rooted / root_file_name(2)
    planted.write_bytes(b"planted")
    with pytest.raises(SigningError, match=r"already exists .*refusing to overwrite a root"):
        write_new_root(rooted, 2, b"new")
    assert planted.read_bytes() == b"planted"
    assert [p.name for p in rooted.iterdir() if p.name.endswith(".tmp")] == []


def test_the_writer_does_not_follow_a_symlink_at_the_next_version(rooted, tmp_path):
    target = tmp_path / "elsewhere"
    os.symlink(target, rooted / root_file_name(2))
    with pytest.raises(SigningError, match="already exists \\(or is a symlink\\)"):
        write_new_root(rooted, 2, b"new")
    assert not target.exists()


def test_the_writer_writes_a_free_version(rooted):
    assert write_new_root(rooted, 2, b"new").read_bytes() == b"new"


def test_update_refuses_a_symlink_planted_at_root_2(rooted, root_key, tmp_path):
    target = tmp_path / "elsewhere"
    target.write_bytes(data(rooted, 1))
    os.symlink(target, rooted / root_file_name(2))
    with pytest.raises(SigningError, match="a symlink, never followed"):
        su.update_root(rooted, root_keys=root_key)
    assert target.read_bytes() == data(rooted, 1)


# -- a broken chain is refused -------------------------------------------------------


@pytest.fixture
def broken(rooted: Path, ci: PrivateKey) -> Path:
    """root.2 signed by a stranger's root key, not by root.1's."""
    other = rooted.parent / "other"
    other.mkdir()
    thief = PrivateKey.generate()
    su.init_root(other, root_keys=[thief], signers=[ci.public], name="tree")
    su.update_root(other, root_keys=[thief])
    (rooted / root_file_name(2)).write_bytes(data(other, 2))
    return rooted


def test_update_refuses_a_chain_whose_root_2_root_1_did_not_sign(broken, root_key):
    with pytest.raises(SigningError, match=r"the root chain in .* is broken at version 2"):
        su.update_root(broken, root_keys=root_key)
    assert not (broken / root_file_name(3)).exists()


def test_sign_refuses_a_broken_chain(broken, ci):
    with pytest.raises(SigningError, match="is broken at version 2"):
        sign_tree(broken, [ci])
    assert not (broken / MANIFEST_NAME).exists()


def test_a_gap_in_the_chain_is_refused(rooted, root_key):
    su.update_root(rooted, root_keys=root_key)
    su.update_root(rooted, root_keys=root_key)
    (rooted / root_file_name(2)).unlink()
    with pytest.raises(SigningError, match="has no version 2 but has 3"):
        su.update_root(rooted, root_keys=root_key)


def test_a_root_file_name_that_is_no_version_is_refused(rooted, root_key):
    (rooted / f"{ROOT_PREFIX}01").write_bytes(b"")
    with pytest.raises(SigningError, match="is not a root version"):
        su.update_root(rooted, root_keys=root_key)


# -- sign and the root ---------------------------------------------------------------


def test_sign_with_a_key_the_root_lists_succeeds(rooted, ci):
    assert sign_tree(rooted, [ci]).version == 1


def test_sign_refuses_a_key_the_root_does_not_list(rooted, ci):
    stranger = PrivateKey.generate()
    with pytest.raises(
        SigningError,
        match=f"root version 1 of .* does not list key\\(s\\) {stranger.keyid} as signers "
        f"of tree 'tree'; it lists {ci.keyid}",
    ):
        sign_tree(rooted, [stranger])


def test_sign_refuses_fewer_keys_than_the_roles_threshold(tree, root_key, ci):
    other = PrivateKey.generate()
    su.init_root(tree, root_keys=[root_key], signers=[ci.public, other.public], threshold=2)
    with pytest.raises(SigningError, match=r"needs 2 of the signers .* and 1 given"):
        sign_tree(tree, [ci])
    assert sign_tree(tree, [ci, other]).version == 1


def test_sign_refuses_a_tree_name_the_root_does_not_govern(rooted, ci):
    with pytest.raises(SigningError, match="does not govern a tree named 'docs'"):
        sign_tree(rooted, [ci], name="docs")


def test_sign_accepts_a_signer_of_another_tree_the_root_governs(rooted, root_key):
    docs = PrivateKey.generate()
    su.update_root(rooted, root_keys=root_key, tree_signers={"docs": [docs.public]})
    assert sign_tree(rooted, [docs], name="docs").version == 1


def test_sign_continues_the_version_of_a_release_by_a_still_listed_key(rooted, root_key, ci):
    sign_tree(rooted, [ci])
    new = PrivateKey.generate()
    su.update_root(rooted, root_keys=root_key, add_signers=[new.public])
    assert sign_tree(rooted, [new]).version == 2


def test_sign_continues_the_version_after_the_old_key_is_removed(rooted, root_key, ci):
    sign_tree(rooted, [ci])
    new = PrivateKey.generate()
    su.update_root(rooted, root_keys=root_key, add_signers=[new.public], remove_signers=[ci.keyid])
    assert sign_tree(rooted, [new]).version == 2


def test_sign_does_not_trust_the_version_of_a_manifest_no_root_ever_listed(rooted, root_key):
    stranger = PrivateKey.generate()
    os.rename(rooted / root_file_name(1), rooted.parent / "root.1")
    sign_tree(rooted, [stranger], version=7)  # no root here: anyone's manifest
    os.rename(rooted.parent / "root.1", rooted / root_file_name(1))
    new = PrivateKey.generate()
    su.update_root(rooted, root_keys=root_key, add_signers=[new.public])
    with pytest.raises(SigningError, match="pass --version N"):
        sign_tree(rooted, [new])
    assert sign_tree(rooted, [new], version=8).version == 8


def test_sign_skips_root_files(rooted, root_key, ci):
    su.update_root(rooted, root_keys=root_key)
    sign_tree(rooted, [ci])
    assert manifest_files(rooted) == {"mod.py", "pkg/__init__.py"}


def test_sign_signs_a_root_named_file_below_the_top(rooted, ci):
    write_tree(rooted, {f"pkg/{root_file_name(1)}": "data\n"})
    sign_tree(rooted, [ci])
    assert f"pkg/{root_file_name(1)}" in manifest_files(rooted)


def test_sign_check_does_not_report_root_files(rooted, ci):
    sign_tree(rooted, [ci])
    check = check_tree(rooted, [ci.keyid], [ci.public], now=_now())
    assert check.up_to_date, [c.path for c in check.changes]


def test_sign_check_reports_a_tree_file_added_after_signing(rooted, ci):
    sign_tree(rooted, [ci])
    write_tree(rooted, {"new.py": ""})
    check = check_tree(rooted, [ci.keyid], [ci.public], now=_now())
    assert [(c.kind, c.path) for c in check.changes] == [("added", "new.py")]


def test_metadata_names_are_the_manifest_bundle_and_roots_at_the_top():
    assert is_metadata_file(root_file_name(7))
    assert is_metadata_file(MANIFEST_NAME)
    assert not is_metadata_file(f"pkg/{root_file_name(7)}")
    assert not is_metadata_file("secure-urlimport.rootkit")


# -- key arguments ---------------------------------------------------------------


def test_a_private_key_file_where_a_pub_belongs_is_refused_naming_it(tmp_path, ci):
    path = tmp_path / "ci.key"
    save_private_key(ci, path, None)
    with pytest.raises(ConfigurationError, match=f"--signer {path} is a private key file"):
        public_key_arg(str(path), "--signer")


def test_a_pub_file_where_a_pub_belongs_is_read(tmp_path, ci):
    path = tmp_path / "ci.pub"
    path.write_text(ci.public.to_line())
    assert public_key_arg(str(path), "--signer") == ci.public


def test_a_pub_file_where_a_signing_key_belongs_is_refused_naming_it(tmp_path, ci):
    path = tmp_path / "ci.pub"
    path.write_text(ci.public.to_line())
    with pytest.raises(ConfigurationError, match=f"--root-key {path} is a public key file"):
        signer_key_id(str(path), "--root-key")


def test_a_key_file_where_a_signing_key_belongs_gives_its_id_without_a_passphrase(tmp_path, ci):
    path = tmp_path / "ci.key"
    save_private_key(ci, path, b"secret")
    assert signer_key_id(str(path), "--root-key") == ci.keyid


def test_the_gate_does_not_report_root_files_as_unsigned(rooted, ci):
    from secure_urlimport.gate.audit import audit_directory

    sign_tree(rooted, [ci])
    report = audit_directory(rooted, pin(ci), now=_now())
    assert report.ok, [(p.kind, p.path) for p in report.problems]


def test_the_gate_reports_a_tree_file_added_after_signing_as_unsigned(rooted, ci):
    from secure_urlimport.gate.audit import audit_directory

    sign_tree(rooted, [ci])
    write_tree(rooted, {"extra.py": ""})
    report = audit_directory(rooted, pin(ci), now=_now())
    assert [(p.kind, p.path) for p in report.problems] == [("unsigned", "extra.py")]
