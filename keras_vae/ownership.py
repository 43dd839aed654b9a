"""What keras-vae wrote into a folder, so that it never writes over or deletes anything else.

Every folder keras-vae writes into (a run directory of ``train``, an export folder of
``export``) gets a manifest, ``.keras-vae-manifest.json``, naming what the program created
there, written BEFORE each file is: a kill at any moment leaves nothing unlisted. The rules:

- a missing or empty folder becomes ours (the manifest is its first file);
- a folder with our manifest is ours, but only the paths it lists are: ``--overwrite`` and
  the clean-up after a kill delete exactly those (and folders they emptied), never a file
  the user added beside them;
- any other folder is refused before anything is written (`FolderNotOursError`), with
  ``--overwrite`` too. The repository's ``export/`` folder carries `EXPORT_FOLDER_MARK`, a
  committed empty file that says "exports go here", so the README's quick start exports
  into it beside its README.

A manifest lists ``files`` (paths or glob patterns such as ``logs/**/events.out.tfevents.*``,
relative to the folder), ``trees`` (folders written whole, e.g. an exported version
``encoder/3``, deleted whole) and ``folders`` (created by us, removed only once empty).

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> manifest = Manifest.take(folder, "run")
    >>> manifest.claim("config.json")
    >>> _ = (folder / "config.json").write_text("{}")
    >>> _ = (folder / "notes.txt").write_text("mine")
    >>> [p.name for p in manifest.remove_owned()]
    ['config.json']
    >>> sorted(p.name for p in folder.iterdir())
    ['.keras-vae-manifest.json', 'notes.txt']
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from keras_vae.atomic import remove_temporaries, write_json_atomically
from keras_vae.json_files import JSONFileError, read_json_file

MANIFEST_FILE = ".keras-vae-manifest.json"
EXPORT_FOLDER_MARK = ".keras-vae-export-folder"
KINDS = ("run", "export")
FORMAT = 1
_SECTIONS = ("files", "trees", "folders")
_ARTICLED = {"run": "a run directory", "export": "an export folder"}
_FLAGS = {"run": "--output", "export": "--out"}  # the command-line flag naming each kind


class FolderNotOursError(ValueError):
    """A folder holds files keras-vae did not write (or is corrupt); nothing was touched."""


def _relative(path: str) -> str:
    """A manifest entry: relative, POSIX, inside the folder (no '..', not absolute)."""
    pure = PurePosixPath(str(path).replace(os.sep, "/"))
    if pure.is_absolute() or ".." in pure.parts or not pure.parts:
        raise ValueError(f"A manifest entry must be a relative path inside the folder: {path!r}")
    return str(pure)


def _section(values: dict[str, Any], name: str) -> set[str]:
    """A manifest section read back: a list of relative paths, or a `ValueError` (a string
    there would otherwise claim each of its characters as a file)."""
    paths = values.get(name, [])
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise ValueError(f'"{name}" is not a list of relative paths')
    return {_relative(p) for p in paths}


def _describe(entries: list[str]) -> str:
    shown = ", ".join(repr(e) for e in entries[:3])
    return shown + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")


class Manifest:
    """The manifest of one folder keras-vae owns (see the module docstring).

    Use `Manifest.take` to claim a folder for writing, `Manifest.read` to inspect one.
    """

    def __init__(self, folder: Path, kind: str, entries: dict[str, set[str]] | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"Unknown manifest kind {kind!r}. Expected one of {list(KINDS)}.")
        self.folder = Path(folder)
        self.kind = kind
        self.entries = {name: set((entries or {}).get(name, ())) for name in _SECTIONS}

    @property
    def path(self) -> Path:
        """The manifest file in `folder`."""
        return self.folder / MANIFEST_FILE

    # ------------------------------------------------------------------ reading
    @classmethod
    def read(cls, folder: str | os.PathLike, kind: str) -> Manifest | None:
        """The folder's manifest; None when it has none.

        Raises:
            FolderNotOursError: the manifest is unreadable or belongs to another kind of folder.
        """
        folder = Path(folder)
        path = folder / MANIFEST_FILE
        if not path.exists():
            return None
        fix = "restore it or choose another folder (keras-vae will not guess what it owns)"
        try:
            values = read_json_file(path, fix)
            if not isinstance(values, dict):
                raise ValueError("not a JSON object")
            entries = {name: _section(values, name) for name in _SECTIONS}
            found = values.get("kind")
            if not isinstance(found, str) or found not in KINDS:
                raise ValueError(f'"kind" is {repr(found)[:40]}, not one of {list(KINDS)}')
        except JSONFileError as error:
            raise FolderNotOursError(str(error)) from None
        except ValueError as error:
            raise FolderNotOursError(f"{path} is unreadable ({error}); {fix}.") from None
        if found != kind:
            raise FolderNotOursError(
                f"{folder} is {_ARTICLED[found]} of keras-vae, not "
                f"{_ARTICLED[kind]}; choose another folder."
            )
        return cls(folder, kind, entries)

    @classmethod
    def check_takeable(
        cls, folder: str | os.PathLike, kind: str, adopt: Iterable[str] = ()
    ) -> Manifest | None:
        """`take`'s decision, reading only: the folder's manifest, or None when `take` would
        create one (missing, empty or marked folder, or `adopt` given).

        Raises:
            FolderNotOursError: the folder is a file, not writable, or holds files keras-vae
                did not write.
        """
        folder = Path(folder)
        check_writable_folder(folder, kind)
        manifest = cls.read(folder, kind) if folder.is_dir() else None
        if manifest is None:
            foreign = foreign_entries(folder, kind)
            if foreign and not set(adopt):
                raise not_ours_error(folder, kind, foreign)
        else:  # what it lists is written or deleted next: never through a symlink
            entries = manifest.entries
            manifest._check_no_link(*entries["files"])
            manifest._check_no_link(*entries["trees"], *entries["folders"], whole=True)
        return manifest

    @classmethod
    def take(cls, folder: str | os.PathLike, kind: str, adopt: Iterable[str] = ()) -> Manifest:
        """The manifest of `folder`, creating the folder and manifest when it is missing or
        empty (or carries `EXPORT_FOLDER_MARK`, for exports).

        Args:
            folder: the folder to write into.
            kind: "run" or "export".
            adopt: for a folder without a manifest that the caller has recognised as an
                older keras-vae folder, the files to list as ours.

        Raises:
            FolderNotOursError: the folder holds files keras-vae did not write.
        """
        folder, adopt = Path(folder), tuple(adopt)
        manifest = cls.check_takeable(folder, kind, adopt)
        if manifest is not None:
            return manifest
        manifest = cls(folder, kind, {"files": {_relative(p) for p in adopt}})
        folder.mkdir(parents=True, exist_ok=True)
        manifest.save()
        return manifest

    # ------------------------------------------------------------------ claiming
    def save(self) -> None:
        """Write the manifest (its kind and sorted entries), atomically."""
        values = {
            "kind": self.kind,
            "format": FORMAT,
            "written_by": "keras-vae",
            **{name: sorted(self.entries[name]) for name in _SECTIONS},
        }
        write_json_atomically(self.path, values)

    def claim(self, *files: str, trees: Iterable[str] = (), folders: Iterable[str] = ()) -> None:
        """List paths as ours (before writing them); rewrites the manifest when it changed.

        Raises:
            FolderNotOursError: a path leads through a symbolic link (a folder the user
                replaced by a link to one of theirs), where writing would reach outside.
        """
        trees, folders = tuple(trees), tuple(folders)
        self._check_no_link(*files)
        self._check_no_link(*trees, *folders, whole=True)
        before = {name: set(values) for name, values in self.entries.items()}
        self.entries["files"].update(_relative(f) for f in files)
        self.entries["trees"].update(_relative(t) for t in trees)
        self.entries["folders"].update(_relative(f) for f in folders)
        if self.entries != before:
            self.save()

    def release(self, *paths: str) -> None:
        """Stop listing `paths` (in any section) after they were deleted or handed over."""
        names = {_relative(p) for p in paths}
        changed = False
        for values in self.entries.values():
            if values & names:
                values -= names
                changed = True
        if changed:
            self.save()

    def _check_no_link(self, *paths: str, whole: bool = False) -> None:
        """Refuse `paths` (relative) when a folder on their way inside ours, or with `whole`
        the path itself, is a symbolic link: keras-vae would write or delete beyond it. (A
        listed file may be a link: it is replaced or unlinked, its target never touched.)"""
        for path in paths:
            link = link_on_the_way(self.folder, path, whole)
            if link is not None:
                raise FolderNotOursError(
                    f"{link} is a symbolic link inside a folder keras-vae wrote, which it "
                    "never follows to write or delete: replace the link with a folder, or "
                    f"choose another {_FLAGS[self.kind]}."
                )

    def owns(self, path: str) -> bool:
        """Whether `path` (relative) is listed, directly or by a pattern or tree."""
        path = _relative(path)
        if path in self.entries["files"] or path in self.entries["trees"]:
            return True
        pure = PurePosixPath(path)
        if any(pure.is_relative_to(tree) for tree in self.entries["trees"]):
            return True
        return any(
            (self.folder / path) in set(self.folder.glob(pattern))
            for pattern in self.entries["files"]
            if any(ch in pattern for ch in "*?[")
        )

    # ------------------------------------------------------------------ removing
    def owned_paths(self) -> list[Path]:
        """The existing files and trees this manifest lists (patterns expanded)."""
        found: set[Path] = set()
        for pattern in self.entries["files"]:
            if any(ch in pattern for ch in "*?["):
                found.update(p for p in self.folder.glob(pattern) if p.is_file())
            elif (self.folder / pattern).is_file() or (self.folder / pattern).is_symlink():
                found.add(self.folder / pattern)
        found.update(self.folder / t for t in self.entries["trees"] if (self.folder / t).is_dir())
        # Never through a link: a listed path under a folder replaced by a symlink is not ours.
        linked = {p for p in found if link_on_the_way(self.folder, p.relative_to(self.folder))}
        return sorted(found - linked)

    def remove_owned(self) -> list[Path]:
        """Delete what this manifest lists, its temporaries and the folders that leaves empty;
        keep everything else (and the manifest). Returns what was deleted."""
        removed = self.owned_paths()
        for path in removed:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        folders = [f for f in self.entries["folders"] if not link_on_the_way(self.folder, f, True)]
        for folder in [self.folder, *(self.folder / f for f in folders)]:
            removed += remove_temporaries(folder)
        # Deepest first, so a parent emptied by its children's removal goes too.
        for name in sorted(folders, key=lambda f: -len(PurePosixPath(f).parts)):
            path = self.folder / name
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()
                removed.append(path)
        self.entries = {name: set() for name in _SECTIONS}
        self.save()
        return removed


def link_on_the_way(folder: Path, path: str | os.PathLike, whole: bool = False) -> Path | None:
    """The first symbolic link among the folders from `folder` to `path` (relative; with
    `whole`, `path` itself too), or None.

    Example:
        >>> link_on_the_way(Path("/"), "no/such/path") is None
        True
    """
    parts = PurePosixPath(path).parts
    current = folder
    for part in parts if whole else parts[:-1]:
        current = current / part
        if current.is_symlink():
            return current
    return None


def check_writable_folder(folder: Path, kind: str) -> None:
    """Raise `FolderNotOursError` when `folder` is a file or its nearest existing folder is not
    writable."""
    flag = _FLAGS[kind]
    if folder.exists() and not folder.is_dir():
        raise FolderNotOursError(f"{flag} {folder} is a file; pass a folder (created if missing).")
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise FolderNotOursError(
            f"Cannot write to {existing}; choose another {flag} or fix its permissions."
        )


def foreign_entries(folder: str | os.PathLike, kind: str) -> list[str]:
    """Names in a folder without a manifest that keras-vae did not write ([] when it is
    missing, empty, or an export folder marked with `EXPORT_FOLDER_MARK`)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    names = sorted(os.listdir(folder))
    if kind == "export" and EXPORT_FOLDER_MARK in names:
        return []
    return names


def not_ours_error(folder: Path, kind: str, foreign: list[str]) -> FolderNotOursError:
    """The error refusing a `kind` folder holding `foreign` entries and no manifest."""
    if kind == "run":
        what, fix = "train", "choose an empty or new --output folder"
    else:
        what, fix = "export", "choose an empty or new --out folder"
    return FolderNotOursError(
        f"{folder} is not empty ({_describe(foreign)}) and holds nothing keras-vae {what} "
        f"wrote (no {MANIFEST_FILE}); {what} writes only into an empty folder or one it wrote, "
        f"and never deletes files it did not write, --overwrite included: {fix}."
    )
