"""Uploaded workbooks and zips of CSV tables, checked before the spreadsheet reader sees them.

One streaming pass bounds the work the reader can be made to do: few archive entries, no
unsafe paths, bounded expansion; at most ``MAX_ROWS`` rows and ``MAX_COLUMNS`` columns per
table and ``MAX_CELL_CHARS`` per cell; workbook XML parsed with ``defusedxml`` (no DTDs, no
entity expansion, no external entities), and malformed XML is a 422 naming the part.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse
from fastapi import HTTPException

from rackplan.catalogs.errors import InputError, Problem

MAX_ZIP_ENTRIES = 50
MAX_ZIP_RATIO = 100
MAX_ROWS = 20_001
"""Rows per table, header included (the demand table of 400 periods × 50 classes)."""
MAX_COLUMNS = 64
MAX_CELL_CHARS = 2_000
MAX_FILENAME_CHARS = 100
"""Longer upload file names are cut in messages (and never used as a path)."""
CELL_REF = re.compile(r"^([A-Z]{1,3})(\d+)$")


def shown_name(filename: str | None) -> str:
    """The upload's base name, cut to ``MAX_FILENAME_CHARS`` for messages."""
    name = PurePosixPath((filename or "upload").replace("\\", "/")).name or "upload"
    return name if len(name) <= MAX_FILENAME_CHARS else name[: MAX_FILENAME_CHARS - 1] + "…"


def _refuse(label: str, message: str, value: str | None = None, row: int | None = None):
    raise InputError([Problem(label, row, None, message, value)])


def checked_archive(data: bytes, limit: int, label: str) -> zipfile.ZipFile:
    """Open a zip (a .zip upload, or an .xlsx, which is one) after checking it is safe:
    few entries, no absolute or parent paths, bounded expanded size and compression ratio."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise InputError([Problem(label, None, None, "not a valid zip archive")]) from exc
    entries = [e for e in archive.infolist() if not e.is_dir()]
    if len(entries) > MAX_ZIP_ENTRIES:
        _refuse(label, f"more than {MAX_ZIP_ENTRIES} files in the archive")
    total = 0
    for entry in entries:
        path = PurePosixPath(entry.filename)
        if path.is_absolute() or ".." in path.parts or "\\" in entry.filename:
            _refuse(label, "unsafe path in the archive", entry.filename[:200])
        total += entry.file_size
        ratio = entry.file_size / entry.compress_size if entry.compress_size else 0
        if total > limit or ratio > MAX_ZIP_RATIO:
            raise HTTPException(413, f"{label} expands beyond the upload limit")
    return archive


def _read(archive: zipfile.ZipFile, entry: zipfile.ZipInfo, label: str) -> bytes:
    try:
        return archive.read(entry)
    except (zipfile.BadZipFile, RuntimeError, NotImplementedError, zlib.error, EOFError) as exc:
        raise InputError(
            [Problem(label, None, None, f"cannot read {entry.filename}: {exc}")]
        ) from exc


def check_csv(data: bytes, file: str) -> None:
    """Bounded rows, columns and cells in one CSV table (before the reader parses it)."""
    text = data.decode("utf-8-sig", errors="replace")
    delimiter = ";" if text[:4096].count(";") > text[:4096].count(",") else ","
    for number, row in enumerate(csv.reader(io.StringIO(text), delimiter=delimiter), start=1):
        if number > MAX_ROWS:
            _refuse(file, f"more than {MAX_ROWS - 1} rows; split the scenario", row=number)
        if len(row) > MAX_COLUMNS:
            _refuse(
                file,
                f"{len(row)} columns; a table has at most {MAX_COLUMNS} (see scenario-files.md)",
                row=number,
            )
        for cell in row:
            if len(cell) > MAX_CELL_CHARS:
                _refuse(file, f"a cell of {len(cell)} characters (at most {MAX_CELL_CHARS})")


def extract_csv(archive: zipfile.ZipFile, folder: Path, label: str) -> None:
    """Check and write the archive's CSV files into ``folder``; a damaged entry or two files
    with the same name are refused (names are flattened)."""
    seen: dict[str, str] = {}
    for entry in archive.infolist():
        name = PurePosixPath(entry.filename).name
        if entry.is_dir() or not name.lower().endswith(".csv"):
            continue
        if name in seen:
            _refuse(label, f"two files named {name} ({seen[name]}, {entry.filename})")
        seen[name] = entry.filename
        data = _read(archive, entry, label)
        check_csv(data, name)
        (folder / name).write_bytes(data)


def _column_index(letters: str) -> int:
    index = 0
    for letter in letters:
        index = index * 26 + (ord(letter) - 64)
    return index


def _check_cell_ref(ref: str, part: str) -> None:
    match = CELL_REF.match(ref)
    if match is None:
        return
    column, row = _column_index(match.group(1)), int(match.group(2))
    if column > MAX_COLUMNS:
        _refuse(part, f"cell {ref} is beyond column {MAX_COLUMNS}; delete the far columns", ref)
    if row > MAX_ROWS:
        _refuse(part, f"cell {ref} is beyond row {MAX_ROWS}; split the scenario", ref)


def _check_xml_part(data: bytes, part: str) -> None:
    """Parse one XML part with defusedxml (no DTD or entities); bound sheets' cells."""
    is_sheet = part.startswith("xl/worksheets/")
    try:
        for _event, element in iterparse(io.BytesIO(data), forbid_dtd=True):
            tag = element.tag.rpartition("}")[2]
            if is_sheet and tag == "c":
                _check_cell_ref(element.get("r", ""), part)
            elif is_sheet and tag == "dimension":
                for ref in element.get("ref", "").split(":"):
                    _check_cell_ref(ref.replace("$", ""), part)
            elif tag in {"v", "t"} and element.text and len(element.text) > MAX_CELL_CHARS:
                _refuse(
                    part, f"a cell of {len(element.text)} characters (at most {MAX_CELL_CHARS})"
                )
            element.clear()
    except DefusedXmlException as exc:
        _refuse(part, f"XML with a DTD or entities is refused ({type(exc).__name__})")
    except SyntaxError as exc:  # xml.etree.ElementTree.ParseError
        _refuse(part, f"malformed XML: {exc}")


def check_workbook(archive: zipfile.ZipFile, label: str) -> None:
    """Every XML part of an .xlsx parsed safely, and its sheets within the table limits."""
    for entry in archive.infolist():
        if entry.is_dir() or not entry.filename.lower().endswith((".xml", ".rels")):
            continue
        _check_xml_part(_read(archive, entry, label), entry.filename)
