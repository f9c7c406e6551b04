"""Load any CSV the way a careful analyst would, and the default penguins data.

`load_csv` checks the file before pandas sees it (exists, readable, not
empty, not binary), detects the text encoding and the delimiter, then reads
it with pyarrow's multi-threaded CSV reader (a million rows in a few
seconds) and hands pandas text columns as ``category`` dtype: each distinct
string is stored once, so a text column with few values takes 1 byte per row
instead of ~60. Every problem a user can fix becomes a one-line `shared`
error; every oddity we can handle becomes a warning in `LoadedCSV.warnings`.
"""

from __future__ import annotations

import csv
import importlib.resources
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from shared.errors import EmptyDataError, InputFileError

#: How many bytes we look at to guess encoding and delimiter.
SNIFF_BYTES = 64 * 1024
DELIMITERS = ",;\t|"
_MAC_ENCODINGS = (
    "mac_roman",
    "mac_latin2",
    "mac_cyrillic",
    "mac_greek",
    "mac_iceland",
    "mac_turkish",
    "mac_arabic",
    "mac_croatian",
    "mac_farsi",
    "mac_romanian",
)


@dataclass
class LoadedCSV:
    """A data frame plus what we learned while reading it."""

    frame: pd.DataFrame
    path: Path
    encoding: str
    delimiter: str
    size_bytes: int
    warnings: list[str] = field(default_factory=list)


def penguins_csv(raw_dir: Path) -> Path:
    """Write the Palmer penguins CSV shipped by `palmerpenguins` to ``raw_dir`` (once).

    Raw data is immutable: an existing copy is kept as is.

    Args:
        raw_dir: The level's ``data/raw`` folder.

    Returns:
        Path of ``penguins.csv``.
    """
    target = raw_dir / "penguins.csv"
    if not target.exists():
        raw_dir.mkdir(parents=True, exist_ok=True)
        source = importlib.resources.files("palmerpenguins") / "data" / "penguins.csv"
        tmp = target.with_suffix(".csv.tmp")
        with importlib.resources.as_file(source) as src:
            shutil.copyfile(src, tmp)
        tmp.replace(target)
    return target


def check_file(path: Path) -> int:
    """Size in bytes of a readable, non-empty file; otherwise a one-line `UserError`."""
    if not path.exists():
        raise InputFileError(f"file not found: {path}")
    if path.is_dir():
        raise InputFileError(f"{path} is a directory, not a CSV file")
    if not os.access(path, os.R_OK):
        raise InputFileError(f"cannot read {path}: permission denied")
    size = path.stat().st_size
    if size == 0:
        raise EmptyDataError(f"{path} is empty (0 bytes)")
    return size


def _read_head(path: Path) -> bytes:
    try:
        with path.open("rb") as fh:
            return fh.read(SNIFF_BYTES)
    except OSError as exc:
        raise InputFileError(f"cannot read {path}: {exc.strerror or exc}") from None


def detect_encoding(head: bytes) -> str:
    """Guess the text encoding of a file from its first bytes.

    UTF-8 (with or without a byte-order mark) is tried first because it is the
    norm; otherwise `charset-normalizer` picks the most plausible encoding.

    Raises:
        InputFileError: The bytes look binary (NUL bytes), so this is not a CSV.
    """
    if head.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    if b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputFileError("the file looks binary (it contains NUL bytes), not like a CSV text file")
    try:
        head.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        # The sample may end in the middle of a multi-byte character: that is still UTF-8.
        if exc.start >= len(head) - 3:
            return "utf-8"
    from charset_normalizer import from_bytes

    # Classic Mac code pages decode almost anything and win too often; CSVs come from Windows.
    best = from_bytes(head, cp_exclusion=list(_MAC_ENCODINGS)).best()
    if best is not None:
        return str(best.encoding)
    try:
        head.decode("cp1252")  # the usual non-UTF-8 encoding of spreadsheets exported on Windows
        return "cp1252"
    except UnicodeDecodeError:
        return "latin-1"  # decodes any byte: the text is readable even if a few letters are wrong


def detect_delimiter(text: str) -> str:
    """Guess the delimiter from the first lines (``,`` ``;`` tab or ``|``); default ``,``."""
    lines = [line for line in text.splitlines()[:50] if line.strip()]
    if not lines:
        return ","
    sample = "\n".join(lines)
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        # Sniffer gives up on ragged files; count candidates in the header instead.
        counts = {d: lines[0].count(d) for d in DELIMITERS}
        best = max(counts, key=lambda d: counts[d])
        return best if counts[best] > 0 else ","


def load_csv(path: str | os.PathLike[str]) -> LoadedCSV:
    """Read a CSV file into a DataFrame, detecting encoding and delimiter.

    Args:
        path: The CSV file.

    Returns:
        A `LoadedCSV` with the frame and any warnings (non-UTF-8, unusual delimiter).

    Raises:
        InputFileError: Missing, unreadable, binary or unparsable file.
        EmptyDataError: No bytes, or a header without rows.
    """
    path = Path(path)
    size = check_file(path)
    head = _read_head(path)
    encoding = detect_encoding(head)
    text = head.decode(encoding, errors="ignore")
    if not text.strip():
        raise EmptyDataError(f"{path} holds only blank space")
    delimiter = detect_delimiter(text)
    warnings: list[str] = []
    if encoding not in {"utf-8", "utf-8-sig", "ascii"}:
        warnings.append(f"file is not UTF-8: read it as {encoding}")
    if delimiter != ",":
        warnings.append(f"delimiter is {delimiter!r}, not a comma: read it with that delimiter")
    header = next(csv.reader([text.splitlines()[0]], delimiter=delimiter), [])
    names = [h.strip() for h in header]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InputFileError(f"{path} has duplicate column names ({', '.join(repeated)}); make each unique")
    frame = _read(path, encoding=encoding, delimiter=delimiter)
    if frame.shape[1] == 0:
        raise EmptyDataError(f"{path} has no columns")
    if len(frame) == 0:
        raise EmptyDataError(f"{path} has a header but no data rows")
    frame.columns = [str(c).strip() for c in frame.columns]
    return LoadedCSV(frame, path, encoding, delimiter, size, warnings)


def _read(path: Path, *, encoding: str, delimiter: str) -> pd.DataFrame:
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(encoding=encoding),
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            # Empty strings and NA, N/A, null, NaN ... are missing values, as in pandas.
            convert_options=pacsv.ConvertOptions(strings_can_be_null=True),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as first:
        # pyarrow is strict (e.g. about quoting); the C engine is more forgiving: try it once.
        return _read_with_pandas(path, encoding=encoding, delimiter=delimiter, first=first)
    # self_destruct frees each Arrow column once converted: peak memory stays near one copy.
    return table.to_pandas(strings_to_categorical=True, date_as_object=False, self_destruct=True)


def _read_with_pandas(path: Path, *, encoding: str, delimiter: str, first: Exception) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, sep=delimiter, encoding=encoding, engine="c", low_memory=False)
    except pd.errors.EmptyDataError:
        raise EmptyDataError(f"{path} has no columns to read") from None
    except (ValueError, UnicodeDecodeError, OSError):
        text = str(first).strip()
        reason = text.splitlines()[0] if text else type(first).__name__
        raise InputFileError(f"cannot parse {path} as CSV: {reason}") from None
    return frame
