#!/usr/bin/env python3
"""A safetensors reader with only the Python standard library and numpy.

Written from the published safetensors format description (8 bytes: N, an unsigned little-endian 64-bit
integer; N bytes: a UTF-8 JSON header that begins with '{' and may be padded with spaces; the rest: the byte
buffer), not from any code that writes such files. It checks the format's rules (header size limit, no
duplicate keys, string-only __metadata__, known dtypes, data_offsets [BEGIN, END) relative to the byte buffer
and covering it with no hole and no overlap, END - BEGIN = entries x element size, row-major little-endian
entries) and prints one JSON object:

    {"header_bytes": N,
     "metadata": {...},                      # the __metadata__ strings
     "data_sha256": "...",                   # SHA-256 of the byte buffer
     "header_sha256": "...",                 # SHA-256 of the header with the digits of the metadata entry
                                             # bilevel.header_sha256 (if any) written as '0's
     "tensors": {name: {"dtype": "F32", "shape": [...], "data_offsets": [b, e],
                        "values": [...],      # row-major; floats as JSON numbers, or "NaN", "Infinity",
                                              # "-Infinity", "-0"; 64-bit integers as decimal strings
                        "bits": [...]}}}      # floats only: the IEEE-754 bit patterns (decimal strings for F64)

On a broken rule it prints the reason to stderr and exits with status 2.

    python3 read_safetensors.py FILE
"""
import hashlib
import json
import struct
import sys

import numpy as np

# dtype name -> numpy dtype (little-endian) of the format's element types handled here.
DTYPES = {
    "BOOL": np.dtype("?"),
    "U8": np.dtype("<u1"),
    "I8": np.dtype("<i1"),
    "U16": np.dtype("<u2"),
    "I16": np.dtype("<i2"),
    "F16": np.dtype("<f2"),
    "U32": np.dtype("<u4"),
    "I32": np.dtype("<i4"),
    "F32": np.dtype("<f4"),
    "U64": np.dtype("<u8"),
    "I64": np.dtype("<i8"),
    "F64": np.dtype("<f8"),
}
# The unsigned integer type of the same width, to show a float's bit pattern.
BITS = {"F16": np.dtype("<u2"), "F32": np.dtype("<u4"), "F64": np.dtype("<u8")}
MAX_HEADER = 100_000_000
CHECKSUM_KEY = b'"bilevel.header_sha256":"'


class FormatError(Exception):
    pass


def unique_keys(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise FormatError("duplicate key in the header: %r" % sorted({k for k in keys if keys.count(k) > 1}))
    return dict(pairs)


def load(path):
    """(N, metadata, {name: (info, numpy array)}, byte buffer, header bytes) of a safetensors file."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise FormatError("file shorter than the 8-byte header size")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER:
        raise FormatError("header size %d over the limit" % n)
    if 8 + n > len(data):
        raise FormatError("header of %d bytes runs past the end of the file" % n)
    header_bytes = data[8 : 8 + n]
    text = header_bytes.decode("utf-8")
    if not text.startswith("{"):
        raise FormatError("header does not begin with '{'")
    header = json.loads(text, object_pairs_hook=unique_keys)
    if not isinstance(header, dict):
        raise FormatError("header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise FormatError("__metadata__ holds a value that is not a string")
    buffer = memoryview(data)[8 + n :]
    tensors = {}
    position = 0
    for name, info in sorted(header.items(), key=lambda item: tuple(item[1]["data_offsets"])):
        if info["dtype"] not in DTYPES:
            raise FormatError("tensor %r: dtype %r not handled" % (name, info["dtype"]))
        dtype = DTYPES[info["dtype"]]
        shape = info["shape"]
        if not all(isinstance(d, int) and d >= 0 for d in shape):
            raise FormatError("tensor %r: bad shape %r" % (name, shape))
        begin, end = info["data_offsets"]
        if begin != position:
            raise FormatError("tensor %r starts at %d, not %d: a gap or an overlap" % (name, begin, position))
        count = 1
        for d in shape:
            count *= d
        if end - begin != count * dtype.itemsize:
            raise FormatError("tensor %r: %d bytes for %d entries of %s" % (name, end - begin, count, info["dtype"]))
        if count == 0:
            array = np.zeros(shape, dtype=dtype)
        else:
            array = np.frombuffer(buffer, dtype=dtype, count=count, offset=begin).reshape(shape)
        tensors[name] = (info, array)
        position = end
    if position != len(buffer):
        raise FormatError("the tensors cover %d of the %d bytes of the byte buffer" % (position, len(buffer)))
    return n, metadata, tensors, bytes(buffer), header_bytes


def float_json(v):
    v = float(v)
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "Infinity" if v > 0 else "-Infinity"
    if v == 0 and str(v).startswith("-"):
        return "-0"
    return v


def tensor_json(info, array):
    flat = array.reshape(-1)
    dtype = info["dtype"]
    out = {"dtype": dtype, "shape": list(array.shape), "data_offsets": list(info["data_offsets"])}
    if dtype in BITS:
        out["values"] = [float_json(v) for v in flat]
        bits = flat.view(BITS[dtype])
        out["bits"] = [str(int(b)) if dtype == "F64" else int(b) for b in bits]
    elif dtype in ("I64", "U64"):
        out["values"] = [str(int(v)) for v in flat]
    elif dtype == "BOOL":
        out["values"] = [bool(v) for v in flat]
    else:
        out["values"] = [int(v) for v in flat]
    return out


def header_checksum(header_bytes):
    """SHA-256 of the header with the 64 digits after "bilevel.header_sha256":" as zeros (if present)."""
    zeroed = bytearray(header_bytes)
    at = header_bytes.find(CHECKSUM_KEY)
    if at >= 0:
        start = at + len(CHECKSUM_KEY)
        zeroed[start : start + 64] = b"0" * 64
    return hashlib.sha256(bytes(zeroed)).hexdigest()


def main(argv):
    if len(argv) != 2:
        print("usage: read_safetensors.py FILE", file=sys.stderr)
        return 64
    try:
        n, metadata, tensors, buffer, header_bytes = load(argv[1])
    except (FormatError, ValueError, KeyError, TypeError) as e:
        print("not a valid safetensors file: %s" % e, file=sys.stderr)
        return 2
    result = {
        "header_bytes": n,
        "metadata": metadata,
        "data_sha256": hashlib.sha256(buffer).hexdigest(),
        "header_sha256": header_checksum(header_bytes),
        "tensors": {name: tensor_json(info, array) for name, (info, array) in tensors.items()},
    }
    json.dump(result, sys.stdout, allow_nan=False)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
