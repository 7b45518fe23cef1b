"""connector.yaml: pydantic models, the loader, and environment references for secrets.

Secrets are never written inline: a field typed `Secret` takes `${NAME}` or `{env: NAME}` and is
resolved from the environment only when a sync runs. Any string may also embed `${NAME}` parts
(`EnvString`, for DSNs and URIs), resolved the same way.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import core_schema

from .errors import ConfigError, scrub

DEFAULT_CONFIG = "connector.yaml"
EXAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "examples" / "connector.yaml"
_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SLUG = r"^[a-z0-9][a-z0-9_\-]{0,62}$"


_RESOLVED: set[str] = set()  # values read from the environment, masked wherever we print


def redact(text: str) -> str:
    """Mask every value this process resolved from an environment reference (also percent-encoded)."""
    return scrub(text, *_RESOLVED)


class _EnvBase:
    """A value that names environment variables; prints as the reference, never the value."""

    def __init__(self, template: str):
        self.template = template

    def env_names(self) -> list[str]:
        return _REF.findall(self.template)

    def resolve(self, where: str = "") -> str:
        missing = [n for n in self.env_names() if n not in os.environ]
        if missing:
            raise ConfigError(f"{where}environment variable {missing[0]} is not set")
        for name in self.env_names():
            _RESOLVED.add(os.environ[name])
        return _REF.sub(lambda m: os.environ[m.group(1)], self.template)

    def __repr__(self) -> str:
        return self.template

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _EnvBase) and other.template == self.template

    def __hash__(self) -> int:
        return hash(self.template)

    @classmethod
    def _coerce(cls, value: Any) -> "_EnvBase":
        if isinstance(value, cls):
            return value
        if isinstance(value, dict) and set(value) == {"env"} and isinstance(value["env"], str):
            value = "${" + value["env"] + "}"
        if not isinstance(value, str):
            raise ValueError("expected a string or {env: NAME}")
        return cls._check(value)

    @classmethod
    def _check(cls, template: str) -> "_EnvBase":
        return cls(template)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._coerce, serialization=core_schema.plain_serializer_function_ser_schema(lambda v: v.template))


class EnvString(_EnvBase):
    """A string that may embed ${NAME} environment references (e.g. a DSN with a password)."""


_URI = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<rest>.*)$", re.S)
_KV_PASSWORD = re.compile(r"(?:^|\s)password\s*=\s*(?P<value>'(?:[^'\\]|\\.)*'|\S*)")


def _split_userinfo(rest: str) -> tuple[str, str | None, str]:
    """'user:pw@host/db' -> ('user', 'pw', 'host/db'); the password may hold '/', '@', '%' or spaces
    (a ${NAME} reference still unresolved never does), so the userinfo ends at the LAST '@' before the
    query."""
    head = rest.split("?", 1)[0]
    if "@" not in head:
        return "", None, rest
    at = head.rindex("@")
    userinfo, hosts = rest[:at], rest[at + 1:]
    user, sep, password = userinfo.partition(":")
    return user, (password if sep else None), hosts


def split_uri_password(uri: str) -> tuple[str, str | None]:
    """'scheme://user:pw@host/db' -> ('scheme://user@host/db', 'pw' percent-decoded); other strings as
    they are, with None. Lets a store hand the password to its driver apart from the connection string."""
    from urllib.parse import unquote

    match = _URI.match(uri)
    if not match:
        return uri, None
    user, password, hosts = _split_userinfo(match.group("rest"))
    if password is None:
        return uri, None
    return match.group("scheme") + (f"{user}@" if user else "") + hosts, unquote(password)


class ConnectionString(EnvString):
    """A store DSN / URI. Its password, if any, must be an environment reference: it is resolved apart
    and handed to the driver as a separate argument, so it never has to be percent-encoded, and it
    never appears in a connection string an error message could quote."""

    @classmethod
    def _check(cls, template: str) -> "ConnectionString":
        password = cls._password_template(template)
        if password is not None and password and not re.fullmatch(_REF, password):
            raise ValueError("the password must be an environment reference such as ${PGPASSWORD}, "
                             "not an inline value (it was not printed)")
        if re.search(r"[?&]password=", template, re.I):
            raise ValueError("put the password in the user:${NAME}@ part, not in the query")
        return cls(template)

    @staticmethod
    def _password_template(template: str) -> str | None:
        uri = _URI.match(template)
        if uri:
            return _split_userinfo(uri.group("rest"))[1]
        kv = _KV_PASSWORD.search(template)
        if kv:
            value = kv.group("value")
            return value[1:-1] if value.startswith("'") else value
        return None

    def resolve_parts(self, where: str = "") -> tuple[str, str | None]:
        """(connection string without the password, the password or None), resolved now."""
        password_template = self._password_template(self.template)
        uri = _URI.match(self.template)
        if uri:
            user, _, hosts = _split_userinfo(uri.group("rest"))
            base = uri.group("scheme") + (f"{user}@" if user else "") + hosts
        elif password_template is not None:
            base = _KV_PASSWORD.sub("", self.template).strip()
        else:
            base = self.template
        dsn = EnvString(base).resolve(where)
        password = EnvString(password_template).resolve(where) if password_template else None
        return dsn, password


class Secret(_EnvBase):
    """A credential: must be exactly one environment reference, never an inline value."""

    @classmethod
    def _check(cls, template: str) -> "Secret":
        if not re.fullmatch(_REF, template):
            raise ValueError("secrets must be environment references such as ${NAME} or {env: NAME}, not inline values")
        return cls(template)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SQLiteStoreConfig(_Strict):
    type: Literal["sqlite"] = "sqlite"
    path: str = ".file_connector/inventory.db"  # relative to the config file's folder
    # how long a write waits for another process's write lock before the sync fails (in one line)
    busy_timeout_s: float = Field(default=60.0, gt=0, le=3600)


class PostgresStoreConfig(_Strict):
    type: Literal["postgres"]
    dsn: ConnectionString  # e.g. postgresql://user:${PGPASSWORD}@host:5432/db (password: a reference)


class MongoStoreConfig(_Strict):
    type: Literal["mongo"]
    uri: ConnectionString  # e.g. mongodb://user:${MONGO_PASSWORD}@host:27017/ (password: a reference)
    database: str = "file_connector"


StoreConfig = Annotated[Union[SQLiteStoreConfig, PostgresStoreConfig, MongoStoreConfig], Field(discriminator="type")]


class DeleteGuardConfig(_Strict):
    """The mass-deletion guard (stores/protocol.py DeleteGuard): a sync that would tombstone more than
    max_share of a container's live files, or more than max_count files, fails and tombstones nothing."""

    max_share: float = Field(default=0.5, ge=0.0, le=1.0)
    max_count: int | None = Field(default=None, ge=0)
    allow_mass_delete: bool = False  # the override; --allow-mass-delete / run config do it for one run

    def guard(self, allow: bool = False) -> Any:
        from .stores.protocol import DeleteGuard

        return DeleteGuard(self.max_share, self.max_count, allow or self.allow_mass_delete)


class DiscoveryConfig(_Strict):
    """How the discovery sensor treats a known container that is missing at the source: reported on
    every tick, then, once it has been missing for `vanished_grace_hours`, its files are tombstoned and
    its partition removed (long enough to ride out a permissions glitch or a provider outage)."""

    vanished_grace_hours: float = Field(default=24.0, ge=0, le=24 * 365)


class ProcessorConfig(BaseModel):
    """One processor of an endpoint: its type, an optional name (the key of its results under
    metadata.processors; default the type) and its options (validated by the processor's Options)."""

    model_config = ConfigDict(extra="allow")
    type: str
    name: str | None = Field(default=None, pattern=_SLUG)


class PluginEntry(BaseModel):
    """One plugin under `plugins:`; its own options (validated by the plugin's Options) sit beside these."""

    model_config = ConfigDict(extra="allow")
    type: str
    name: str | None = None
    endpoints: list[str] | None = None  # only events of these endpoints (default: all)
    on: list[Literal["success", "failure", "container_added"]] = ["success", "failure", "container_added"]

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, value: Any) -> Any:
        # YAML 1.1 (PyYAML) reads a bare `on:` key as the boolean True
        if isinstance(value, dict) and True in value:
            value = {("on" if k is True else k): v for k, v in value.items()}
        return value


class PluginsConfig(_Strict):
    """`plugins:` either a list of plugin entries, or {directories: [...], use: [...]}."""

    directories: list[str] = Field(default_factory=list)  # searched for plugin classes; never the cwd
    use: list[PluginEntry] = Field(default_factory=list)
    ui_url: str | None = None  # the Dagster UI's address, for run links in notifications

    @model_validator(mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        return {"use": value} if isinstance(value, list) else value


class ChecksConfig(_Strict):
    """Thresholds of the endpoint's asset checks."""

    max_age: Any = None  # a duration ("6h", "2d", seconds); default: twice the schedule's interval, else 2 days
    max_error_rate: float = Field(default=0.01, ge=0, le=1)  # share of files a sync could not list (or process)

    @field_validator("max_age")
    @classmethod
    def _age(cls, value: Any) -> Any:
        from .checks import parse_duration

        return None if value is None else parse_duration(value)


class EndpointConfig(_Strict):
    name: str
    type: str
    endpoint_details: Any = Field(default_factory=dict)
    project_id: str | None = None
    user_id: str | None = None
    is_active: bool = True
    # one schedule or a list; a string is a cron expression in UTC, a mapping without `type` a cron one
    schedule: list[Any] = Field(default_factory=list)  # ScheduleOptions once validated
    processors: list[ProcessorConfig] = Field(default_factory=list)
    checks: ChecksConfig = Field(default_factory=ChecksConfig)
    delete_guard: DeleteGuardConfig = Field(default_factory=DeleteGuardConfig)  # default: the top-level one
    discovery: DiscoveryConfig = Field(default_factory=DiscoveryConfig)  # default: the top-level one

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.fullmatch(_SLUG, value):
            raise ValueError(f"{value!r} is not a slug: use lowercase letters, digits, '-' and '_' "
                             "(at most 63, starting with a letter or digit)")
        return value

    @field_validator("schedule", mode="before")
    @classmethod
    def _schedule(cls, value: Any) -> Any:
        return _schedule_list(value)

    @model_validator(mode="after")
    def _details(self) -> "EndpointConfig":
        details, schedules, problems = _nested(self.type, self.endpoint_details, self.processors, self.schedule)
        if problems:
            raise ValueError(problems[0])
        self.endpoint_details, self.schedule = details, schedules
        return self

    @property
    def schedules(self) -> list[Any]:
        """The endpoint's validated schedules (ScheduleOptions), in config order."""
        return self.schedule

    def schedule_suffixes(self) -> list[str]:
        """What tells the endpoint's schedules apart in their Dagster names."""
        return _schedule_suffixes(self.schedule)

    def secret_free_details(self) -> dict[str, Any]:
        """endpoint_details as JSON; Secret fields serialize as their ${NAME} reference."""
        return self.endpoint_details.model_dump(mode="json")


def _schedule_list(value: Any) -> Any:
    """`schedule:` as a list of mappings: a string is a cron expression, a mapping without `type` a cron one."""
    if value is None:
        return []
    items = []
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, str):
            item = {"type": "cron", "cron": item}
        elif isinstance(item, dict) and "type" not in item:
            item = {"type": "cron", **item}
        items.append(item)
    return items


def _schedule_suffixes(schedules: list[Any]) -> list[str]:
    """`name:`, else "schedule" for the only one, "schedule_<n>" (from 1) in a list."""
    names = [options.get("name") if isinstance(options, dict) else getattr(options, "name", None)
             for options in schedules]
    return [str(name) if name else ("schedule" if len(schedules) == 1 else f"schedule_{i + 1}")
            for i, name in enumerate(names)]


def _nested(type_name: Any, details: Any, processors: list[Any],
            schedules: Any = None) -> tuple[Any, list[Any], list[str]]:
    """Validate an endpoint's source-specific details, processor options and schedules by their own models.

    Returns the validated details, the validated schedules (ScheduleOptions) and every problem found,
    each as "field: message".
    """
    from .processors.base import processor_class, processor_options
    from .sources.base import source_class

    problems: list[str] = []

    def check(where: str, validate: Any) -> Any:
        try:
            return validate()
        except ValidationError as exc:
            problems.extend(line[:500] for line in _merge([(_field_path([where, *error["loc"]]), _message(error))
                                                          for error in exc.errors()]))
        except ConfigError as exc:
            problems.append(f"{where}: {exc}")
        return None

    from .sources.base import source_types

    if not isinstance(type_name, str) or type_name not in source_types():  # the file's word is "type"; the registry says "source type"
        problems.append(f"type: unknown type {str(type_name)[:80]!r}; known types: {', '.join(sorted(source_types()))}")
        cls = None
    else:
        cls = check("type", lambda: source_class(str(type_name)))
    if cls is not None and not isinstance(details, cls.Details):
        details = check("endpoint_details", lambda: cls.Details.model_validate(details or {}))
    names: set[Any] = set()
    for i, proc in enumerate(processors if isinstance(processors, list) else []):  # else the model reports it
        if isinstance(proc, BaseModel):
            proc = {"type": proc.type, "name": getattr(proc, "name", None), **(proc.model_extra or {})}
        if not isinstance(proc, dict) or not isinstance(proc.get("type"), str):
            continue  # the ProcessorConfig model reports it
        if check(f"processors[{i}].type", lambda: processor_class(str(proc["type"]))) is not None:
            try:
                processor_options(str(proc["type"]), {k: v for k, v in proc.items() if k not in ("type", "name")})
            except ConfigError as exc:  # "<type>: <field>: <problem>"
                problems.append(f"processors[{i}] {exc}")
        name = proc.get("name") or proc["type"]
        if name in names:
            problems.append(f"processors[{i}] {proc['type']}: two processors are named {name!r}; "
                            "give one a different `name`")
        names.add(name)
    validated = _validate_schedules(_schedule_list(schedules), cls, check, problems)
    return details, validated, problems


def _validate_schedules(schedules: Any, source_cls: Any, check: Any, problems: list[str]) -> list[Any]:
    from .schedules.base import ScheduleOptions, build_schedule, schedule_class

    if not isinstance(schedules, list):
        return []  # the model reports it
    validated = []
    for i, options in enumerate(schedules):
        where = "schedule" if len(schedules) == 1 else f"schedule[{i}]"
        if not isinstance(options, ScheduleOptions):
            if not isinstance(options, dict):
                problems.append(f"{where}: expected a cron string or a mapping with a type")
                continue
            kind = check(f"{where}.type", lambda: schedule_class(str(options.get("type"))))
            options = kind and check(where, lambda: kind.Options.model_validate(options))
            if options is None:
                continue
        if source_cls is not None:
            try:
                build_schedule("", options).check_source(source_cls)
            except ValueError as exc:
                problems.append(f"{where}: {exc}")
        validated.append(options)
    suffixes = _schedule_suffixes(schedules)
    for i, suffix in enumerate(suffixes):
        if suffix in suffixes[:i]:
            problems.append(f"schedule[{i}].name: two schedules of the endpoint are both named {suffix!r}")
    return validated


def dagster_name(endpoint_name: str) -> str:
    """The endpoint's name in Dagster's names (group, job, sensor, schedule, partitions): `-` becomes `_`."""
    return endpoint_name.replace("-", "_")


def _name_problems(names: list[Any]) -> list[tuple[int, str]]:
    """(index, problem) for endpoint names that repeat or map to the same Dagster name."""
    problems: list[tuple[int, str]] = []
    first: dict[str, str] = {}
    for i, name in enumerate(names):
        if not isinstance(name, str):
            continue
        earlier = first.setdefault(dagster_name(name), name)
        if earlier == name and names.index(name) != i:
            problems.append((i, f"name: duplicate endpoint name {name!r}"))
        elif earlier != name:
            problems.append((i, f"name: {name!r} and {earlier!r} both become the Dagster name "
                                f"{dagster_name(name)!r} (assets, jobs, sensors); rename one"))
    return problems


class ConnectorConfig(_Strict):
    store: StoreConfig = Field(default_factory=SQLiteStoreConfig)
    plugins: PluginsConfig = Field(default_factory=PluginsConfig)
    reports_dir: str = ".file_connector/reports"  # where report/<endpoint> writes CSV / Parquet (relative: to this file)
    endpoints: list[EndpointConfig] = Field(default_factory=list)
    delete_guard: DeleteGuardConfig = Field(default_factory=DeleteGuardConfig)  # for endpoints without their own
    discovery: DiscoveryConfig = Field(default_factory=DiscoveryConfig)  # for endpoints without their own
    base_dir: Path = Field(default=Path("."), exclude=True)  # relative paths resolve against it

    @model_validator(mode="after")
    def _unique(self) -> "ConnectorConfig":
        for i, problem in _name_problems([ep.name for ep in self.endpoints]):
            raise ValueError(f"endpoint {self.endpoints[i].name!r}: {problem}")
        for ep in self.endpoints:
            if "delete_guard" not in ep.model_fields_set:
                ep.delete_guard = self.delete_guard
            if "discovery" not in ep.model_fields_set:
                ep.discovery = self.discovery
        return self

    def endpoint(self, name: str) -> EndpointConfig:
        for ep in self.endpoints:
            if ep.name == name:
                return ep
        raise ConfigError(f"no endpoint named {name!r}; endpoints: {', '.join(e.name for e in self.endpoints) or 'none'}")

    @property
    def active_endpoints(self) -> list[EndpointConfig]:
        return [ep for ep in self.endpoints if ep.is_active]

    def resolve_path(self, path: str | Path) -> Path:
        path = Path(os.path.expanduser(str(path)))
        return path if path.is_absolute() else (self.base_dir / path).resolve()

    def env_references(self, inactive: bool = False) -> list[tuple[str, str]]:
        """Every (where, NAME) environment reference of the store and the active endpoints
        (with inactive=True: of the inactive endpoints only)."""
        found: list[tuple[str, str]] = []

        def walk(value: Any, where: str) -> None:
            if isinstance(value, _EnvBase):
                found.extend((where, name) for name in value.env_names())
            elif isinstance(value, BaseModel):
                for key in type(value).model_fields:
                    walk(getattr(value, key), f"{where}.{key}" if where else key)
            elif isinstance(value, (list, tuple)):
                for i, item in enumerate(value):
                    walk(item, f"{where}[{i}]")

        if not inactive:
            walk(self.store, "store")
            for i, plugin in enumerate(self.plugins.use):
                for key, value in (plugin.model_extra or {}).items():
                    if isinstance(value, str):
                        found.extend((f"plugins[{i}].{key}", name) for name in _REF.findall(value))
                    elif isinstance(value, dict) and set(value) == {"env"}:
                        found.append((f"plugins[{i}].{key}", value["env"]))
        for ep in self.endpoints:
            if ep.is_active == inactive:
                continue
            walk(ep.endpoint_details, f"endpoint {ep.name!r}: endpoint_details")
            for i, proc in enumerate(ep.processors):
                from .processors.base import processor_options

                walk(processor_options(proc.type, proc.model_extra or {}),
                     f"endpoint {ep.name!r}: processors[{i}] {proc.type}")
        return found


def config_path(explicit: str | os.PathLike | None = None) -> Path:
    """--config, else $FILE_CONNECTOR_CONFIG, else ./connector.yaml, else the shipped example."""
    if explicit:
        return Path(explicit)
    if os.environ.get("FILE_CONNECTOR_CONFIG"):
        return Path(os.environ["FILE_CONNECTOR_CONFIG"])
    return Path(DEFAULT_CONFIG) if Path(DEFAULT_CONFIG).exists() else EXAMPLE_CONFIG


_UNION_TAGS = {"str", "int", "float", "bool", "list", "dict", "none", "bytes", "function-after", "function-plain"}


_INDEXED = re.compile(r"^[A-Za-z_]\w*\[\d+\]$")  # "processors[0]": a field of ours, not a union tag


def _field_path(loc: list[Any]) -> str:
    """A pydantic error location as the file's field path (union and validator tags dropped)."""
    return ".".join(str(p) for p in loc if not (isinstance(p, str) and not _INDEXED.match(p)
                                                and ("[" in p or p in _UNION_TAGS)))


def _message(error: dict[str, Any]) -> str:
    return error["msg"].removeprefix("Value error, ")


def _merge(lines: list[tuple[str, str]]) -> list[str]:
    """(field path, message) pairs as one "path: message" line per field (a union's branches each
    report the same wrong value: "a valid string or a valid list")."""
    by_path: dict[str, list[str]] = {}
    for path, message in lines:
        messages = by_path.setdefault(path, [])
        if message not in messages:
            messages.append(message)
    merged = []
    for path, messages in by_path.items():
        text = messages[0] + "".join(" or " + m.removeprefix("Input should be ") for m in messages[1:])
        merged.append(f"{path + ': ' if path else ''}{text}")
    return merged


def _describe_all(errors: list[dict[str, Any]], raw: dict[str, Any]) -> list[tuple[int, str]]:
    """(endpoint index or -1, line) for each field with errors."""
    grouped: dict[tuple[int, str], list[tuple[str, str]]] = {}
    for error in errors:
        loc = list(error["loc"])
        index, where = -1, ""
        if len(loc) >= 2 and loc[0] == "endpoints" and isinstance(loc[1], int):
            index, where = loc[1], f"{_endpoint_label(raw, loc[1])}: "
            loc = loc[2:]
        if loc[:1] == ["store"] and len(loc) > 1 and isinstance(raw.get("store"), dict) \
                and loc[1] == raw["store"].get("type"):
            del loc[1]  # the union's tag (the store type) is not a field
        grouped.setdefault((index, where), []).append((_field_path(loc), _message(error)))
    return [(index, (where + line)[:500]) for (index, where), lines in grouped.items() for line in _merge(lines)]


MAX_CONFIG_BYTES = 4 * 1024 * 1024  # a config with thousands of endpoints is well under 1 MiB
MAX_CONFIG_NODES = 200_000  # YAML nodes after expanding aliases: refuses alias bombs ("billion laughs")
MAX_CONFIG_DEPTH = 64


# libyaml's parser (C) feeds the events to PyYAML's Python composer, which this loader bounds; the
# pure-Python scanner and parser took ~0.3 s for 500 endpoints (docs/benchmarks.md, P4).
try:
    from yaml.cyaml import CParser as _EventSource
except ImportError:  # PyYAML built without libyaml
    class _EventSource(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser):  # type: ignore[no-redef]
        def __init__(self, stream: str):
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)


class _BoundedLoader(yaml.composer.Composer, _EventSource, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
    """A safe loader that refuses duplicate keys, deep nesting and documents that aliases would
    expand beyond MAX_CONFIG_NODES nodes. Counting happens while composing, before any object is
    built, so a bomb costs milliseconds and no memory. (Composer comes first: its Python
    compose_node, which the bounds wrap, replaces libyaml's own.)"""

    def __init__(self, stream: str):
        _EventSource.__init__(self, stream)
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)
        self._nodes = 0
        self._depth = 0
        self._sizes: dict[int, int] = {}

    def _size(self, node: yaml.Node) -> int:
        """Nodes under `node` once every alias is expanded (memoized: linear in the document)."""
        known = self._sizes.get(id(node))
        if known is not None:
            return known
        if isinstance(node, yaml.SequenceNode):
            size = 1 + sum(self._size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            size = 1 + sum(self._size(k) + self._size(v) for k, v in node.value)
        else:
            size = 1
        self._sizes[id(node)] = size
        return size

    def _count(self, nodes: int, mark: Any) -> None:
        self._nodes += nodes
        if self._nodes > MAX_CONFIG_NODES:
            raise yaml.composer.ComposerError(None, None, f"the document expands to more than {MAX_CONFIG_NODES} "
                                              "values (aliases repeated too often?)", mark)

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) and event.anchor in self.anchors:
            self._count(self._size(self.anchors[event.anchor]), event.start_mark)
            return super().compose_node(parent, index)
        self._count(1, event.start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_CONFIG_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_CONFIG_DEPTH} levels deep",
                                                  event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {str(key)[:80]!r}",
                                                            key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(text: str) -> Any:
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_config(path: str | os.PathLike | None = None) -> ConnectorConfig:
    """Read and validate connector.yaml; every problem is a ConfigError naming file, endpoint and field."""
    path = config_path(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MiB; refusing to read it")
        raw = _read_yaml(data.decode("utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found (use --config PATH or FILE_CONNECTOR_CONFIG)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{at}: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with store, plugins and endpoints")
    return parse_config(raw, base_dir=Path(path).resolve().parent, label=str(path))


def _endpoint_label(raw: Any, index: int) -> str:
    """How messages name endpoints[index]: its name when that is a plain short string."""
    try:
        name = raw["endpoints"][index].get("name")
    except (KeyError, IndexError, TypeError, AttributeError):
        name = None
    return f"endpoint {name!r}" if isinstance(name, str) and len(name) <= 80 else f"endpoints[{index}]"


MAX_PROBLEMS = 50  # lines listed for one file; a generated file can be wrong thousands of times


def parse_config(raw: dict[str, Any], base_dir: Path = Path("."), label: str = "connector.yaml") -> ConnectorConfig:
    """Validate a parsed connector.yaml; raises one ConfigError listing every problem, one line each."""
    endpoints = raw.get("endpoints") if isinstance(raw.get("endpoints"), list) else []

    def where(i: int) -> str:
        return f"{_endpoint_label(raw, i)}: "

    # Checked here, on the raw file, so that one bad field does not hide the others: source details and
    # processor options (their own models) and names (they must stay distinct once turned into Dagster names).
    problems: list[tuple[int, str]] = []
    nested_failed: set[int] = set()
    for i, ep in enumerate(endpoints):
        if isinstance(ep, dict) and isinstance(ep.get("type"), str):  # else the model says what is wrong
            for problem in _nested(ep["type"], ep.get("endpoint_details"), ep.get("processors") or [],
                                   ep.get("schedule"))[2]:
                problems.append((i, where(i) + problem))
                nested_failed.add(i)
    problems += [(i, where(i) + problem) for i, problem in
                 _name_problems([ep.get("name") if isinstance(ep, dict) else None for ep in endpoints])]
    try:
        config = ConnectorConfig.model_validate({**raw, "base_dir": base_dir})
    except ValidationError as exc:
        errors = [error for error in exc.errors()  # the model's cross-checks were reported above, in full
                  if not (error["loc"] == () or (len(error["loc"]) == 2 and error["loc"][0] == "endpoints"
                                                 and error["loc"][1] in nested_failed))]
        problems += _describe_all(errors, raw)
        config = None
    except ConfigError as exc:
        raise ConfigError(f"{label}: {exc}") from None
    if problems:
        ordered = [problem for _, problem in sorted(dict.fromkeys(problems), key=lambda p: p[0])]  # store first
        shown = [f"{label}: {problem[:500]}" for problem in ordered[:MAX_PROBLEMS]]
        if len(ordered) > MAX_PROBLEMS:
            shown.append(f"{label}: ... and {len(ordered) - MAX_PROBLEMS} more problems")
        raise ConfigError("\n".join(shown))
    assert config is not None
    return config


def missing_environment(config: ConnectorConfig, inactive: bool = False) -> list[str]:
    """One line per environment reference that is not set: the store's and the active endpoints'
    (or, with inactive=True, those of the inactive endpoints)."""
    return [f"{where}: environment variable {name} is not set"
            for where, name in config.env_references(inactive=inactive) if name not in os.environ]


def check_environment(config: ConnectorConfig, label: str = "connector.yaml") -> None:
    """Fail listing every environment reference that is not set (what `validate` adds to parsing)."""
    if missing := missing_environment(config):
        raise ConfigError("\n".join(f"{label}: {line}" for line in missing))
