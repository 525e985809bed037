"""The probe's report: plain JSON, arrays inside it as base64-encoded ``.npy`` bytes.

The probe (untrusted: it ran student code) writes it with :func:`encode`; the grader
reads it with :class:`Report`, which checks every field's type, shape and size before
using it, and reads arrays with ``allow_pickle=False`` after checking their header (a
numeric dtype, the expected shape, a length that matches). Anything else makes the
exercise fail as "unusable"; nothing in a report can make it pass except the values the
grader asked for.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math

import numpy as np

MAX_ARRAY_BYTES = 8 * 2**20
MAX_TEXT = 200


class Unusable(Exception):
    """The report does not have the form the grader asked for; the message says where."""


def encode(value):
    """A JSON-ready copy of ``value``: NumPy arrays and scalars as ``{"npy": base64}``."""
    if isinstance(value, (np.ndarray, np.generic)):
        buffer = io.BytesIO()
        np.lib.format.write_array(buffer, np.asarray(value), allow_pickle=False)
        return {"npy": base64.b64encode(buffer.getvalue()).decode("ascii")}
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    return value


def decode_array(value, where: str, shape: tuple | None = None) -> np.ndarray:
    """A float64 array from ``{"npy": base64}``: a real or integer dtype (not object, not
    structured), ``shape`` when given, at most :data:`MAX_ARRAY_BYTES`."""
    if not isinstance(value, dict) or set(value) != {"npy"} or not isinstance(value["npy"], str):
        raise Unusable(f"{where} is not an array")
    if len(value["npy"]) > MAX_ARRAY_BYTES * 4 // 3 + 1024:
        raise Unusable(f"{where} is larger than {MAX_ARRAY_BYTES // 2**20} MiB")
    try:
        data = base64.b64decode(value["npy"], validate=True)
        stream = io.BytesIO(data)
        major, _ = np.lib.format.read_magic(stream)
        read_header = (np.lib.format.read_array_header_1_0 if major == 1
                       else np.lib.format.read_array_header_2_0)
        found, fortran, dtype = read_header(stream)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise Unusable(f"{where} is not a .npy array ({exc})") from None
    if dtype.kind not in "biuf" or dtype.fields is not None or dtype.subdtype is not None:
        raise Unusable(f"{where} has dtype {dtype}, expected numbers")
    if shape is not None and tuple(found) != tuple(shape):
        raise Unusable(f"{where} has shape {tuple(found)}, expected {tuple(shape)}")
    if stream.tell() + math.prod(found) * dtype.itemsize != len(data):
        raise Unusable(f"{where}: its data does not match its header")
    stream.seek(0)
    array = np.load(stream, allow_pickle=False)
    return np.asarray(array, dtype=np.float64)


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


class Report:
    """Checked access to a probe's report (a JSON object)."""

    def __init__(self, raw: bytes):
        try:
            self.fields = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise Unusable(f"the report is not JSON ({str(exc)[:80]})") from None
        if not isinstance(self.fields, dict):
            raise Unusable("the report is not a JSON object")

    def __contains__(self, name: str) -> bool:
        return name in self.fields

    def _get(self, name: str, kinds: tuple, what: str, fields=None):
        fields = self.fields if fields is None else fields
        if name not in fields:
            raise Unusable(f"the report has no {name!r}")
        value = fields[name]
        if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
            raise Unusable(f"{name!r} is not {what}")
        return value

    def array(self, name: str, shape: tuple | None = None) -> np.ndarray:
        if name not in self.fields:
            raise Unusable(f"the report has no {name!r}")
        return decode_array(self.fields[name], repr(name), shape)

    def arrays(self, name: str, count: int, shapes: list | None = None) -> list[np.ndarray]:
        values = self._get(name, (list,), "a list")
        if len(values) != count:
            raise Unusable(f"{name!r} has {len(values)} entries, expected {count}")
        return [decode_array(v, f"{name}[{i}]", None if shapes is None else shapes[i])
                for i, v in enumerate(values)]

    def integer(self, name: str, low: int = 0, high: int = 2**31) -> int:
        value = self._get(name, (int,), "an integer")
        if not low <= value <= high:
            raise Unusable(f"{name!r} = {value} is outside [{low}, {high}]")
        return value

    def boolean(self, name: str) -> bool:
        return self._get(name, (bool,), "true or false")

    def text(self, name: str) -> str:
        """A string for a message: one line, at most :data:`MAX_TEXT` characters."""
        value = self._get(name, (str,), "a string")
        return " ".join(value.split())[:MAX_TEXT]

    def numbers(self, name: str, high_count: int = 64) -> list[float]:
        values = self._get(name, (list,), "a list")
        if len(values) > high_count or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise Unusable(f"{name!r} is not a list of at most {high_count} numbers")
        return [float(v) for v in values]

    def part(self, name: str) -> Report:
        """A nested object, checked the same way."""
        inner = Report(b"{}")
        inner.fields = self._get(name, (dict,), "an object")
        return inner
