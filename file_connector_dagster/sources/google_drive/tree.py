"""Paths from Drive's parent ids: the folders of a corpus (id -> parent, name), kept between syncs.

Drive items name their parent, never their path, and change events carry only the item itself, so
every folder of the corpus is kept (ChangePage.folders) and a file's path is its parent's path plus
its name. Paths are relative to the container's root (the shared drive, My Drive's root folder, or
the configured folder); a folder whose chain does not reach the root is outside the container.
"""

from __future__ import annotations

from typing import Mapping

from ...records import Folder


class DriveTree:
    """Folders by id; path() is relative to `root_id` ('' for the root, None when outside or unknown)."""

    def __init__(self, root_id: str, folders: Mapping[str, Folder]):
        self.root_id = root_id
        self.nodes: dict[str, tuple[str | None, str]] = {f.folder_id: (f.parent_id, f.name) for f in folders.values()}
        self._paths: dict[str, str | None] = {}

    def __contains__(self, folder_id: str) -> bool:
        return folder_id in self.nodes

    def path(self, folder_id: str | None) -> str | None:
        if folder_id is None:
            return None
        if folder_id == self.root_id:
            return ""
        if folder_id in self._paths:
            return self._paths[folder_id]
        parts, current, seen = [], folder_id, set()
        while current != self.root_id:
            if current is None or current not in self.nodes or current in seen:
                return None  # not cached: a folder learnt later may complete the chain
            seen.add(current)
            parent, name = self.nodes[current]
            parts.append(name)
            current = parent
        result = "/".join(reversed(parts))
        self._paths[folder_id] = result
        return result

    def complete(self, folder_id: str | None) -> bool:
        """Whether the chain up from folder_id is known to its end (the root, or a folder with no parent)."""
        current, seen = folder_id, set()
        while current is not None and current != self.root_id:
            if current not in self.nodes or current in seen:
                return current in seen  # a cycle is as known as it will get
            seen.add(current)
            current = self.nodes[current][0]
        return True

    def set(self, folder_id: str, parent_id: str | None, name: str) -> bool:
        """Add or change a folder. Returns whether anything changed."""
        if self.nodes.get(folder_id) == (parent_id, name):
            return False
        if folder_id in self.nodes:
            self._paths.clear()  # every path below it may change
        self.nodes[folder_id] = (parent_id, name)
        return True

    def subtree(self, folder_id: str) -> list[str]:
        """folder_id and every folder below it."""
        children: dict[str | None, list[str]] = {}
        for fid, (parent, _) in self.nodes.items():
            children.setdefault(parent, []).append(fid)
        found, stack = [], [folder_id]
        while stack:
            fid = stack.pop()
            found.append(fid)
            stack.extend(children.get(fid, []))
        return found

    def remove(self, folder_id: str) -> list[str]:
        """Drop a folder and everything below it. Returns the ids removed."""
        if folder_id not in self.nodes:
            return []
        removed = self.subtree(folder_id)
        for fid in removed:
            self.nodes.pop(fid, None)
        self._paths.clear()
        return removed
