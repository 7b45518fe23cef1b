"""Built-in processors: include/exclude globs and a size limit."""

from __future__ import annotations

from fnmatch import fnmatchcase

from pydantic import Field

from ..records import FileRecord
from .base import Processor, ProcessorOptions, register_processor


def glob_match(path: str, pattern: str) -> bool:
    """fnmatch on the "/"-separated path; a pattern without "/" also matches the file name alone, and
    "**/" matches any number of folders (including none)."""
    if "/" not in pattern:
        return fnmatchcase(path.rsplit("/", 1)[-1], pattern) or fnmatchcase(path, pattern)
    if fnmatchcase(path, pattern):
        return True
    return pattern.startswith("**/") and glob_match(path, pattern[3:])


class GlobOptions(ProcessorOptions):
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)


class GlobFilter(Processor):
    """Keeps files whose path matches an include glob (all when none) and no exclude glob."""

    type_name = "glob_filter"
    Options = GlobOptions

    def process(self, records: list[FileRecord]) -> list[FileRecord]:
        opts: GlobOptions = self.options
        for r in records:
            if opts.include and not any(glob_match(r.path, p) for p in opts.include):
                r.excluded_by = self.type_name
            elif any(glob_match(r.path, p) for p in opts.exclude):
                r.excluded_by = self.type_name
        return records


class SizeOptions(ProcessorOptions):
    max_bytes: int = Field(gt=0)
    min_bytes: int = Field(default=0, ge=0)


class SizeLimit(Processor):
    """Excludes files larger than max_bytes (or smaller than min_bytes)."""

    type_name = "size_limit"
    Options = SizeOptions

    def process(self, records: list[FileRecord]) -> list[FileRecord]:
        opts: SizeOptions = self.options
        for r in records:
            if r.size is not None and not (opts.min_bytes <= r.size <= opts.max_bytes):
                r.excluded_by = self.type_name
        return records


register_processor(GlobFilter.type_name, GlobFilter)
register_processor(SizeLimit.type_name, SizeLimit)
