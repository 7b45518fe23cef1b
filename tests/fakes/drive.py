"""A fake of Google's OAuth token endpoint (JWT bearer grant) and of Drive v3, over HTTPS on 127.0.0.1.

Real clients talk to it end to end: our source through requests, and Google's own
google-api-python-client + google-auth (tests/sources/test_google_drive_client.py). Responses follow
../shared/api-specs/google-drive-v3.discovery.json (tests validate them against its schemas):
files.list with the `q` clauses a client sends (`trashed = false`, `mimeType = / != '...'`,
`'<id>' in parents`, and/or/not, parentheses), `fields` partial responses, drives.list,
changes.getStartPageToken, changes.list, files.get, Google's JSON error bodies.

Model: corpora (shared drives, and each user's My Drive plus what is shared with them), items with a
state each. The first N items of a corpus are computed from their index on demand (folders first, a
tree of fan-out 10, then files spread over the folders: binary files with md5/sha256, Google Docs /
Sheets / Slides without, shortcuts), so a 100k-item drive costs nothing until changed. Every change
takes the next number of one global sequence; a change page token is such a number, and
changes.list returns, in sequence order, the latest change of every item changed at or after it.

Faults: inject(status, reason) answers N matching requests with Google's error (403
userRateLimitExceeded storms, 429, 5xx, with or without Retry-After); expire_page_tokens() makes
every page token handed out so far answer 400 invalid pageToken; revoke_tokens() makes access
tokens answer 401.

For benchmarks it runs in a process of its own:

    python -m tests.fakes.drive --files 100000

prints one JSON line (api_url, token_url, ca_path, key_path, drive_id, counts_url, ...) and serves
until killed.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import tempfile
import time
import uuid
from collections import OrderedDict, deque
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import parse_qs, unquote, urlsplit

from .server import Fault, FakeServer, serve_until_killed
from .tls import FakeTLS, make_tls

FOLDER = "application/vnd.google-apps.folder"
SHORTCUT = "application/vnd.google-apps.shortcut"
NATIVE = ["application/vnd.google-apps.document", "application/vnd.google-apps.spreadsheet",
          "application/vnd.google-apps.presentation"]
BINARY = [("pdf", "application/pdf"), ("docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
          ("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"), ("txt", "text/plain"),
          ("png", "image/png")]
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DRIVE_SCOPES = {"https://www.googleapis.com/auth/drive", "https://www.googleapis.com/auth/drive.readonly",
                "https://www.googleapis.com/auth/drive.metadata.readonly", "https://www.googleapis.com/auth/drive.metadata"}
EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)
STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}
DEFAULT_FIELDS = {
    "files.list": "kind,nextPageToken,incompleteSearch,files(kind,id,name,mimeType)",
    "files.get": "kind,id,name,mimeType",
    "changes.list": "kind,nextPageToken,newStartPageToken,changes(kind,changeType,time,removed,fileId,driveId,"
                    "file(kind,id,name,mimeType))",
    "drives.list": "kind,nextPageToken,drives(kind,id,name)",
    "drives.get": "kind,id,name",
    "changes.getStartPageToken": "kind,startPageToken",
}


def rfc3339(seconds: int) -> str:
    return (EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def google_error(status: int, reason: str, message: str, location: str | None = None,
                 location_type: str = "parameter", domain: str = "global") -> dict[str, Any]:
    """Google's JSON error body: integer code, message, errors[] with the reason, status."""
    detail: dict[str, Any] = {"message": message, "domain": domain, "reason": reason}
    if location:
        detail.update(location=location, locationType=location_type)
    return {"error": {"code": status, "message": message, "errors": [detail], "status": STATUS_NAMES.get(status, "UNKNOWN")}}


class ApiError(Exception):
    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


def bad_request(message: str, location: str) -> ApiError:
    return ApiError(400, google_error(400, "invalid", message, location))


# -- `fields` masks -------------------------------------------------------------------------------------
Mask = dict[str, "Mask | None"]  # None: the whole value


def parse_fields(text: str) -> Mask | None:
    """'a,b(c,d/e)' -> {'a': None, 'b': {'c': None, 'd': {'e': None}}}; '*' -> None (everything)."""
    pos = 0

    def parse_list() -> Mask:
        nonlocal pos
        mask: Mask = {}
        while pos < len(text):
            match = re.compile(r"\s*([A-Za-z0-9_*]+(?:/[A-Za-z0-9_*]+)*)\s*").match(text, pos)
            if not match:
                raise bad_request(f"Invalid field selection {text}", "fields")
            pos = match.end()
            parts = match.group(1).split("/")
            sub: Mask | None = None
            if pos < len(text) and text[pos] == "(":
                pos += 1
                sub = parse_list()
                if pos >= len(text) or text[pos] != ")":
                    raise bad_request(f"Invalid field selection {text}", "fields")
                pos += 1
            for part in reversed(parts[1:]):
                sub = {part: sub}
            if parts[0] == "*":
                return {"*": None}
            existing = mask.get(parts[0])
            mask[parts[0]] = None if existing is None and parts[0] in mask else (
                {**existing, **sub} if isinstance(existing, dict) and isinstance(sub, dict) else sub)
            if pos < len(text) and text[pos] == ",":
                pos += 1
                continue
            break
        return mask

    mask = parse_list()
    if pos != len(text.rstrip()):
        raise bad_request(f"Invalid field selection {text}", "fields")
    return None if "*" in mask else mask


def apply_fields(value: Any, mask: Mask | None) -> Any:
    if mask is None:
        return value
    if isinstance(value, list):
        return [apply_fields(v, mask) for v in value]
    if isinstance(value, dict):
        return {k: apply_fields(value[k], sub) for k, sub in mask.items() if k in value}
    return value


# -- `q` --------------------------------------------------------------------------------------------------
_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<op>!=|=|\(|\))|(?P<word>[A-Za-z]+))")


def parse_q(q: str) -> Callable[[dict[str, Any]], bool]:
    """A predicate over item states for the `q` subset clients of this connector send."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(q.rstrip()):
        match = _TOKEN.match(q, pos)
        if not match:
            raise bad_request("Invalid Value", "q")
        pos = match.end()
        kind = match.lastgroup
        value = match.group(kind)
        tokens.append((kind, value[1:-1].replace("\\'", "'") if kind == "str" else value))
    i = 0

    def peek() -> tuple[str, str] | None:
        return tokens[i] if i < len(tokens) else None

    def take() -> tuple[str, str]:
        nonlocal i
        if i >= len(tokens):
            raise bad_request("Invalid Value", "q")
        i += 1
        return tokens[i - 1]

    def expr() -> Callable[[dict[str, Any]], bool]:
        terms = [term()]
        while peek() == ("word", "or"):
            take()
            terms.append(term())
        return terms[0] if len(terms) == 1 else (lambda s: any(t(s) for t in terms))

    def term() -> Callable[[dict[str, Any]], bool]:
        factors = [factor()]
        while peek() == ("word", "and"):
            take()
            factors.append(factor())
        return factors[0] if len(factors) == 1 else (lambda s: all(f(s) for f in factors))

    def factor() -> Callable[[dict[str, Any]], bool]:
        kind, value = take()
        if (kind, value) == ("word", "not"):
            inner = factor()
            return lambda s: not inner(s)
        if (kind, value) == ("op", "("):
            inner = expr()
            if take() != ("op", ")"):
                raise bad_request("Invalid Value", "q")
            return inner
        if kind == "str":
            if take() != ("word", "in") or take() != ("word", "parents"):
                raise bad_request("Invalid Value", "q")
            return lambda s, parent=value: s["parent"] == parent
        if kind == "word" and value in ("trashed", "mimeType", "name"):
            op = take()
            kind2, operand = take()
            if op not in (("op", "="), ("op", "!=")):
                raise bad_request("Invalid Value", "q")
            if value == "trashed":
                if operand not in ("true", "false"):
                    raise bad_request("Invalid Value", "q")
                want = operand == "true"
                return (lambda s: s["trashed"] == want) if op[1] == "=" else (lambda s: s["trashed"] != want)
            if kind2 != "str":
                raise bad_request("Invalid Value", "q")
            key = "mime" if value == "mimeType" else "name"
            return (lambda s: s[key] == operand) if op[1] == "=" else (lambda s: s[key] != operand)
        raise bad_request("Invalid Value", "q")

    predicate = expr()
    if i != len(tokens):
        raise bad_request("Invalid Value", "q")
    return predicate


# -- model ------------------------------------------------------------------------------------------------
class Corpus:
    """A shared drive, or a user's My Drive (plus the files shared with that user)."""

    def __init__(self, service: "FakeDriveService", corpus_id: str, name: str, tag: str, files: int,
                 folders_every: int, owner: str | None, members: set[str]):
        self.service, self.id, self.name, self.tag = service, corpus_id, name, tag
        self.shared = owner is None  # a shared drive (items carry driveId, no owners)
        self.owner = owner
        self.members = members
        self.root_id = corpus_id if self.shared else f"0A{tag}RootFolderxxxxx"
        self.n_folders = files // folders_every if folders_every else 0
        self.generated = files + self.n_folders  # items 0..generated-1 computed from their index
        self.overrides: dict[str, dict[str, Any]] = {}  # changed, deleted and new items
        self.new_ids: list[str] = []
        self.changes: OrderedDict[str, int] = OrderedDict()  # item id -> sequence of its latest change
        self.created_seq = service.seq

    # ids
    def base_id(self, k: int) -> str:
        return f"1{self.tag}{k:09d}"

    def base_index(self, item_id: str) -> int | None:
        prefix = f"1{self.tag}"
        if item_id.startswith(prefix) and item_id[len(prefix):].isdigit():
            k = int(item_id[len(prefix):])
            return k if k < self.generated else None
        return None

    def base_state(self, k: int) -> dict[str, Any]:
        if k < self.n_folders:
            parent = self.root_id if k < 10 else self.base_id((k - 10) // 10)
            return {"id": self.base_id(k), "name": f"folder-{k}", "mime": FOLDER, "parent": parent, "trashed": False,
                    "explicit": False, "version": 1, "content": 0, "created": k, "modified": k, "deleted": False}
        j = k - self.n_folders
        slot = j % (self.n_folders + 1)
        parent = self.root_id if slot == self.n_folders else self.base_id(slot)
        state = {"id": self.base_id(k), "parent": parent, "trashed": False, "explicit": False, "version": 1,
                 "content": 1, "created": k, "modified": k, "deleted": False}
        if j % 50 == 49 and j > 0:
            state.update(name=f"shortcut-{j}", mime=SHORTCUT, target=self.base_id(k - 1))
        elif j % 10 == 9:
            mime = NATIVE[(j // 10) % len(NATIVE)]
            state.update(name=f"doc-{j}", mime=mime)
        else:
            ext, mime = BINARY[j % len(BINARY)]
            state.update(name=f"file-{j}.{ext}", mime=mime, size=(k * 7919) % 1_000_003)
        return state

    def state(self, item_id: str) -> dict[str, Any] | None:
        if item_id in self.overrides:
            return self.overrides[item_id]
        k = self.base_index(item_id)
        return None if k is None else self.base_state(k)

    def positions(self) -> int:
        return self.generated + len(self.new_ids)

    def at(self, pos: int) -> dict[str, Any]:
        if pos < self.generated:
            item_id = self.base_id(pos)
            return self.overrides.get(item_id) or self.base_state(pos)
        return self.overrides[self.new_ids[pos - self.generated]]

    def states(self) -> Iterator[dict[str, Any]]:
        for pos in range(self.positions()):
            yield self.at(pos)

    # paths (what a correct sync ends up with)
    def path(self, item_id: str) -> str | None:
        """'a/b/name' below the root; None when trashed, deleted or outside My Drive."""
        parts, current = [], item_id
        for _ in range(1000):
            if current == self.root_id:
                return "/".join(reversed(parts))
            state = self.state(current)
            if state is None or state["deleted"] or state["trashed"] or state.get("shared_with_me"):
                return None
            parts.append(state["name"])
            current = state["parent"]
        return None

    def live_files(self, under: str | None = None) -> dict[str, dict[str, Any]]:
        """id -> {path, name, mime} of every live non-folder item in the container (below `under`)."""
        root = under or self.root_id
        out = {}
        folder_paths: dict[str, str | None] = {root: ""}

        def folder_path(fid: str | None) -> str | None:
            if fid in folder_paths:
                return folder_paths[fid]
            state = self.state(fid) if fid else None
            if state is None or state["deleted"] or state["trashed"] or state.get("shared_with_me") or fid == self.root_id:
                folder_paths[fid] = None
                return None
            base = folder_path(state["parent"])
            result = None if base is None else (f"{base}/{state['name']}" if base else state["name"])
            folder_paths[fid] = result
            return result

        for state in self.states():
            if state["mime"] == FOLDER or state["deleted"] or state["trashed"] or state.get("shared_with_me"):
                continue
            base = folder_path(state["parent"])
            if base is not None:
                out[state["id"]] = {"path": f"{base}/{state['name']}" if base else state["name"], "name": state["name"],
                                    "mime": state["mime"]}
        return out

    def descendants(self, folder_id: str) -> list[str]:
        kids: dict[str, list[str]] = {}
        for s in self.states():
            if not s["deleted"]:
                kids.setdefault(s["parent"], []).append(s["id"])
        out, stack = [], [folder_id]
        while stack:
            for child in kids.get(stack.pop(), []):
                out.append(child)
                stack.append(child)
        return out

    # mutations: each item changed takes the next sequence number
    def _touch(self, state: dict[str, Any], bump: bool = True, **changes: Any) -> dict[str, Any]:
        service = self.service
        with service.lock:
            state = dict(state, **changes)
            service.seq += 1
            if bump:
                state["version"] += 1
                state["modified"] = service.seq
            self.overrides[state["id"]] = state
            self.changes.pop(state["id"], None)
            self.changes[state["id"]] = service.seq
            return state

    def _new(self, name: str, parent: str, mime: str, **extra: Any) -> str:
        with self.service.lock:
            item_id = f"1{self.tag}N{uuid.uuid4().hex[:16]}"
            self.new_ids.append(item_id)
            state = {"id": item_id, "name": name, "mime": mime, "parent": parent, "trashed": False, "explicit": False,
                     "version": 0, "content": 1 if mime != FOLDER else 0, "created": self.service.seq + 1,
                     "modified": 0, "deleted": False, **extra}
            if mime not in (FOLDER, SHORTCUT) and not mime.startswith("application/vnd.google-apps.") and "size" not in state:
                state["size"] = 1234
            self._touch(state)
            return item_id

    def add_folder(self, parent: str, name: str) -> str:
        return self._new(name, parent, FOLDER)

    def add_file(self, parent: str, name: str, mime: str = "application/pdf", **extra: Any) -> str:
        return self._new(name, parent, mime, **extra)

    def add_shortcut(self, parent: str, name: str, target: str) -> str:
        return self._new(name, parent, SHORTCUT, target=target)

    def edit(self, item_id: str) -> None:
        s = self.state(item_id)
        self._touch(s, content=s["content"] + 1, **({"size": s["size"] + 1} if "size" in s else {}))

    def rename(self, item_id: str, name: str) -> None:
        self._touch(self.state(item_id), name=name)

    def move(self, item_id: str, parent: str, name: str | None = None) -> None:
        """Move (and rename); a moved folder's descendants do not change, and Drive reports only the folder."""
        s = self.state(item_id)
        self._touch(s, parent=parent, name=name or s["name"])

    def trash(self, item_id: str, report_descendants: bool = True) -> None:
        """Trash an item; a folder's descendants become trashed too (reported as changes of their own,
        unless report_descendants is False)."""
        below = self.descendants(item_id)
        self._touch(self.state(item_id), trashed=True, explicit=True)
        for child in below:
            s = self.state(child)
            if not s["trashed"]:
                if report_descendants:
                    self._touch(s, bump=False, trashed=True)
                else:
                    self.overrides[child] = dict(s, trashed=True)

    def untrash(self, item_id: str, report_descendants: bool = True) -> None:
        below = self.descendants(item_id)
        self._touch(self.state(item_id), trashed=False, explicit=False)
        for child in below:
            s = self.state(child)
            if s["trashed"] and not s["explicit"]:
                if report_descendants:
                    self._touch(s, bump=False, trashed=False)
                else:
                    self.overrides[child] = dict(s, trashed=False)

    def delete(self, item_id: str) -> None:
        """Permanent deletion (also of everything below): reported as removed changes."""
        for child in [item_id, *self.descendants(item_id)]:
            self._touch(self.state(child), bump=False, deleted=True)

    # wire format
    def file_json(self, s: dict[str, Any]) -> dict[str, Any]:
        item_id, mime = s["id"], s["mime"]
        out: dict[str, Any] = {"kind": "drive#file", "id": item_id, "name": s["name"], "mimeType": mime,
                               "parents": [s["parent"]] if s.get("parent") else [], "trashed": s["trashed"],
                               "explicitlyTrashed": s["explicit"], "version": str(s["version"]),
                               "createdTime": rfc3339(s["created"]), "modifiedTime": rfc3339(s["modified"]),
                               "spaces": ["drive"]}
        if not out["parents"]:
            del out["parents"]
        if self.shared:
            out["driveId"] = self.id
        else:
            owner = s.get("owner") or self.owner
            out["owners"] = [{"kind": "drive#user", "displayName": owner.split("@")[0].title(), "emailAddress": owner,
                              "me": owner == self.owner, "permissionId": hashlib.md5(owner.encode()).hexdigest()[:20]}]
            out["ownedByMe"] = owner == self.owner
        if s["modified"] > s["created"]:
            modifier = self.owner or "editor@example.com"
            out["lastModifyingUser"] = {"kind": "drive#user", "displayName": modifier.split("@")[0].title(),
                                        "emailAddress": modifier, "me": False}
        if mime == FOLDER:
            out["webViewLink"] = f"https://drive.google.com/drive/folders/{item_id}"
        elif mime in NATIVE:
            kind = mime.rsplit(".", 1)[1]
            out["webViewLink"] = f"https://docs.google.com/{kind}/d/{item_id}/edit?usp=drivesdk"
        else:
            out["webViewLink"] = f"https://drive.google.com/file/d/{item_id}/view?usp=drivesdk"
        if mime == SHORTCUT:
            target = self.state(s["target"]) or {"mime": "application/octet-stream"}
            out["shortcutDetails"] = {"targetId": s["target"], "targetMimeType": target["mime"]}
        elif "size" in s:
            digest = f"{item_id}:{s['content']}".encode()
            out["size"] = str(s["size"])
            out["md5Checksum"] = hashlib.md5(digest).hexdigest()
            out["sha256Checksum"] = hashlib.sha256(digest).hexdigest()
        return out


class FakeDriveService(FakeServer):
    """Token endpoint + Drive v3 on one HTTPS port. Use as a context manager, or start()/stop()."""

    thread_name = "fake-drive"

    _shared_private: Any = None

    def __init__(self, tls: FakeTLS | None = None, subject: str = "ada@example.com", port: int = 0,
                 key_dir: str | Path | None = None):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        super().__init__(tls, port)
        self.seq = 1000
        self.min_token = 0  # change page tokens below this are invalid (expired)
        self.list_epoch = 0  # files.list page tokens of an earlier epoch are invalid
        self.subject = subject
        self.delegation = True  # domain-wide delegation granted to the service account
        self.client_email = "file-connector@fc-test-project.iam.gserviceaccount.com"
        self.private_key_id = uuid.uuid4().hex
        if FakeDriveService._shared_private is None:  # one RSA key per process: generating one takes a while
            FakeDriveService._shared_private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._private = FakeDriveService._shared_private
        self.private_key_pem = self._private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
        self.public_key = self._private.public_key()
        self.corpora: dict[str, Corpus] = {}
        self.users: dict[str, Corpus] = {}
        self.tokens: dict[str, dict[str, Any]] = {}
        self.tokens_issued = 0
        self.leak_other_drives = False  # a drive's change feed shows other drives' changes too
        self.delay_s = 0.0  # added to every files.list answer (to kill a client mid-listing)
        self.requests: deque[tuple[str, dict[str, str]]] = deque(maxlen=10000)  # (path, query) of Drive calls
        self._tags = 0
        self.key_dir = Path(key_dir or tempfile.mkdtemp(prefix="fake-drive-key-"))
        self.user_drive(self.client_email, files=0)  # the service account's own (empty) My Drive
        self.user_drive(subject, files=0)

    # -- set-up -------------------------------------------------------------------------------------
    def _tag(self) -> str:
        self._tags += 1
        return f"D{self._tags:02d}"

    def add_shared_drive(self, name: str, files: int = 0, folders_every: int = 50,
                         members: set[str] | None = None) -> Corpus:
        tag = self._tag()
        drive_id = f"0A{tag}{hashlib.sha1(name.encode()).hexdigest()[:13]}Uk9PVA"
        corpus = Corpus(self, drive_id, name, tag, files, folders_every, None,
                        members if members is not None else {self.client_email, self.subject})
        self.corpora[drive_id] = corpus
        return corpus

    def user_drive(self, email: str, files: int = 0, folders_every: int = 50) -> Corpus:
        """A user's My Drive (replaced when called again)."""
        tag = self._tag()
        corpus = Corpus(self, f"user:{email}", "My Drive", tag, files, folders_every, email, {email})
        self.corpora[corpus.id] = corpus
        self.users[email] = corpus
        return corpus

    def share_with_me(self, email: str, name: str, owner: str = "bob@partner.example", parent_hidden: bool = True) -> str:
        """A file shared with `email` that is not in their My Drive (its parent is not visible to them)."""
        corpus = self.users[email]
        return corpus.add_file(f"0Ahidden{uuid.uuid4().hex[:8]}" if parent_hidden else "", name,
                               shared_with_me=True, owner=owner)

    def key_info(self, token_uri: str | None = None) -> dict[str, Any]:
        """The service account's JSON key, as Google's console downloads it."""
        return {"type": "service_account", "project_id": "fc-test-project", "private_key_id": self.private_key_id,
                "private_key": self.private_key_pem, "client_email": self.client_email,
                "client_id": "109876543210987654321", "auth_uri": "https://accounts.google.com/o/oauth2/auth",
                "token_uri": token_uri or self.token_url,
                "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
                "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/file-connector",
                "universe_domain": "googleapis.com"}

    def key_file(self) -> str:
        path = self.key_dir / "service-account.json"
        path.write_text(json.dumps(self.key_info()))
        return str(path)

    def inject(self, status: int, reason: str | None = None, match: str = "", count: int = 1, skip: int = 0,
               retry_after: str | None = None) -> Fault:
        return self.add_fault(Fault(status, match, count, skip, retry_after, code=reason))

    def expire_page_tokens(self) -> None:
        """Every change and listing page token handed out so far becomes invalid."""
        with self.lock:
            self.min_token = self.seq + 1
            self.list_epoch += 1

    def revoke_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()

    # -- server -------------------------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        return f"{self.base_url}/drive/v3"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/token"

    # -- requests -----------------------------------------------------------------------------------
    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], Any]:
        parts = urlsplit(raw_path)
        path = unquote(parts.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        if path == "/token" and method == "POST":
            return self._token(body)
        if not path.startswith("/drive/v3/"):
            return 404, {}, google_error(404, "notFound", f"Not Found: {path}")
        self.counts["requests"] += 1
        self.requests.append((path.removeprefix("/drive/v3"), query))
        fault = self.take_fault(path)
        if fault is not None:
            return self._fault_response(fault)
        token = headers.get("authorization", "").removeprefix("Bearer ")
        grant = self.tokens.get(token)
        if grant is None:
            self.counts["401"] += 1
            return 401, {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'}, google_error(
                401, "authError", "Request had invalid authentication credentials. Expected OAuth 2 access token, "
                "login cookie or other valid authentication credential.", "Authorization", "header")
        if not grant["scopes"] & DRIVE_SCOPES:
            return 403, {}, google_error(403, "insufficientPermissions", "Request had insufficient authentication scopes.")
        try:
            with self.lock:
                return 200, {}, self._drive(method, path.removeprefix("/drive/v3"), query, grant["user"])
        except ApiError as exc:
            return exc.status, exc.headers, exc.body

    def fake_bug(self, message: str) -> Any:
        return google_error(500, "fakeBug", message)

    def content_type(self, payload: Any) -> str:
        return "application/json; charset=UTF-8"

    def _fault_response(self, fault: Fault) -> tuple[int, dict[str, str], Any]:
        reason = fault.code or {403: "userRateLimitExceeded", 429: "rateLimitExceeded", 500: "backendError",
                                  503: "backendError", 404: "notFound"}.get(fault.status, "internalError")
        message = {"userRateLimitExceeded": "User Rate Limit Exceeded", "rateLimitExceeded": "Rate Limit Exceeded",
                   "backendError": "Backend Error", "forbidden": "The user does not have sufficient permissions "
                   "for this file.", "notFound": "File not found: ."}.get(reason, "Internal Error")
        domain = "usageLimits" if "RateLimit" in reason or reason == "rateLimitExceeded" else "global"
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
        return fault.status, headers, google_error(fault.status, reason, message, domain=domain)

    def _token(self, body: bytes) -> tuple[int, dict[str, str], Any]:
        import jwt

        self.counts["token"] += 1
        form = {k: v[-1] for k, v in parse_qs(body.decode()).items()}
        if form.get("grant_type") != JWT_BEARER:
            return 400, {}, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type: "
                             + str(form.get("grant_type"))}
        assertion = form.get("assertion", "")
        try:
            header = jwt.get_unverified_header(assertion)
            # Google checks `aud` against its canonical token endpoint (google-auth always sends that one)
            claims = jwt.decode(assertion, self.public_key, algorithms=["RS256"],
                                audience=[self.token_url, "https://oauth2.googleapis.com/token"],
                                options={"require": ["iss", "aud", "iat", "exp"]})
        except jwt.InvalidSignatureError:
            return 400, {}, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        except jwt.InvalidAudienceError:
            return 400, {}, {"error": "invalid_grant", "error_description": "Invalid JWT: Failed audience check. "
                             f"The right audience is {self.token_url}"}
        except jwt.ExpiredSignatureError:
            return 400, {}, {"error": "invalid_grant", "error_description": "Invalid JWT: Token must be a short-lived "
                             "token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the "
                             "JWT claim."}
        except jwt.PyJWTError as exc:
            return 400, {}, {"error": "invalid_grant", "error_description": f"Invalid JWT: {type(exc).__name__}"}
        if header.get("alg") != "RS256" or header.get("kid") not in (None, self.private_key_id):
            return 400, {}, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        if claims["exp"] - claims["iat"] > 3600:
            return 400, {}, {"error": "invalid_grant", "error_description": "Invalid JWT: Token must be a short-lived "
                             "token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the "
                             "JWT claim."}
        if claims["iss"] != self.client_email:
            return 400, {}, {"error": "invalid_grant", "error_description": "Invalid grant: account not found"}
        scopes = set(str(claims.get("scope", "")).split())
        if not scopes:
            return 400, {}, {"error": "invalid_scope", "error_description": "Invalid OAuth scope or ID token audience "
                             "provided."}
        user = self.client_email
        if claims.get("sub"):
            if not self.delegation or claims["sub"] not in self.users:
                return 401, {}, {"error": "unauthorized_client", "error_description": "Client is unauthorized to "
                                 "retrieve access tokens using this method, or client not authorized for any of the "
                                 "scopes requested."}
            user = claims["sub"]
        with self.lock:
            self.tokens_issued += 1
            token = f"ya29.fake-{self.tokens_issued}-{uuid.uuid4().hex}{uuid.uuid4().hex}"
            self.tokens[token] = {"user": user, "scopes": scopes}
        return 200, {}, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}

    # -- Drive v3 -----------------------------------------------------------------------------------
    def _drive(self, method: str, path: str, query: dict[str, str], user: str) -> dict[str, Any]:
        if method != "GET":
            raise ApiError(405, google_error(405, "methodNotAllowed", "Method not allowed"))
        segs = path.strip("/").split("/")
        if segs == ["drives"]:
            self.counts["drives"] += 1
            return self._mask("drives.list", query, self._drives_list(query, user))
        if len(segs) == 2 and segs[0] == "drives":
            drive = self._shared_drive(segs[1], user, "driveId")
            return self._mask("drives.get", query, self._drive_json(drive))
        if segs == ["changes", "startPageToken"]:
            self.counts["startPageToken"] += 1
            if query.get("driveId"):
                self._need_all_drives(query)
                self._shared_drive(query["driveId"], user, "driveId")
            return self._mask("changes.getStartPageToken", query,
                              {"kind": "drive#startPageToken", "startPageToken": str(self.seq + 1)})
        if segs == ["changes"]:
            self.counts["changes"] += 1
            return self._mask("changes.list", query, self._changes(query, user))
        if segs == ["files"]:
            self.counts["files"] += 1
            if self.delay_s:
                self.lock.release()  # let other requests through while this one waits
                try:
                    time.sleep(self.delay_s)
                finally:
                    self.lock.acquire()
            return self._mask("files.list", query, self._files(query, user))
        if len(segs) == 2 and segs[0] == "files":
            self.counts["file"] += 1
            corpus, state = self._find(segs[1], user)
            return self._mask("files.get", query, corpus.file_json(state))
        raise ApiError(404, google_error(404, "notFound", f"Not Found: {path}"))

    def _mask(self, method: str, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        return apply_fields(body, parse_fields(query.get("fields") or DEFAULT_FIELDS[method]))

    @staticmethod
    def _need_all_drives(query: dict[str, str]) -> None:
        if query.get("supportsAllDrives") != "true":
            raise bad_request("The supportsAllDrives parameter must be true when driveId is specified.", "supportsAllDrives")

    def _visible_drives(self, user: str) -> list[Corpus]:
        return [c for c in self.corpora.values() if c.shared and user in c.members]

    def _shared_drive(self, drive_id: str, user: str, location: str) -> Corpus:
        corpus = self.corpora.get(drive_id)
        if corpus is None or not corpus.shared or user not in corpus.members:
            raise ApiError(404, google_error(404, "notFound", f"Shared drive not found: {drive_id}", location))
        return corpus

    @staticmethod
    def _drive_json(corpus: Corpus) -> dict[str, Any]:
        return {"kind": "drive#drive", "id": corpus.id, "name": corpus.name, "createdTime": rfc3339(0), "hidden": False,
                "capabilities": {"canListChildren": True, "canEdit": False}}

    def _drives_list(self, query: dict[str, str], user: str) -> dict[str, Any]:
        drives = self._visible_drives(user)
        size = int(query.get("pageSize") or 10)
        start = int(query.get("pageToken") or 0)
        out: dict[str, Any] = {"kind": "drive#driveList", "drives": [self._drive_json(d) for d in drives[start:start + size]]}
        if start + size < len(drives):
            out["nextPageToken"] = str(start + size)
        return out

    def _find(self, file_id: str, user: str) -> tuple[Corpus, dict[str, Any]]:
        mine = self.users.get(user)
        if file_id == "root" and mine is not None:
            return mine, {"id": mine.root_id, "name": "My Drive", "mime": FOLDER, "parent": None, "trashed": False,
                          "explicit": False, "version": 1, "content": 0, "created": 0, "modified": 0, "deleted": False}
        for corpus in ([mine] if mine else []) + self._visible_drives(user):
            if file_id == corpus.root_id and corpus.shared:
                return corpus, {"id": corpus.id, "name": corpus.name, "mime": FOLDER, "parent": None, "trashed": False,
                                "explicit": False, "version": 1, "content": 0, "created": 0, "modified": 0,
                                "deleted": False}
            state = corpus.state(file_id)
            if state is not None and not state["deleted"]:
                return corpus, state
        raise ApiError(404, google_error(404, "notFound", f"File not found: {file_id}.", "fileId"))

    def _list_token(self, corpus: Corpus, q: str, pos: int) -> str:
        raw = json.dumps([corpus.id, hashlib.sha1(q.encode()).hexdigest()[:8], pos, self.list_epoch])
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    def _files(self, query: dict[str, str], user: str) -> dict[str, Any]:
        corpora = query.get("corpora", "user")
        if corpora == "drive":
            if not query.get("driveId"):
                raise bad_request("The driveId parameter is required when corpora is drive.", "driveId")
            self._need_all_drives(query)
            if query.get("includeItemsFromAllDrives") != "true":
                raise bad_request("The includeItemsFromAllDrives parameter must be set to true when driveId is "
                                  "specified.", "includeItemsFromAllDrives")
            corpus = self._shared_drive(query["driveId"], user, "driveId")
        elif corpora == "user":
            corpus = self.users[user]
        else:
            raise bad_request("Invalid Value", "corpora")
        q = query.get("q", "")
        predicate = parse_q(q) if q else (lambda s: True)
        size = min(int(query.get("pageSize") or 100), 1000)
        pos = 0
        if query.get("pageToken"):
            try:
                drive, q_hash, pos, epoch = json.loads(base64.urlsafe_b64decode(query["pageToken"] + "==="))
            except (ValueError, TypeError):
                raise bad_request("Invalid Value", "pageToken") from None
            if drive != corpus.id or q_hash != hashlib.sha1(q.encode()).hexdigest()[:8] or epoch != self.list_epoch:
                raise bad_request("Invalid Value", "pageToken")
        files = []
        end = corpus.positions()
        folders_only = "mimeType = 'application/vnd.google-apps.folder'" in q and " or " not in q
        while pos < end and len(files) < size:
            if folders_only and corpus.n_folders <= pos < corpus.generated:
                pos = corpus.generated  # base items past the folders are files: skip them
                continue
            state = corpus.at(pos)
            pos += 1
            if not state["deleted"] and predicate(state):
                files.append(corpus.file_json(state))
        out: dict[str, Any] = {"kind": "drive#fileList", "incompleteSearch": False, "files": files}
        if pos < end:
            out["nextPageToken"] = self._list_token(corpus, q, pos)
        return out

    def _in_my_drive(self, corpus: Corpus, state: dict[str, Any]) -> bool:
        current: str | None = state["id"]
        for _ in range(1000):
            if current == corpus.root_id:
                return True
            s = corpus.state(current) if current else None
            if s is None or s.get("shared_with_me"):
                return False
            current = s["parent"]
        return False

    def _changes(self, query: dict[str, str], user: str) -> dict[str, Any]:
        token = query.get("pageToken")
        if not token:
            raise bad_request("Required parameter: pageToken", "pageToken")
        if not token.isdigit() or int(token) < self.min_token or int(token) > self.seq + 1:
            raise bad_request("Invalid Value", "pageToken")
        since = int(token)
        if query.get("driveId"):
            self._need_all_drives(query)
            corpora = [self._shared_drive(query["driveId"], user, "driveId")]
            if self.leak_other_drives:
                corpora += [c for c in self._visible_drives(user) if c.id != query["driveId"]]
        else:
            corpora = [self.users[user]]
            if query.get("includeItemsFromAllDrives") == "true":
                corpora += self._visible_drives(user)
        size = min(int(query.get("pageSize") or 100), 1000)
        pending = sorted((seq, item_id, corpus) for corpus in corpora for item_id, seq in corpus.changes.items()
                         if seq >= since)
        changes = []
        last = since - 1
        for seq, item_id, corpus in pending[:size]:
            state = corpus.state(item_id)
            last = seq
            if (query.get("restrictToMyDrive") == "true" and not corpus.shared and not state["deleted"]
                    and not self._in_my_drive(corpus, state)):
                continue
            change: dict[str, Any] = {"kind": "drive#change", "changeType": "file", "time": rfc3339(seq),
                                      "removed": bool(state["deleted"]), "fileId": item_id}
            if corpus.shared:
                change["driveId"] = corpus.id
            if not state["deleted"]:
                change["file"] = corpus.file_json(state)
            changes.append(change)
        out: dict[str, Any] = {"kind": "drive#changeList", "changes": changes}
        if len(pending) > size:
            out["nextPageToken"] = str(last + 1)
        else:
            out["newStartPageToken"] = str(self.seq + 1)
        return out


def main(argv: list[str] | None = None) -> None:
    """Serve one generated shared drive until killed; connection details go to stdout as one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.drive", description=main.__doc__)
    parser.add_argument("--files", type=int, default=100_000, help="files in the shared drive (folders come on top)")
    parser.add_argument("--folders-every", type=int, default=50, help="one folder per this many files")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)

    def make(tmp: str) -> tuple[FakeDriveService, Any]:
        service = FakeDriveService(tls=make_tls(tmp), port=args.port, key_dir=tmp)
        drive = service.add_shared_drive("Engineering", files=args.files, folders_every=args.folders_every)
        return service, lambda: {
            "api_url": service.api_url, "token_url": service.token_url, "ca_path": service.tls.ca_path,
            "key_path": service.key_file(), "drive_id": drive.id, "files": args.files, "folders": drive.n_folders,
            "counts_url": f"{service.base_url}/_fake/counts"}

    serve_until_killed("fake-drive-", make)


if __name__ == "__main__":
    main()
