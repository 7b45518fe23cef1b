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
    # one schedule or a list; a string is a cron expression in UTC, a mapping without `type` a cron one
    schedule: list[Any] = Field(default_factory=list)  # ScheduleOptions once validated
    processors: list[ProcessorConfig] = Field(default_factory=list)

    @field_validator("schedule", mode="before")
    @classmethod
    def _schedule(cls, value: Any) -> Any:
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

    @property
    def schedules(self) -> list[Any]:
        """The endpoint's validated schedules (ScheduleOptions), in config order."""
        return self.schedule

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
        self._validate_schedules(cls, check)
        return self

    def _validate_schedules(self, source_cls: Any, check: Any) -> None:
        from .schedules.base import ScheduleOptions, build_schedule, schedule_class

        for i, options in enumerate(self.schedule):
            where = "schedule" if len(self.schedule) == 1 else f"schedule[{i}]"
            if not isinstance(options, ScheduleOptions):
                if not isinstance(options, dict):
                    raise ValueError(f"{where}: expected a cron string or a mapping with a type")
                try:
                    kind = schedule_class(str(options.get("type")))
                except ConfigError as exc:
                    raise ValueError(f"{where}.type: {exc}") from None
                options = check(where, lambda: kind.Options.model_validate(options))
                self.schedule[i] = options
            try:
                build_schedule(self.name, options).check_source(source_cls)
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
        suffixes = self.schedule_suffixes()
        for i, suffix in enumerate(suffixes):
            if suffix in suffixes[:i]:
                raise ValueError(f"schedule[{i}].name: two schedules of the endpoint are both named {suffix!r}")

    def schedule_suffixes(self) -> list[str]:
        """What tells the endpoint's schedules apart in their Dagster names: `name:`, else
        "schedule" for the only one, "schedule_<n>" (from 1) in a list."""
        return [options.name or ("schedule" if len(self.schedule) == 1 else f"schedule_{i + 1}")
                for i, options in enumerate(self.schedule)]

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
        try:
            name = raw["endpoints"][loc[1]].get("name")
        except (KeyError, IndexError, TypeError, AttributeError):
            name = None
        where = f"endpoint {name!r}: " if name else f"endpoints[{loc[1]}]: "
        loc = loc[2:]
    # pydantic puts union/function tags in loc; keep the field names only
    field_path = ".".join(str(p) for p in loc if not (isinstance(p, str) and ("[" in p or p in ("function-after",))))
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}{field_path + ': ' if field_path else ''}{message}"


def load_config(path: str | os.PathLike | None = None) -> ConnectorConfig:
    """Read and validate connector.yaml; every problem is a ConfigError naming file, endpoint and field."""
    path = config_path(path)
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found (use --config PATH or FILE_CONNECTOR_CONFIG)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{at}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with store, plugins and endpoints")
    return parse_config(raw, base_dir=Path(path).resolve().parent, label=str(path))


def parse_config(raw: dict[str, Any], base_dir: Path = Path("."), label: str = "connector.yaml") -> ConnectorConfig:
    for i, ep in enumerate(raw.get("endpoints") or []):
        # validate type first so an unknown type is one message listing the known ones
        if isinstance(ep, dict) and "type" in ep:
            from .sources.base import source_types

            if ep["type"] not in source_types():
                name = ep.get("name") or f"endpoints[{i}]"
                raise ConfigError(f"{label}: endpoint {name!r}: type: unknown type {ep['type']!r}; "
                                  f"known types: {', '.join(sorted(source_types()))}")
    try:
        return ConnectorConfig.model_validate({**raw, "base_dir": base_dir})
    except ValidationError as exc:
        errors = exc.errors()
        more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
        raise ConfigError(f"{label}: {_describe(errors[0], raw)}{more}") from None
    except ConfigError as exc:
        raise ConfigError(f"{label}: {exc}") from None


def check_environment(config: ConnectorConfig, label: str = "connector.yaml") -> None:
    """Fail on the first environment reference that is not set (what `validate` adds to parsing)."""
    for where, name in config.env_references():
        if name not in os.environ:
            raise ConfigError(f"{label}: {where}: environment variable {name} is not set")
