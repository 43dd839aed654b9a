"""TF Serving warm-up requests: ``assets.extra/tf_serving_warmup_requests`` in a SavedModel.

TF Serving replays this file when it loads a version, before the version serves, so the first
real requests do not pay for graph initialisation. The format (tensorflow/serving,
``g3doc/saved_model_warmup.md`` and ``servables/tensorflow/saved_model_warmup_util.{h,cc}``):
a TFRecord of ``PredictionLog`` protos, here each a ``predict_log.request`` (a
``PredictRequest`` naming the model and the signature), at most 1,000 records. A record that
fails to parse or to run fails the load: TF Serving then refuses the whole version.

Records are written only for signatures whose inputs are ALL batched along dimension 0 (rank
at least 1, dimension 0 of any size), because with ``--enable_batching`` the warm-up runs
through the batching session: ``saved_model_bundle_factory.cc`` wraps the bundle's session
with ``WrapSessionForBatching`` while creating the bundle, and
``saved_model_bundle_source_adapter.cc`` then runs ``RunSavedModelWarmup`` on that same
session, whose ``Run`` (``batching/batching_session.cc``) refuses scalar inputs ("Batching
Run() input tensors must have at least one dimension", ``batching/batching_util.h``;
tensorflow/serving#494). One record for the unconditional decoder's ``sample`` (scalar
``num_samples`` and ``seed``) would thus make a batching server refuse the whole decoder; that
signature gets no warm-up, the batchable ones (``serving_default``, ``posterior_sample``,
``generate``, a conditional ``sample``, the scorer) do.

Input values come from the signature alone, so that every record is valid for any model:
zeros (valid Bernoulli or Gaussian data, noise, latent codes and class labels), and distinct
0, 1, 2, ... for inputs named ``seed``. This module reads nothing but the SavedModel.

Example:
    >>> n = write_warmup_requests("export/decoder/1", "decoder", 10_000)  # doctest: +SKIP
    >>> replay_warmup_requests("export/decoder/1") == n  # doctest: +SKIP
    True
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from keras_vae.export.export_utils import ExportError, saved_model_signatures

WARMUP_PATH = "assets.extra/tf_serving_warmup_requests"
# TF Serving's WarmupConsts::kMaxNumRecords (servables/tensorflow/saved_model_warmup_util.h).
MAX_WARMUP_RECORDS = 1000
DEFAULT_BATCH_SIZES = (1, 2, 4)
SEED_INPUT = "seed"


def _positive_int(value: Any) -> bool | np.bool_:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


def warmup_batch_sizes(
    max_rows: int, batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES
) -> list[int]:
    """The batch sizes the records are written at: `batch_sizes` clipped to `max_rows`,
    deduplicated and sorted.

    Example:
        >>> warmup_batch_sizes(3)
        [1, 2, 3]
    """
    if not _positive_int(max_rows):
        raise ValueError(
            "Received an invalid value for `max_rows`, expected a positive integer (the most "
            f"rows one request may hold). Received: max_rows={max_rows!r}"
        )
    sizes = list(batch_sizes)
    if not sizes or not all(_positive_int(size) for size in sizes):
        raise ValueError(
            "Received an invalid value for `batch_sizes`, expected a non-empty sequence of "
            f"positive integers. Received: batch_sizes={batch_sizes!r}"
        )
    return sorted({min(int(size), int(max_rows)) for size in sizes})


def batchable(inputs: dict[str, dict[str, Any]]) -> bool:
    """Whether TF Serving's batcher can run a signature: it has inputs, and each is of rank
    >= 1 with dimension 0 of any size (shapes as `saved_model_signatures` gives them).

    Example:
        >>> batchable({"z": {"dtype": "float32", "shape": [-1, 20]}})
        True
        >>> batchable({"num_samples": {"dtype": "int32", "shape": []}})
        False
    """
    return bool(inputs) and all(
        len(info["shape"]) >= 1 and info["shape"][0] == -1 for info in inputs.values()
    )


def warmup_input(name: str, dtype: str, shape: Sequence[int], batch: int) -> np.ndarray:
    """A valid value for one input at `batch` rows, from its signature only: distinct
    0, 1, ... for `seed`, zeros otherwise (dimensions of any size other than the first: 1).

    Example:
        >>> warmup_input("seed", "int64", [-1], 3).tolist()
        [0, 1, 2]
        >>> warmup_input("x", "float32", [-1, 2], 1).tolist()
        [[0.0, 0.0]]
    """
    import tensorflow as tf

    full = [batch, *(1 if int(d) < 0 else int(d) for d in shape[1:])]
    tf_dtype = tf.dtypes.as_dtype(dtype)
    if tf_dtype == tf.string:
        return np.full(full, b"", dtype=object)
    value = np.zeros(full, dtype=tf_dtype.as_numpy_dtype)
    if name == SEED_INPUT and tf_dtype.is_integer:
        value = np.arange(np.prod(full), dtype=value.dtype).reshape(full)
    return value


def write_warmup_requests(
    saved_model_dir: str | Path,
    model_name: str,
    max_rows: int,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
) -> int:
    """Write `saved_model_dir`/assets.extra/tf_serving_warmup_requests: one `PredictRequest`
    per batchable signature per batch size; returns the number of records.

    Args:
        saved_model_dir: a SavedModel folder (the version folder).
        model_name: `model_spec.name` of every request (the name in models.config).
        max_rows: the most rows one request may hold; larger batch sizes are clipped to it.
        batch_sizes: the batch sizes to warm up. Default (1, 2, 4).

    Example:
        >>> write_warmup_requests("export/encoder/1", "encoder", 10_000)  # doctest: +SKIP
        6
    """
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    sizes = warmup_batch_sizes(max_rows, batch_sizes)
    records = []
    for signature, spec in saved_model_signatures(saved_model_dir).items():
        if not batchable(spec["inputs"]):
            continue  # TF Serving's batcher refuses it, and one failed record fails the load
        for batch in sizes:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = signature
            for name, info in spec["inputs"].items():
                value = warmup_input(name, info["dtype"], info["shape"], batch)
                request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            records.append(log.SerializeToString())
    if len(records) > MAX_WARMUP_RECORDS:
        raise ValueError(
            f"{len(records)} warm-up records for {saved_model_dir}, more than TF Serving's "
            f"maximum of {MAX_WARMUP_RECORDS}; pass fewer `batch_sizes`. "
            f"Received: batch_sizes={tuple(batch_sizes)!r}"
        )
    path = Path(saved_model_dir) / WARMUP_PATH
    path.parent.mkdir(exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with tf.io.TFRecordWriter(str(partial)) as writer:
        for record in records:
            writer.write(record)
    os.replace(partial, path)  # TF Serving never sees half a file
    return len(records)


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (_CRC32C_POLY if crc & 1 else 0)
        table.append(crc)
    return table


_CRC32C_POLY = 0x82F63B78  # Castagnoli, reflected: the checksum TFRecord frames carry
_CRC32C_TABLE = _crc32c_table()


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC-32C of `data` (tensorflow/core/lib/hash/crc32c.h, ``Mask``).

    Example:
        >>> hex(masked_crc32c(b"123456789"))  # CRC-32C check value 0xe3069283, masked
        '0xc78ab0e5'
    """
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def check_record_framing(path: str | Path) -> int:
    """The number of records of the TFRecord file `path` after checking, from its 12-byte
    headers alone, that each record's length field carries a valid CRC and fits in what is
    left of the file (length, its CRC, the data and the data's CRC); `ExportError` naming the
    record, its length and the file size otherwise.

    TensorFlow's reader allocates a record's declared length before reading it, so a forged
    length (2**40 with a valid CRC) would crash the process; this walk reads 12 bytes per
    record and never allocates more. The data CRCs are left to TensorFlow's reader.

    Example:
        >>> check_record_framing("export/decoder/1/" + WARMUP_PATH)  # doctest: +SKIP
        9
    """
    size = os.path.getsize(path)
    offset = count = 0
    with open(path, "rb") as file:
        while offset < size:
            what = f"Warm-up record {count} of {path} (at byte {offset} of {size})"
            header = file.read(_HEADER_BYTES)
            if len(header) < _HEADER_BYTES:
                raise ExportError(
                    f"{what} is not a valid TFRecord: the file ends inside its "
                    f"{_HEADER_BYTES}-byte header (a truncated file)."
                )
            length, length_crc = struct.unpack("<QI", header)
            if masked_crc32c(header[:8]) != length_crc:
                raise ExportError(
                    f"{what} is not a valid TFRecord: the CRC of its length field does not "
                    "match (a corrupt file)."
                )
            end = offset + _HEADER_BYTES + length + _FOOTER_BYTES
            if end > size:
                raise ExportError(
                    f"{what} is not a valid TFRecord: its length field says {length} bytes, "
                    f"but only {size - offset - _HEADER_BYTES} bytes are left in the file "
                    "(a truncated or forged file); nothing was read."
                )
            file.seek(end)
            offset, count = end, count + 1
    return count


_HEADER_BYTES, _FOOTER_BYTES = 12, 4  # uint64 length + uint32 masked CRC; uint32 data CRC


def read_warmup_requests(path: str | Path) -> list[Any]:
    """The `PredictionLog` records of a warm-up file; `ExportError` naming the record and the
    file when one is not a TFRecord or not a `PredictionLog`. Every record's length is checked
    against the file (`check_record_framing`) before TensorFlow reads any of it.

    Example:
        >>> logs = read_warmup_requests("export/decoder/1/" + WARMUP_PATH)  # doctest: +SKIP
        >>> logs[0].predict_log.request.model_spec.signature_name  # doctest: +SKIP
        'serving_default'
    """
    import tensorflow as tf
    from google.protobuf.message import DecodeError
    from tensorflow_serving.apis import prediction_log_pb2

    if not Path(path).is_file():
        raise ExportError(f"No warm-up file at {path}.")
    count = check_record_framing(path)
    if count > MAX_WARMUP_RECORDS:
        raise ExportError(f"{path} holds {count} records, more than {MAX_WARMUP_RECORDS}.")
    logs: list[Any] = []
    iterator = iter(tf.data.TFRecordDataset(str(path)))
    while True:
        index = len(logs)
        try:
            record = next(iterator)
        except StopIteration:
            return logs
        except tf.errors.OpError as error:  # DataLossError: a bad length or checksum
            reason = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", error.message)
            raise ExportError(
                f"Warm-up record {index} of {path} is not a valid TFRecord: {reason}"
            ) from error
        try:
            logs.append(prediction_log_pb2.PredictionLog.FromString(record.numpy()))
        except DecodeError as error:
            raise ExportError(
                f"Warm-up record {index} of {path} is not a PredictionLog: {error}"
            ) from error


def check_warmup_request(log: Any, signatures: dict[str, dict[str, Any]]) -> tuple[str, int]:
    """The (signature, batch) of one record after checking it as TF Serving and its batcher
    would: a predict request naming an existing signature, exactly its inputs, each of rank
    >= 1 with the same dimension 0. Raises `ValueError` saying what is wrong."""
    if log.WhichOneof("log_type") != "predict_log":
        raise ValueError(f"it holds a {log.WhichOneof('log_type')}, not a predict_log")
    request = log.predict_log.request
    name = request.model_spec.signature_name or "serving_default"
    if name not in signatures:
        raise ValueError(f"it names signature {name!r}, which is not one of {sorted(signatures)}")
    expected, sent = set(signatures[name]["inputs"]), set(request.inputs)
    if sent != expected:
        raise ValueError(
            f"signature {name!r} takes inputs {sorted(expected)}; missing "
            f"{sorted(expected - sent)}, unknown {sorted(sent - expected)}"
        )
    shapes = {
        key: [d.size for d in value.tensor_shape.dim] for key, value in request.inputs.items()
    }
    batches = {shape[0] if shape else None for shape in shapes.values()}
    if None in batches or len(batches) != 1:
        raise ValueError(
            f"TF Serving's batcher needs every input batched along dimension 0 with one batch "
            f"size; the inputs of signature {name!r} have shapes {shapes}"
        )
    return name, cast(int, batches.pop())  # not None: checked above


def replay_warmup_requests(saved_model_dir: str | Path) -> int:
    """Run every warm-up record of `saved_model_dir` through its signature with TensorFlow;
    returns the number of records. Raises `ExportError` naming the record and what failed.

    Example:
        >>> replay_warmup_requests("export/decoder/1")                  # doctest: +SKIP
        9
    """
    import tensorflow as tf

    path = Path(saved_model_dir) / WARMUP_PATH
    logs = read_warmup_requests(path)
    if len(logs) > MAX_WARMUP_RECORDS:
        raise ExportError(f"{path} holds {len(logs)} records, more than {MAX_WARMUP_RECORDS}.")
    signatures = saved_model_signatures(saved_model_dir)
    loaded = tf.saved_model.load(str(saved_model_dir))
    for index, log in enumerate(logs):
        what = f"Warm-up record {index} of {path}"
        try:
            name, batch = check_warmup_request(log, signatures)
            inputs = {
                key: tf.constant(tf.make_ndarray(value))
                for key, value in log.predict_log.request.inputs.items()
            }
            outputs = loaded.signatures[name](**inputs)
        except (ValueError, TypeError, tf.errors.OpError) as error:
            raise ExportError(f"{what} fails: {error}") from error
        for key, value in outputs.items():
            if value.shape.rank == 0 or value.shape[0] != batch:
                raise ExportError(
                    f"{what} fails: output {key!r} of signature {name!r} has shape "
                    f"{value.shape.as_list()}, not {batch} rows like the request"
                )
    return len(logs)
