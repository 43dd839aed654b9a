"""Reading the JSON files keras-vae wrote (config.json, metrics.json, calibration.json, the
manifests, export.json, preset metadata) back, by one reader that bounds what a damaged or
hostile file can cost: its size, its nesting depth, and integers too long to convert, each
refused with one line that names the file and how to fix it.

    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "metrics.json"
    >>> _ = path.write_text("[" * 100 + "]" * 100)
    >>> read_json_file(path, "restore it")
    Traceback (most recent call last):
    ...
    keras_vae.json_files.JSONFileError: ... nested deeper than 64 levels; restore it.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any, BinaryIO

MAX_JSON_BYTES = 64 * 2**20  # the largest: a metrics.json of thousands of epochs is < 1 MB
MAX_JSON_DEPTH = 64  # keras-vae's own files nest at most 4 levels
_BRACKETS_AND_STRINGS = re.compile(r'[\[\]{}]|"(?:[^"\\]|\\.)*"')


class JSONFileError(ValueError):
    """A JSON file that cannot be read back; the message names it and says what to do."""


def read_json_file(path: str | os.PathLike, fix: str, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """The value of the JSON file `path`, read within bounds: at most `max_bytes`, nested at
    most `MAX_JSON_DEPTH` deep, UTF-8, valid JSON (integers of Python's digit limit).

    Args:
        path: the file.
        fix: what the user should do when it cannot be read (the end of the message).
        max_bytes: the largest file accepted.

    Raises:
        JSONFileError: (a `ValueError`) it is missing, unreadable, too large, too deep or
            not valid JSON; the message is one line naming `path`.
    """
    path = Path(path)
    try:
        with open_regular_file(path) as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > max_bytes:
                raise JSONFileError(
                    f"{path} is {size:,} bytes, over the {max_bytes:,} allowed; {fix}."
                )
            data = handle.read(max_bytes + 1)
        if len(data) > max_bytes:  # it grew while read
            raise JSONFileError(f"{path} is over the {max_bytes:,} bytes allowed; {fix}.")
        text = data.decode("utf-8")
    except NotARegularFileError:
        raise JSONFileError(f"{path} is not a regular file; {fix}.") from None
    except OSError as error:
        reason = " ".join(str(error.strerror or error).split())
        raise JSONFileError(f"Cannot read {path} ({reason}); {fix}.") from None
    except UnicodeDecodeError:
        raise JSONFileError(f"{path} is not UTF-8 text; {fix}.") from None
    return parse_json_text(text, str(path), fix)


class NotARegularFileError(OSError):
    """A path that names a FIFO, a device, a socket or a folder where a file is read."""


def open_regular_file(path: str | os.PathLike) -> BinaryIO:
    """`path` opened for reading in binary, refusing anything but a regular file without
    blocking: a FIFO named config.json would otherwise hang the reader until a writer came.

    Raises:
        NotARegularFileError: (an `OSError`) it is not a regular file.
        OSError: it cannot be opened.

    Example:
        >>> open_regular_file("/dev/null")
        Traceback (most recent call last):
        ...
        keras_vae.json_files.NotARegularFileError: /dev/null is not a regular file
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotARegularFileError(f"{os.fspath(path)} is not a regular file")
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def parse_json_text(text: str, name: str, fix: str) -> Any:
    """`text` (JSON read by the caller, at most `MAX_JSON_BYTES`) parsed within the depth
    and integer bounds of `read_json_file`, whose errors name `name` and end with `fix`.

    Example:
        >>> parse_json_text('{"a": 1}', "model.keras:config.json", "retrain")
        {'a': 1}
    """
    if nesting_depth(text) > MAX_JSON_DEPTH:
        raise JSONFileError(f"{name} is nested deeper than {MAX_JSON_DEPTH} levels; {fix}.")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise JSONFileError(
            f"{name} is not valid JSON ({error.msg} at line {error.lineno}); {fix}."
        ) from None
    except (ValueError, RecursionError) as error:  # e.g. an integer of 5,000 digits
        reason = " ".join(str(error).split())
        raise JSONFileError(f"{name} is not valid JSON ({reason}); {fix}.") from None


def nesting_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in JSON `text` (brackets inside strings
    ignored); text that is not JSON gets some number, and `json.loads` refuses it later.

    Example:
        >>> nesting_depth('{"a": [1, {"b": "]]]"}]}')
        3
    """
    depth = deepest = 0
    for match in _BRACKETS_AND_STRINGS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif token in "]}":
            depth -= 1
    return deepest
