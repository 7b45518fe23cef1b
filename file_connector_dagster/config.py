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

from .errors import ConfigError

DEFAULT_CONFIG = "connector.yaml"
EXAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "examples" / "connector.yaml"
_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SLUG = r"^[a-z0-9][a-z0-9_\-]{0,62}$"


_RESOLVED: set[str] = set()  # values read from the environment, masked wherever we print


def redact(text: str) -> str:
    """Mask every value this process resolved from an environment reference."""
    for value in sorted(_RESOLVED, key=len, reverse=True):
        if len(value) >= 4:
            text = text.replace(value, "***")
    return text


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


class PostgresStoreConfig(_Strict):
    type: Literal["postgres"]
    dsn: EnvString  # e.g. postgresql://user:${PGPASSWORD}@host:5432/db


class MongoStoreConfig(_Strict):
    type: Literal["mongo"]
    uri: EnvString
    database: str = "file_connector"


StoreConfig = Annotated[Union[SQLiteStoreConfig, PostgresStoreConfig, MongoStoreConfig], Field(discriminator="type")]


class ScheduleConfig(_Strict):
    cron: str
    timezone: str = "UTC"

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        from croniter import croniter

        if not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a valid cron expression")
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file name
            raise ValueError(f"unknown time zone {value[:80]!r}") from None
        return value


class ProcessorConfig(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str


class PluginConfig(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str


class EndpointConfig(_Strict):
    name: str = Field(pattern=_SLUG)
    type: str
    endpoint_details: Any = Field(default_factory=dict)
    project_id: str | None = None
    user_id: str | None = None
    is_active: bool = True
    schedule: ScheduleConfig | None = None
    processors: list[ProcessorConfig] = Field(default_factory=list)

    @field_validator("schedule", mode="before")
    @classmethod
    def _schedule(cls, value: Any) -> Any:
        return {"cron": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _details(self) -> "EndpointConfig":
        from .processors.base import processor_class
        from .sources.base import source_class

        def check(where: str, validate: Any) -> Any:
            try:
                return validate()
            except ValidationError as exc:
                first = exc.errors()[0]
                field_path = ".".join(str(p) for p in (where, *first["loc"]))
                raise ValueError(f"{field_path}: {first['msg'].removeprefix('Value error, ')}") from None
            except ConfigError as exc:
                raise ValueError(str(exc)) from None

        cls = check("type", lambda: source_class(self.type))
        if not isinstance(self.endpoint_details, cls.Details):
            self.endpoint_details = check("endpoint_details",
                                          lambda: cls.Details.model_validate(self.endpoint_details or {}))
        for i, proc in enumerate(self.processors):
            check(f"processors[{i}]",
                  lambda: processor_class(proc.type).Options.model_validate(proc.model_extra or {}))
        return self

    def secret_free_details(self) -> dict[str, Any]:
        """endpoint_details as JSON; Secret fields serialize as their ${NAME} reference."""
        return self.endpoint_details.model_dump(mode="json")


class ConnectorConfig(_Strict):
    store: StoreConfig = Field(default_factory=SQLiteStoreConfig)
    plugins: list[PluginConfig] = Field(default_factory=list)
    endpoints: list[EndpointConfig] = Field(default_factory=list)
    base_dir: Path = Field(default=Path("."), exclude=True)  # relative paths resolve against it

    @model_validator(mode="after")
    def _unique(self) -> "ConnectorConfig":
        seen: set[str] = set()
        for i, ep in enumerate(self.endpoints):
            if ep.name in seen:
                raise ValueError(f"duplicate endpoint name {ep.name!r} (endpoints[{i}])")
            seen.add(ep.name)
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

    def env_references(self) -> list[tuple[str, str]]:
        """Every (where, NAME) environment reference of the store and the active endpoints."""
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

        walk(self.store, "store")
        for ep in self.active_endpoints:
            walk(ep.endpoint_details, f"endpoint {ep.name!r}: endpoint_details")
        return found


def config_path(explicit: str | os.PathLike | None = None) -> Path:
    """--config, else $FILE_CONNECTOR_CONFIG, else ./connector.yaml, else the shipped example."""
    if explicit:
        return Path(explicit)
    if os.environ.get("FILE_CONNECTOR_CONFIG"):
        return Path(os.environ["FILE_CONNECTOR_CONFIG"])
    return Path(DEFAULT_CONFIG) if Path(DEFAULT_CONFIG).exists() else EXAMPLE_CONFIG


def _describe(error: dict[str, Any], raw: dict[str, Any]) -> str:
    loc = list(error["loc"])
    where = ""
    if len(loc) >= 2 and loc[0] == "endpoints" and isinstance(loc[1], int):
        where = f"{_endpoint_label(raw, loc[1])}: "
        loc = loc[2:]
    # pydantic puts union/function tags in loc; keep the field names only
    field_path = ".".join(str(p) for p in loc if not (isinstance(p, str) and ("[" in p or p in ("function-after",))))
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}{field_path + ': ' if field_path else ''}{message}"


MAX_CONFIG_BYTES = 4 * 1024 * 1024  # a config with thousands of endpoints is well under 1 MiB
MAX_CONFIG_NODES = 200_000  # YAML nodes after expanding aliases: refuses alias bombs ("billion laughs")
MAX_CONFIG_DEPTH = 64


class _BoundedLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses duplicate keys, deep nesting and documents that aliases would
    expand beyond MAX_CONFIG_NODES nodes. Counting happens while composing, before any object is
    built, so a bomb costs milliseconds and no memory."""

    def __init__(self, stream: str):
        super().__init__(stream)
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


def parse_config(raw: dict[str, Any], base_dir: Path = Path("."), label: str = "connector.yaml") -> ConnectorConfig:
    endpoints = raw.get("endpoints")
    for i, ep in enumerate(endpoints if isinstance(endpoints, list) else []):
        # validate type first so an unknown type is one message listing the known ones
        if isinstance(ep, dict) and isinstance(ep.get("type"), str):
            from .sources.base import source_types

            if ep["type"] not in source_types():
                raise ConfigError(f"{label}: {_endpoint_label(raw, i)}: type: unknown type {ep['type'][:80]!r}; "
                                  f"known types: {', '.join(sorted(source_types()))}")
    try:
        return ConnectorConfig.model_validate({**raw, "base_dir": base_dir})
    except ValidationError as exc:
        errors = exc.errors()
        more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
        raise ConfigError(f"{label}: {_describe(errors[0], raw)[:500]}{more}") from None
    except ConfigError as exc:
        raise ConfigError(f"{label}: {exc}") from None


def check_environment(config: ConnectorConfig, label: str = "connector.yaml") -> None:
    """Fail on the first environment reference that is not set (what `validate` adds to parsing)."""
    for where, name in config.env_references():
        if name not in os.environ:
            raise ConfigError(f"{label}: {where}: environment variable {name} is not set")
