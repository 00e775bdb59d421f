"""One error type for bad input files: every problem with its file, row, column and fix."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong in an input file.

    ``row`` is the spreadsheet row number (the header is row 1), or None for a
    file-level problem such as a missing column.
    """

    file: str
    row: int | None
    column: str | None
    message: str
    value: str | None = None

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f", row {self.row}"
        if self.column:
            where += f", column '{self.column}'"
        found = f" (found {self.value!r})" if self.value not in (None, "") else ""
        return f"{where}: {self.message}{found}"


class InputError(Exception):
    """Raised with every problem found in one or more input files, never just the first."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in the input:"
        return "\n".join([head, *(f"  - {p}" for p in self.problems)])
