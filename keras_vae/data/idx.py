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
import io
import math
import struct
import zlib

import numpy as np

from keras_vae.data.checks import DataError, one_line

IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions (N, rows, cols)
IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension (N,)
_BLOCK_BYTES = 2**24


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
    ndim = magic & 0xFF
    header_size = 4 + 4 * ndim
    try:
        with open(path, "rb") as f:
            compressed = path.endswith(".gz") or f.read(2) == b"\x1f\x8b"
        with (gzip.open if compressed else open)(path, "rb") as f:
            header = f.read(header_size)
            _check_header(path, header, magic)
            dims = struct.unpack(f">{ndim}I", header[4:])
            expected = math.prod(dims)
            data = _read_at_most(f, expected + 1)
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(
            f"Cannot read {path} ({one_line(error)}): the file is corrupt or not gzip; "
            "re-download it."
        ) from None
    if len(data) != expected:
        problem = (
            f"is truncated: header says {dims} = {expected} bytes of data, found {len(data)}"
            if len(data) < expected
            else f"has trailing bytes: header says {dims} = {expected} bytes of data, found more"
        )
        raise DataError(f"{path} {problem}; re-download it.")
    if dims[0] == 0:
        raise DataError(f"{path} holds no examples; re-download it.")
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def _read_at_most(stream: io.BufferedIOBase, limit: int) -> bytearray:
    """Up to `limit` bytes of `stream`, read in blocks: memory grows with the bytes there are,
    never with what a header claims, and a small gzip inflating to gigabytes stops at `limit`."""
    data = bytearray()
    while len(data) < limit:
        block = stream.read(min(_BLOCK_BYTES, limit - len(data)))
        if not block:
            break
        data += block
    return data


def _check_header(path: str, header: bytes, magic: int) -> None:
    """Refuse a header that is short or has another magic number than `magic`."""
    ndim = magic & 0xFF
    if len(header) < 4 or struct.unpack(">I", header[:4])[0] != magic:
        found = f"0x{struct.unpack('>I', header[:4])[0]:08X}" if len(header) >= 4 else "nothing"
        raise DataError(
            f"{path} is not an IDX file of {ndim}-d unsigned bytes: magic number {found}, "
            f"expected 0x{magic:08X}; check the file name and re-download it."
        )
    if len(header) < 4 + 4 * ndim:
        raise DataError(f"{path} is truncated inside its IDX header; re-download it.")
