"""Repeated rows of a large frame found by one 64-bit key per row, as pandas would find them.

pandas' `duplicated` factorizes every column, the client codes through a hash table of
strings: 0.2 to 0.5 s for a million rows of codes and three numbers (bench/repeats.py). Here
each row gets a 64-bit key in a few numpy passes (text hashed from the arrow bytes, eight at a
time; numbers by their bits), the keys that occur more than once name the few candidate rows,
and pandas compares only those exactly. A key shared by rows that differ (a collision) costs
one more exact comparison, never a wrong answer.
"""

from __future__ import annotations

import numpy as np

# Rows whose text is turned into keys at a time: bounds the byte-index temporaries.
BLOCK_ROWS = 1_000_000
_MULTIPLIER_1 = np.uint64(0xBF58476D1CE4E5B9)
_MULTIPLIER_2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def duplicated(frame, columns, keep: str = "first") -> np.ndarray:
    """Like `frame.duplicated(subset=columns, keep=keep)`, as a numpy mask.

    Missing values equal one another, and 0.0 equals -0.0, as in pandas.
    """
    import pandas as pd

    columns = list(columns)
    if len(frame) < 2:
        return np.zeros(len(frame), dtype=bool)
    keys = row_keys(frame, columns)
    candidates = np.flatnonzero(pd.Series(keys).duplicated(keep=False).to_numpy())
    found = np.zeros(len(frame), dtype=bool)
    if len(candidates):
        exact = frame.iloc[candidates][columns].duplicated(keep=keep).to_numpy()
        found[candidates[exact]] = True
    return found


def drop_duplicates(frame, columns, keep: str = "first"):
    """`frame` without its repeated rows (compared on `columns`), renumbered from 0."""
    repeated = duplicated(frame, columns, keep)
    if not repeated.any():
        return frame.reset_index(drop=True)
    return frame[~repeated].reset_index(drop=True)


def row_keys(frame, columns) -> np.ndarray:
    """One 64-bit key per row: equal rows (on `columns`) get equal keys."""
    keys = np.full(len(frame), _GOLDEN, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for position, name in enumerate(columns):
            column = _column_keys(frame[name])
            keys = _mix(keys ^ _mix(column + np.uint64(position + 1)))
    return keys


def _mix(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every input bit moves every output bit."""
    values = (values ^ (values >> np.uint64(30))) * _MULTIPLIER_1
    values = (values ^ (values >> np.uint64(27))) * _MULTIPLIER_2
    return values ^ (values >> np.uint64(31))


def _column_keys(series) -> np.ndarray:
    import pandas as pd

    if pd.api.types.is_numeric_dtype(series.dtype):  # booleans too
        values = series.to_numpy(dtype="float64", na_value=np.nan)
        # -0.0 + 0.0 is 0.0; every NaN gets the same bits.
        values = np.where(np.isnan(values), np.nan, values + 0.0)
        return values.view(np.uint64).copy()
    return _text_keys(series)


def _text_keys(series) -> np.ndarray:
    """Keys of a text column from its UTF-8 bytes; a missing value has a key of its own."""
    import pyarrow as pa
    import pyarrow.compute as pc

    array = pa.array(getattr(series, "array", series), from_pandas=True)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        array = array.cast(pa.large_string())
    missing = None
    if array.null_count:
        missing = pc.is_null(array).to_numpy(zero_copy_only=False)
        array = pc.fill_null(array, "")
    lengths = pc.binary_length(array).to_numpy(zero_copy_only=False).astype(np.uint64)
    keys = _mix(lengths + _GOLDEN)
    longest = int(lengths.max()) if len(lengths) else 0
    ascii_only = pc.all(pc.string_is_ascii(array)).as_py() is not False
    if not ascii_only:
        array = array.cast(pa.large_string())  # 64-bit offsets, read by `_word_of`
    for word in range(0, longest, 8):
        if ascii_only:  # arrow cuts and pads: a byte is a character
            piece = array if longest <= 8 else pc.utf8_slice_codeunits(array, word, word + 8)
            fixed = pc.ascii_rpad(piece, 8, "\0").cast(pa.binary()).cast(pa.binary(8))
            values = np.frombuffer(fixed.buffers()[1], dtype=np.uint64)
            values = values[fixed.offset : fixed.offset + len(fixed)]
        else:
            values = _word_of(array, word)
        keys = _mix(keys ^ _mix(values + np.uint64(word + 1)))
    if missing is not None:
        keys[missing] = _mix(np.full(int(missing.sum()), _MULTIPLIER_2))
    return keys


def _word_of(array, word: int) -> np.ndarray:
    """Bytes word..word+7 of each value of a large_string `array`, zero past its end, as one
    little-endian number."""
    offsets_buffer, data_buffer = array.buffers()[1:3]
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[array.offset :][: len(array) + 1]
    data = np.frombuffer(data_buffer, dtype=np.uint8)
    starts, lengths = offsets[:-1], np.diff(offsets)
    values = np.empty(len(array), dtype=np.uint64)
    eight = np.arange(8)
    for first in range(0, len(array), BLOCK_ROWS):
        block = slice(first, first + BLOCK_ROWS)
        inside = (word + eight)[None, :] < lengths[block, None]
        where = np.where(inside, starts[block, None] + word + eight[None, :], 0)
        chunk = np.where(inside, data[where], 0).astype(np.uint8)
        values[block] = chunk.view(np.uint64).ravel()
    return values
