"""Built-in filters: they decide from the record alone (needs_io = False), so an endpoint whose
processors are all filters has them applied while its listing pages commit.

- glob_filter: include / exclude globs on the path.
- size_limit: min / max size in bytes.
- filter: any of globs, extensions, mime types, size, modified after / before, path depth.

Other built-ins (content_hash, dedupe, path_metadata, virustotal) live in their own modules.
"""

from __future__ import annotations

from datetime import datetime, timezone
from fnmatch import fnmatchcase

from pydantic import Field, field_validator

from ..records import FileRecord
from .base import Processor, ProcessorContext, ProcessorOptions, ProcessResult, register_processor


def glob_match(path: str, pattern: str) -> bool:
    """fnmatch on the "/"-separated path; a pattern without "/" also matches the file name alone, and
    "**/" matches any number of folders (including none)."""
    if "/" not in pattern:
        return fnmatchcase(path.rsplit("/", 1)[-1], pattern) or fnmatchcase(path, pattern)
    if fnmatchcase(path, pattern):
        return True
    return pattern.startswith("**/") and glob_match(path, pattern[3:])


class FilterOptions(ProcessorOptions):
    include: list[str] = Field(default_factory=list)  # globs; when set, only matching paths are kept
    exclude: list[str] = Field(default_factory=list)
    extensions: list[str] = Field(default_factory=list)  # e.g. [pdf, docx]; when set, only these are kept
    exclude_extensions: list[str] = Field(default_factory=list)
    mime_types: list[str] = Field(default_factory=list)  # e.g. [application/pdf, "image/*"]
    min_bytes: int = Field(default=0, ge=0)
    max_bytes: int | None = Field(default=None, gt=0)
    modified_after: datetime | None = None
    modified_before: datetime | None = None
    max_depth: int | None = Field(default=None, ge=0)  # folders above the file: 0 = top level only

    @field_validator("extensions", "exclude_extensions")
    @classmethod
    def _extensions(cls, value: list[str]) -> list[str]:
        return [e.lower().lstrip(".") for e in value]

    @field_validator("modified_after", "modified_before")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return value.replace(tzinfo=timezone.utc) if value is not None and value.tzinfo is None else value


def filter_reason(options: FilterOptions, record: FileRecord) -> str | None:
    """Why the record is filtered out, or None to keep it."""
    o = options
    if o.include and not any(glob_match(record.path, p) for p in o.include):
        return "path matches no include glob"
    for pattern in o.exclude:
        if glob_match(record.path, pattern):
            return f"path matches exclude glob {pattern!r}"
    extension = record.title.rsplit(".", 1)[-1].lower() if "." in record.title else ""
    if o.extensions and extension not in o.extensions:
        return f"extension {extension or '(none)'!r} not in {o.extensions}"
    if extension and extension in o.exclude_extensions:
        return f"extension {extension!r} is excluded"
    if o.mime_types and not any(fnmatchcase(record.mime_type or "", m) for m in o.mime_types):
        return f"mime type {record.mime_type or '(unknown)'!r} not in {o.mime_types}"
    if record.size is not None and record.size < o.min_bytes:
        return f"smaller than {o.min_bytes} bytes"
    if record.size is not None and o.max_bytes is not None and record.size > o.max_bytes:
        return f"larger than {o.max_bytes} bytes"
    modified = record.date_updated
    if modified is not None and modified.tzinfo is None:
        modified = modified.replace(tzinfo=timezone.utc)
    if o.modified_after and (modified is None or modified <= o.modified_after):
        return f"not modified after {o.modified_after.isoformat()}"
    if o.modified_before and (modified is None or modified >= o.modified_before):
        return f"not modified before {o.modified_before.isoformat()}"
    if o.max_depth is not None and record.path.count("/") > o.max_depth:
        return f"deeper than {o.max_depth} folders"
    return None


class Filter(Processor):
    """Skips files by path, extension, mime type, size, modification time or depth."""

    type_name = "filter"
    Options = FilterOptions
    needs_io = False

    def process(self, batch: list[FileRecord], context: ProcessorContext) -> list[ProcessResult]:
        results = []
        for record in batch:
            reason = filter_reason(self.options, record)  # type: ignore[arg-type]
            results.append(ProcessResult.skipped(reason) if reason else ProcessResult.processed())
        return results


class GlobOptions(ProcessorOptions):
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)


class GlobFilter(Filter):
    """Keeps files whose path matches an include glob (all when none) and no exclude glob."""

    type_name = "glob_filter"
    Options = GlobOptions

    def __init__(self, options: GlobOptions, name: str | None = None):
        super().__init__(FilterOptions(include=options.include, exclude=options.exclude,
                                       max_attempts=options.max_attempts), name)


class SizeOptions(ProcessorOptions):
    max_bytes: int = Field(gt=0)
    min_bytes: int = Field(default=0, ge=0)


class SizeLimit(Filter):
    """Skips files larger than max_bytes (or smaller than min_bytes)."""

    type_name = "size_limit"
    Options = SizeOptions

    def __init__(self, options: SizeOptions, name: str | None = None):
        super().__init__(FilterOptions(max_bytes=options.max_bytes, min_bytes=options.min_bytes,
                                       max_attempts=options.max_attempts), name)


for _cls in (Filter, GlobFilter, SizeLimit):
    register_processor(_cls.type_name, _cls)
