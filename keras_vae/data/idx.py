"""The IDX file format of the MNIST distribution: a big-endian header, then unsigned bytes.

The header is a magic number ``0x000008NN`` (``08``: unsigned bytes; ``NN``: number of
dimensions), then one 4-byte size per dimension. Files may be gzip-compressed.

Example:

>>> import gzip, os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "labels.gz")
>>> with gzip.open(path, "wb") as f:
...     _ = f.write(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1]))
>>> read_idx(path, IDX_LABELS_MAGIC)
array([7, 2, 1], dtype=uint8)
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib

import numpy as np

from keras_vae.data.checks import DataError, one_line

IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions (N, rows, cols)
IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension (N,)


def read_idx(path: str, magic: int) -> np.ndarray:
    """Read one unsigned-byte IDX file (gzip or not) after checking its header.

    Args:
        path: the file; gzip-compressed if its name ends in ``.gz`` or its content says so.
        magic: the expected magic number, `IDX_IMAGES_MAGIC` or `IDX_LABELS_MAGIC`.

    Returns:
        A uint8 array of the shape the header gives.

    Raises:
        DataError: the file is unreadable, not gzip where compressed, has another magic
            number, is truncated, has trailing bytes or holds no examples.

    Example:

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "images")
    >>> with open(path, "wb") as f:
    ...     _ = f.write(bytes([0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 255]))
    >>> read_idx(path, IDX_IMAGES_MAGIC)
    array([[[  0, 255]]], dtype=uint8)
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if path.endswith(".gz") or raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(
            f"Cannot read {path} ({one_line(error)}): the file is corrupt or not gzip; "
            "re-download it."
        ) from None
    ndim = magic & 0xFF
    header_size = 4 + 4 * ndim
    if len(raw) < 4 or struct.unpack(">I", raw[:4])[0] != magic:
        found = f"0x{struct.unpack('>I', raw[:4])[0]:08X}" if len(raw) >= 4 else "nothing"
        raise DataError(
            f"{path} is not an IDX file of {ndim}-d unsigned bytes: magic number {found}, "
            f"expected 0x{magic:08X}; check the file name and re-download it."
        )
    if len(raw) < header_size:
        raise DataError(f"{path} is truncated inside its IDX header; re-download it.")
    dims = struct.unpack(f">{ndim}I", raw[4:header_size])
    expected = math.prod(dims)
    found = len(raw) - header_size
    if found != expected:
        problem = "is truncated" if found < expected else "has trailing bytes"
        raise DataError(
            f"{path} {problem}: header says {dims} = {expected} bytes of data, found {found}; "
            "re-download it."
        )
    if dims[0] == 0:
        raise DataError(f"{path} holds no examples; re-download it.")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(dims)
