"""A project's tree as the source keeps it between syncs (in the store's `folders` table).

Every node is a store Folder: folders carry their lastModifiedTimeRollup as `version` ('' when unknown,
so the next sync lists them again); items are kept too, with `version` None, so that a folder listed
again can tell which of its items are gone. Top folders have parent None. Paths are names joined by
'/', from the top folder down, e.g. 'Project Files/Structural/S-101.pdf'.
"""

from __future__ import annotations

from typing import Mapping

from ...records import Folder


class ProjectTree:
    def __init__(self, nodes: Mapping[str, Folder]):
        self.nodes: dict[str, Folder] = dict(nodes)
        self.children: dict[str | None, set[str]] = {}
        for node in self.nodes.values():
            self.children.setdefault(node.parent_id, set()).add(node.folder_id)
        self._paths: dict[str, str] = {}

    def __contains__(self, node_id: str) -> bool:
        return node_id in self.nodes

    def get(self, node_id: str) -> Folder | None:
        return self.nodes.get(node_id)

    def is_folder(self, node_id: str) -> bool:
        node = self.nodes.get(node_id)
        return node is not None and node.version is not None

    def path(self, folder_id: str | None) -> str:
        """The folder's path ('' for the project root, None parent); an unknown ancestor ends the chain."""
        if folder_id is None or folder_id not in self.nodes:
            return ""
        cached = self._paths.get(folder_id)
        if cached is not None:
            return cached
        parts, current, seen = [], self.nodes.get(folder_id), set()
        while current is not None and current.folder_id not in seen:
            seen.add(current.folder_id)
            parts.append(current.name)
            current = self.nodes.get(current.parent_id) if current.parent_id else None
        result = "/".join(reversed(parts))
        self._paths[folder_id] = result
        return result

    def set(self, node: Folder) -> bool:
        """Add or change a node. Returns whether anything changed."""
        old = self.nodes.get(node.folder_id)
        if old == node:
            return False
        if old is not None:
            if (old.parent_id, old.name) != (node.parent_id, node.name) and old.version is not None:
                self._paths.clear()  # a folder moved or renamed: every path below it changes
            if old.parent_id != node.parent_id:
                self.children.get(old.parent_id, set()).discard(node.folder_id)
        self.nodes[node.folder_id] = node
        self.children.setdefault(node.parent_id, set()).add(node.folder_id)
        return True

    def subtree(self, node_id: str) -> list[str]:
        """The node and everything below it."""
        out, stack = [], [node_id]
        while stack:
            current = stack.pop()
            if current in self.nodes:
                out.append(current)
                stack.extend(self.children.get(current, ()))
        return out

    def remove(self, node_id: str) -> list[str]:
        """Drop a node and everything below it. Returns the ids removed."""
        removed = self.subtree(node_id)
        for current in removed:
            node = self.nodes.pop(current)
            self.children.get(node.parent_id, set()).discard(current)
            self.children.pop(current, None)
        if any(self._paths.pop(current, None) is not None for current in removed):
            self._paths.clear()
        return removed

    def ancestors(self, folder_id: str) -> list[str]:
        """The folder and the folders above it, bottom up."""
        out, current = [], self.nodes.get(folder_id)
        while current is not None and current.folder_id not in out:
            out.append(current.folder_id)
            current = self.nodes.get(current.parent_id) if current.parent_id else None
        return out

    def folders_under_path(self, path: str, excluding: set[str]) -> list[str]:
        """Folders (not in `excluding`) whose path is `path` or below it."""
        prefix = path + "/"
        return [fid for fid, node in self.nodes.items() if node.version is not None and fid not in excluding
                and (self.path(fid) == path or self.path(fid).startswith(prefix))]
