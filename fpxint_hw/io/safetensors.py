"""Reading ``.safetensors`` weight files with numpy alone (no pickle, no extra package).

The format: an 8-byte little-endian header length ``n``, ``n`` bytes of JSON mapping each
tensor name to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets into the byte
buffer that follows the header; an optional ``"__metadata__"`` entry holds strings), then the
raw little-endian, C-ordered tensor data.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from ..errors import InputError

__all__ = ["read_safetensors", "SAFETENSORS_DTYPES"]

#: safetensors dtype name -> numpy dtype (little-endian). BF16 is widened to float32 on read.
SAFETENSORS_DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2",
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?",
}

#: A header longer than this is not a weights file (the real ones are a few kB to a few MB).
_MAX_HEADER = 100 << 20


def read_safetensors(path) -> dict[str, np.ndarray]:
    """Every tensor of the ``.safetensors`` file ``path`` as a read-only numpy array, by name.

    BF16 tensors come back as float32 (exactly: bf16 is float32's upper half). Raises
    InputError naming the file (and the tensor) for a missing or truncated file, a header that
    is not the format's JSON, an unknown dtype, or offsets that do not match the shape.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise InputError(f"{os.fspath(path)}: cannot read weights file ({e.strerror or e})") \
            from None
    if len(data) < 8:
        raise InputError(f"{p}: {len(data)} bytes, too short for a safetensors file")
    n = int.from_bytes(data[:8], "little")
    if n > min(_MAX_HEADER, len(data) - 8):
        raise InputError(f"{p}: header length {n} does not fit the file of {len(data)} bytes; "
                         f"not a safetensors file, or truncated")
    try:
        header = json.loads(data[8:8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{p}: the safetensors header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise InputError(f"{p}: the safetensors header is not a JSON object")
    buf = memoryview(data)[8 + n:]
    out: dict[str, np.ndarray] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
            shape = tuple(int(s) for s in shape)
        except (TypeError, KeyError, ValueError):
            raise InputError(f"{p}: tensor {name!r} has a malformed header entry "
                             f"{entry!r}") from None
        if dtype not in SAFETENSORS_DTYPES:
            raise InputError(f"{p}: tensor {name!r} has dtype {dtype!r}, not one of "
                             f"{', '.join(SAFETENSORS_DTYPES)}")
        np_dtype = np.dtype(SAFETENSORS_DTYPES[dtype])
        count = math.prod(shape)
        if not (0 <= begin <= end <= len(buf)) or end - begin != count * np_dtype.itemsize:
            raise InputError(f"{p}: tensor {name!r} ({dtype} {list(shape)}) has data offsets "
                             f"[{begin}, {end}] that do not match its size or the file "
                             f"({len(buf)} data bytes); the file is damaged or truncated")
        arr = np.frombuffer(buf, dtype=np_dtype, count=count, offset=begin).reshape(shape)
        if dtype == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        arr.flags.writeable = False
        out[name] = arr
    return out
