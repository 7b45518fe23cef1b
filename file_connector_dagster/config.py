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
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value


class ProcessorConfig(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str


class PluginConfig(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str


class EndpointConfig(_Strict):
    name: str
    type: str
    endpoint_details: Any = Field(default_factory=dict)
    project_id: str | None = None
    user_id: str | None = None
    is_active: bool = True
    schedule: ScheduleConfig | None = None
    processors: list[ProcessorConfig] = Field(default_factory=list)

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
        return {"cron": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _details(self) -> "EndpointConfig":
        details, problems = _nested(self.type, self.endpoint_details, self.processors)
        if problems:
            raise ValueError(problems[0])
        self.endpoint_details = details
        return self

    def secret_free_details(self) -> dict[str, Any]:
        """endpoint_details as JSON; Secret fields serialize as their ${NAME} reference."""
        return self.endpoint_details.model_dump(mode="json")


def _nested(type_name: Any, details: Any, processors: list[Any]) -> tuple[Any, list[str]]:
    """Validate an endpoint's source-specific details and processor options by their own models.

    Returns the validated details and every problem found, each as "field: message".
    """
    from .processors.base import processor_class
    from .sources.base import source_class

    problems: list[str] = []

    def check(where: str, validate: Any) -> Any:
        try:
            return validate()
        except ValidationError as exc:
            for error in exc.errors():
                field_path = ".".join(str(p) for p in (where, *error["loc"]))
                problems.append(f"{field_path}: {error['msg'].removeprefix('Value error, ')}")
        except ConfigError as exc:
            problems.append(f"{where}: {exc}")
        return None

    from .sources.base import source_types

    if not isinstance(type_name, str) or type_name not in source_types():  # the file's word is "type"; the registry says "source type"
        problems.append(f"type: unknown type {type_name!r}; known types: {', '.join(sorted(source_types()))}")
        cls = None
    else:
        cls = check("type", lambda: source_class(str(type_name)))
    if cls is not None and not isinstance(details, cls.Details):
        details = check("endpoint_details", lambda: cls.Details.model_validate(details or {}))
    for i, proc in enumerate(processors or []):
        if isinstance(proc, BaseModel):
            proc = {"type": proc.type, **(proc.model_extra or {})}
        if not isinstance(proc, dict) or "type" not in proc:
            continue  # the ProcessorConfig model reports it
        options = {k: v for k, v in proc.items() if k != "type"}
        processor = check(f"processors[{i}].type", lambda: processor_class(str(proc["type"])))
        if processor is not None:
            check(f"processors[{i}]", lambda: processor.Options.model_validate(options))
    return details, problems


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
    plugins: list[PluginConfig] = Field(default_factory=list)
    endpoints: list[EndpointConfig] = Field(default_factory=list)
    base_dir: Path = Field(default=Path("."), exclude=True)  # relative paths resolve against it

    @model_validator(mode="after")
    def _unique(self) -> "ConnectorConfig":
        for i, problem in _name_problems([ep.name for ep in self.endpoints]):
            raise ValueError(f"endpoint {self.endpoints[i].name!r}: {problem}")
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
        for ep in self.endpoints:
            if ep.is_active == inactive:
                continue
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
    if loc[:1] == ["store"] and len(loc) > 1 and isinstance(raw.get("store"), dict) and loc[1] == raw["store"].get("type"):
        del loc[1]  # the union's tag (the store type) is not a field
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
    """Validate a parsed connector.yaml; raises one ConfigError listing every problem, one line each."""
    endpoints = raw.get("endpoints") if isinstance(raw.get("endpoints"), list) else []

    def where(i: int) -> str:
        name = endpoints[i].get("name") if isinstance(endpoints[i], dict) else None
        return f"endpoint {name!r}: " if isinstance(name, str) and name else f"endpoints[{i}]: "

    # Checked here, on the raw file, so that one bad field does not hide the others: source details and
    # processor options (their own models) and names (they must stay distinct once turned into Dagster names).
    problems: list[tuple[int, str]] = []
    nested_failed: set[int] = set()
    for i, ep in enumerate(endpoints):
        if isinstance(ep, dict) and "type" in ep:
            for problem in _nested(ep["type"], ep.get("endpoint_details"), ep.get("processors") or [])[1]:
                problems.append((i, where(i) + problem))
                nested_failed.add(i)
    problems += [(i, where(i) + problem) for i, problem in
                 _name_problems([ep.get("name") if isinstance(ep, dict) else None for ep in endpoints])]
    try:
        config = ConnectorConfig.model_validate({**raw, "base_dir": base_dir})
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(error["loc"])
            if loc == () or (len(loc) == 2 and loc[0] == "endpoints" and loc[1] in nested_failed):
                continue  # the model's own cross-checks: already reported above, in full
            index = loc[1] if len(loc) >= 2 and loc[0] == "endpoints" and isinstance(loc[1], int) else -1
            problems.append((index, _describe(error, raw)))
        config = None
    except ConfigError as exc:
        raise ConfigError(f"{label}: {exc}") from None
    if problems:
        ordered = sorted(dict.fromkeys(problems), key=lambda p: p[0])  # file order, store first
        raise ConfigError("\n".join(f"{label}: {problem}" for _, problem in ordered))
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
