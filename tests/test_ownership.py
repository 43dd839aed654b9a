"""keras-vae writes only into folders it owns and deletes only what it wrote (issue 12, items 2
and 11): `train --output` and `export --out` on folders of the user's, `--overwrite`, the
temporary-file clean-up, and the modes of the files written."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from helpers import assert_exit_2_and_unchanged, tree_digest

from keras_vae import ownership
from keras_vae.cli import main
from keras_vae.resume import remove_stale_temporaries

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_FLAGS = [
    "--dataset=digits",
    "--latent-dim=2",
    "--hidden-units=16",
    "--epochs=1",
    "--batch-size=64",
    "--verbose=0",
]


def users_folder(root: Path) -> Path:
    """A folder of the user's that looks like a run: what the issue saw overwritten/deleted."""
    folder = root / "mine"
    (folder / "figures").mkdir(parents=True)
    (folder / "logs").mkdir()
    (folder / "metrics.json").write_text('{"mine": true}\n')
    (folder / "figures" / "samples.png").write_bytes(b"my picture")
    (folder / "figures" / "keep.png").write_bytes(b"keep me")
    (folder / ".settings.json.bak").write_text("backup of mine")
    (folder / "figures" / ".x.png.1").write_text("hidden of mine")
    (folder / "logs" / "my.log").write_text("my log")
    return folder


@pytest.mark.parametrize("overwrite", [False, True])
def test_train_refuses_a_folder_of_the_users_and_touches_nothing(tmp_path, capsys, overwrite):
    folder = users_folder(tmp_path)
    flags = [f"--output={folder}", *TINY_FLAGS, *(["--overwrite"] if overwrite else [])]
    fragments = ("holds nothing keras-vae train wrote", "empty")
    assert_exit_2_and_unchanged(["train", *flags], [folder], capsys, *fragments)


def test_train_refuses_a_file_and_an_unwritable_parent(tmp_path, capsys):
    path = tmp_path / "file"
    path.write_text("x")
    argv = ["train", f"--output={path}", *TINY_FLAGS]
    assert_exit_2_and_unchanged(argv, [tmp_path], capsys, "is a file")
    assert path.read_text() == "x"


def test_overwrite_deletes_only_what_the_run_wrote(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", f"--output={run}", *TINY_FLAGS, "--tensorboard"]) == 0
    capsys.readouterr()
    manifest = json.loads((run / ownership.MANIFEST_FILE).read_text())
    assert "model.keras" in manifest["files"] and "logs" in manifest["folders"]
    old_events = sorted(run.glob("logs/**/events.out.tfevents.*"))
    assert old_events
    # The user adds files beside and inside the run's folders.
    (run / "notes.txt").write_text("mine")
    (run / "figures" / "keep.png").write_bytes(b"mine")
    (run / "logs" / "my.log").write_text("mine")
    (run / ".settings.json.bak").write_text("mine")
    old_model = (run / "model.keras").read_bytes()
    assert main(["train", f"--output={run}", *TINY_FLAGS, "--seed=1", "--overwrite"]) == 0
    capsys.readouterr()
    for name in ("notes.txt", "figures/keep.png", "logs/my.log", ".settings.json.bak"):
        assert (run / name).read_bytes() in (b"mine",), name
    assert (run / "model.keras").read_bytes() != old_model
    assert json.loads((run / "config.json").read_text())["runtime"]["seed"] == 1
    assert not set(old_events) & set(run.glob("logs/**/events.out.tfevents.*"))
    assert not (run / "logs" / "train").exists()  # emptied, and it was the run's: removed
    assert not (run / "backup").exists()


def test_a_subfolder_replaced_by_a_symlink_is_never_followed(tiny_run_dir, tmp_path, capsys):
    """The user points a run's figures/ at a folder of theirs: --overwrite deleted their
    samples.png through the link and wrote the run's figures there. Now it is refused
    (exit 2, both folders unchanged), and nothing listed is deleted through a link."""
    run, photos = tmp_path / "run", tmp_path / "photos"
    shutil.copytree(tiny_run_dir, run)
    photos.mkdir()
    (photos / "samples.png").write_bytes(b"my picture")
    leftover = photos / ".samples.png.x1.keras-vae-tmp"  # looks like ours, an hour old
    leftover.write_bytes(b"mine too")
    os.utime(leftover, (leftover.stat().st_atime - 3600, leftover.stat().st_mtime - 3600))
    (photos / "empty").mkdir()
    shutil.rmtree(run / "figures")
    (run / "figures").symlink_to(photos)
    argv = ["train", f"--output={run}", *TINY_FLAGS, "--overwrite"]
    assert_exit_2_and_unchanged(argv, [run, photos], capsys, "figures is a symbolic link")
    manifest = ownership.Manifest.read(run, "run")
    assert not [p for p in manifest.owned_paths() if "figures" in p.parts]
    manifest.entries["folders"].add("figures/empty")  # as if the run had made it
    manifest.remove_owned()
    assert sorted(p.name for p in photos.iterdir()) == [
        ".samples.png.x1.keras-vae-tmp",
        "empty",
        "samples.png",
    ]
    assert (run / "figures").is_symlink() and not (run / "model.keras").exists()
    with pytest.raises(ownership.FolderNotOursError, match="figures is a symbolic link"):
        manifest.claim("figures/new.png")  # before writing through it
    with pytest.raises(ownership.FolderNotOursError, match="figures is a symbolic link"):
        manifest.claim(folders=["figures"])
    assert "figures/new.png" not in ownership.Manifest.read(run, "run").entries["files"]


def test_an_older_run_without_manifest_is_resumed_but_never_overwritten(
    tiny_run_dir, tmp_path, capsys
):
    run = tmp_path / "run"
    shutil.copytree(tiny_run_dir, run)
    (run / ownership.MANIFEST_FILE).unlink()  # as written by keras-vae before manifests
    config = json.loads((run / "config.json").read_text())
    same = [
        f"--output={run}",
        "--dataset=digits",
        "--latent-dim=2",
        "--hidden-units=16",
        f"--epochs={config['training']['epochs']}",
        "--batch-size=64",
        "--verbose=0",
    ]
    before = tree_digest(run, modes=True)
    assert main(["train", *same]) == 0  # the same config: a finished run, nothing to do
    assert "already holds this finished run" in capsys.readouterr().err
    assert tree_digest(run, modes=True) == before
    argv = ["train", *same, "--beta=0.5", "--overwrite"]
    assert_exit_2_and_unchanged(argv, [run], capsys, "holds nothing keras-vae train wrote")


def test_stale_temporaries_are_only_keras_vae_names(tmp_path):
    (tmp_path / "figures").mkdir()
    users = [".settings.json.bak", "figures/.x.png.1", ".metrics.json.old", ".model.tmp9.keras"]
    ours = [".metrics.json.ab12.keras-vae-tmp", "figures/.samples.png.cd.keras-vae-tmp"]
    for name in users + ours:
        (tmp_path / name).write_text("x")
    remove_stale_temporaries(tmp_path)
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert left == sorted(users)


def test_manifest_rejects_paths_outside_the_folder(tmp_path):
    manifest = ownership.Manifest.take(tmp_path / "f", "run")
    for bad in ("../escape", "/etc/passwd", "a/../../b"):
        with pytest.raises(ValueError, match="relative path inside"):
            manifest.claim(bad)
    (tmp_path / "f" / ownership.MANIFEST_FILE).write_text('{"kind": "run", "files": ["../x"]}')
    with pytest.raises(ownership.FolderNotOursError, match="unreadable"):
        ownership.Manifest.read(tmp_path / "f", "run")


@pytest.mark.parametrize(
    "values, fragment",
    [
        ({"kind": ["run"], "files": []}, "\"kind\" is ['run'], not one of"),
        ({"kind": {"a": 1}}, "\"kind\" is {'a': 1}, not one of"),
        ({"files": []}, '"kind" is None, not one of'),
        ({"kind": "run", "files": "abc"}, '"files" is not a list of relative paths'),
        ({"kind": "run", "trees": ["x", 3]}, '"trees" is not a list of relative paths'),
        ({"kind": "run", "folders": {"x": 1}}, '"folders" is not a list of relative paths'),
    ],
)
def test_a_manifest_of_the_wrong_shape_is_unreadable(tmp_path, values, fragment):
    """Read back as strictly as the command line: a "kind" that is not a string was a bare
    TypeError, and a string in place of a list claimed each of its characters as a file."""
    (tmp_path / ownership.MANIFEST_FILE).write_text(json.dumps(values))
    with pytest.raises(ownership.FolderNotOursError, match="unreadable") as error:
        ownership.Manifest.read(tmp_path, "run")
    assert fragment in str(error.value)


def test_train_overwrite_never_deletes_what_a_broken_manifest_names(tiny_run_dir, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run_dir, run)
    for name in "abc":  # the user's files, which a "files": "abc" manifest named
        (run / name).write_text(f"the user's {name}")
    manifest = run / ownership.MANIFEST_FILE
    values = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**values, "files": "abc"}))
    argv = ["train", f"--output={run}", *TINY_FLAGS, "--overwrite"]
    assert_exit_2_and_unchanged(argv, [run], capsys, '"files" is not a list of relative paths')
    assert [(run / name).read_text() for name in "abc"] == [f"the user's {n}" for n in "abc"]


def test_a_run_folder_is_not_an_export_folder(tmp_path, tiny_run_dir, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run_dir, run)
    fragment = "is a run directory of keras-vae, not an export folder"
    assert_exit_2_and_unchanged(["export", tiny_run_dir, "--out", run], [run], capsys, fragment)


# ------------------------------------------------------------------ export --out
@pytest.mark.slow
def test_export_out_rules(tiny_run_dir, tmp_path, capsys):
    # A folder of the user's: refused, --overwrite too, nothing touched.
    folder = users_folder(tmp_path)
    for extra in ([], ["--overwrite", "--version=1"]):
        argv = ["export", tiny_run_dir, "--out", folder, *extra]
        assert_exit_2_and_unchanged(argv, [folder], capsys, "holds nothing keras-vae export wrote")
    # A folder marked for exports, like the repository's export/: written beside its files.
    marked = tmp_path / "marked"
    marked.mkdir()
    for name in (".gitignore", "README.md", ownership.EXPORT_FOLDER_MARK):
        shutil.copy(REPO_ROOT / "export" / name, marked / name)
    kept = {name: (marked / name).read_bytes() for name in os.listdir(marked)}
    assert main(["export", str(tiny_run_dir), "--out", str(marked)]) == 0
    overwrite = ["--version=1", "--overwrite"]
    assert main(["export", str(tiny_run_dir), "--out", str(marked), *overwrite]) == 0
    capsys.readouterr()
    assert {name: (marked / name).read_bytes() for name in kept} == kept
    assert (marked / "encoder" / "1" / "saved_model.pb").is_file()
    # A version folder the user put into an export folder is never replaced.
    (marked / "encoder" / "7").mkdir()
    (marked / "encoder" / "7" / "mine").write_text("mine")
    argv = ["export", tiny_run_dir, "--out", marked, "--version=7", "--overwrite"]
    assert_exit_2_and_unchanged(argv, [marked], capsys, "not written by keras-vae export")
    assert (marked / "encoder" / "7" / "mine").read_text() == "mine"
    assert not (marked / "decoder" / "7").exists()


def test_the_repository_export_folder_is_marked_and_tracked():
    assert (REPO_ROOT / "export" / ownership.EXPORT_FOLDER_MARK).is_file()
    ignore = (REPO_ROOT / "export" / ".gitignore").read_text()
    assert f"!{ownership.EXPORT_FOLDER_MARK}" in ignore


# ------------------------------------------------------------------ modes (item 11)
@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_written_files_follow_the_umask(tmp_path, capsys, umask):
    previous = os.umask(umask)
    try:
        run = tmp_path / "run"
        assert main(["train", f"--output={run}", *TINY_FLAGS]) == 0
        png = tmp_path / "samples.png"
        assert main(["sample", str(run), "-n", "4", "--out", str(png)]) == 0
        capsys.readouterr()
    finally:
        os.umask(previous)
    expected = 0o666 & ~umask
    files = [p for p in run.rglob("*") if p.is_file()] + [png]
    assert {p.name for p in files} >= {"config.json", "metrics.json", "model.keras", "samples.png"}
    modes = {str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode) for p in files}
    assert modes == dict.fromkeys(modes, expected)
