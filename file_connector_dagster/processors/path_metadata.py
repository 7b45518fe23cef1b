"""`path_metadata`: a regular expression with named groups over each file's path or name; the groups
become metadata (e.g. ISO 19650 names `Project-Originator-Volume-Level-Type-Role-Number`). A file
that does not match is recorded as such ({"matched": false}), not failed."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import field_validator

from ..records import FileRecord
from .base import Processor, ProcessorContext, ProcessorOptions, ProcessResult, register_processor

# ISO 19650-2 file names: Project-Originator-Volume/System-Level/Location-Type-Role-Number (then the extension)
ISO_19650 = (r"^(?P<project>[A-Za-z0-9]{2,6})-(?P<originator>[A-Za-z0-9]{3,6})-(?P<volume>[A-Za-z0-9]{1,2})-"
             r"(?P<level>[A-Za-z0-9]{2})-(?P<type>[A-Za-z]{2})-(?P<role>[A-Za-z]{1,2})-(?P<number>\d{4,6})"
             r"(?:\.[^.]+)?$")


class PathMetadataOptions(ProcessorOptions):
    pattern: str = ISO_19650  # a Python regular expression with named groups
    match: Literal["name", "path"] = "name"  # the file name, or the whole path inside the container
    ignore_case: bool = False

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str) -> str:
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        if not compiled.groupindex:
            raise ValueError("the regular expression has no named groups, like (?P<project>[A-Z]+)")
        return value


class PathMetadata(Processor):
    """Stores the named groups of a regular expression over the path or name as metadata."""

    type_name = "path_metadata"
    Options = PathMetadataOptions
    needs_io = False

    def __init__(self, options: PathMetadataOptions, name: str | None = None):
        super().__init__(options, name)
        self.regex = re.compile(options.pattern, re.IGNORECASE if options.ignore_case else 0)

    def process(self, batch: list[FileRecord], context: ProcessorContext) -> list[ProcessResult]:
        results = []
        for record in batch:
            found = self.regex.search(record.title if self.options.match == "name" else record.path)
            if found is None:
                results.append(ProcessResult.processed({"matched": False}))
            else:
                results.append(ProcessResult.processed({"matched": True, **found.groupdict()}))
        return results


register_processor(PathMetadata.type_name, PathMetadata)
