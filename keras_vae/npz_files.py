"""Reading .npz files (a dataset, a run's backup/state.npz, its aggregate_sampler.npz) by one
reader that checks every array's header before numpy allocates it.

`np.load` allocates what an array's header declares before reading its data, so a damaged or
hostile header (a few bytes saying "10 million images") cost 29 GiB or a crash. Here each
member must be a numeric .npy whose declared size is exactly the data it holds; with
`stored_only` (keras-vae's own files, written by `np.savez`) every member must also be stored
uncompressed, so the arrays cannot add up to more than the file itself. Every refusal is a
`ValueError` with a short reason, which the caller puts in its own message.

    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.npz"
    >>> np.savez(path, x=np.arange(3))
    >>> read_npz(path, stored_only=True)["x"].tolist()
    [0, 1, 2]
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib

import numpy as np

from keras_vae.json_files import open_regular_file

_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def read_npz(path: str | os.PathLike, stored_only: bool = False) -> dict[str, np.ndarray]:
    """Every array of the .npz file `path`, by name, each checked before it is allocated.

    Args:
        path: the file.
        stored_only: refuse compressed members (keras-vae's own files are written by
            `np.savez`, uncompressed), which bounds the arrays by the file's size.

    Raises:
        ValueError: the file is not a zip of numeric .npy arrays (pickled objects are never
            read), a header declares more or fewer bytes than its member holds, a member is
            compressed when `stored_only`, the file is unreadable, or memory runs out.
    """
    try:
        with open_regular_file(path) as handle, zipfile.ZipFile(handle) as archive:
            members = archive.infolist()
            for info in members:
                _check_member(archive, info, stored_only)
            arrays = {}
            for info in members:
                with archive.open(info) as member:
                    array = np.lib.format.read_array(member, allow_pickle=False)
                arrays[info.filename.removesuffix(".npy")] = array
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError) as error:
        raise ValueError(" ".join(str(error).split()) or type(error).__name__) from None
    except MemoryError:
        raise ValueError("its arrays do not fit in memory") from None
    return arrays


def _check_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, stored_only: bool) -> None:
    """Refuse a member that is not a numeric .npy holding exactly what its header declares."""
    name = info.filename
    if not name.endswith(".npy"):
        raise ValueError(f"{name!r} is not an array (.npy)")
    if stored_only and info.compress_type != zipfile.ZIP_STORED:
        raise ValueError(f"{name} is compressed; keras-vae writes its files uncompressed")
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        if version not in _HEADER_READERS:
            raise ValueError(f"{name} is .npy format {version}, expected 1.0 or 2.0")
        shape, _, dtype = _HEADER_READERS[version](member)
        header_bytes = member.tell()
    if dtype.hasobject:
        raise ValueError(f"{name} holds Python objects (pickle), which keras-vae never reads")
    declared = math.prod(shape) * dtype.itemsize
    held = info.file_size - header_bytes
    if declared != held:
        raise ValueError(
            f"{name} declares shape {shape} of {dtype} ({declared:,} bytes) but holds "
            f"{held:,} bytes of data"
        )
