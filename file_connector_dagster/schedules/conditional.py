"""`conditional` schedules: polled checks that start syncs only when there is a reason to.

- check_file_count: per container, ask the source how many changes wait since the last committed
  sync (a cheap probe: Graph delta from the stored deltaLink, folder mtimes newer than the last
  listing); sync the containers with at least `file_count_threshold`.
- check_external_trigger: sync every container when `trigger_url` answers true, or when
  `trigger_file` exists (the file is then renamed to `<name>.consumed`, so it fires once).
"""

from __future__ import annotations

import os
import time
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ..config import EnvString, redact
from ..errors import FileConnectorError
from .base import TICK_BUDGET_S, Decision, ScheduleOptions, ScheduleType, Tick, register_schedule, short_hash

def _naming(endpoint: str, message: str) -> str:
    """The message with the endpoint named once (our errors usually name it already)."""
    label = f"endpoint {endpoint!r}"
    return message if label in message else f"{label}: {message}"


class ConditionalOptions(ScheduleOptions):
    type: Literal["conditional"] = "conditional"
    condition: Literal["check_file_count", "check_external_trigger"]
    check_interval_minutes: float = Field(default=15, ge=0.5, le=1440)
    file_count_threshold: int = Field(default=100, ge=1)
    trigger_url: EnvString | None = None  # GET; 2xx with JSON true or {"run": true} means run
    trigger_file: str | None = None  # relative to connector.yaml; renamed to <name>.consumed when it fires
    trigger_timeout_s: float = Field(default=10.0, gt=0, le=TICK_BUDGET_S)

    @field_validator("trigger_url")
    @classmethod
    def _url(cls, value: EnvString | None) -> EnvString | None:
        if value is not None and not value.template.startswith(("http://", "https://")):
            raise ValueError(f"{value.template[:80]!r} is not an http(s) URL")
        return value

    @model_validator(mode="after")
    def _fits_condition(self) -> "ConditionalOptions":
        triggers = [name for name in ("trigger_url", "trigger_file") if getattr(self, name)]
        if self.condition == "check_external_trigger" and not triggers:
            raise ValueError("check_external_trigger needs trigger_url or trigger_file")
        if self.condition == "check_file_count" and triggers:
            raise ValueError(f"{triggers[0]}: only applies to condition check_external_trigger")
        return self


class ConditionalSchedule(ScheduleType):
    type_name = "conditional"
    Options = ConditionalOptions

    @property
    def check_interval_s(self) -> int:
        return max(30, int(self.options.check_interval_minutes * 60))

    def describe(self) -> str:
        o: ConditionalOptions = self.options
        if o.condition == "check_file_count":
            what = f"{o.file_count_threshold} pending changes"
        else:
            what = " or ".join(filter(None, [o.trigger_url and f"{o.trigger_url} says run",
                                             o.trigger_file and f"{o.trigger_file} exists"]))
        return f"when {what}, checked every {o.check_interval_minutes:g} min"

    def check_source(self, source_cls: type) -> None:
        if self.options.condition == "check_file_count" and not source_cls.can_probe():
            from ..sources.base import source_types

            able = sorted(name for name, cls in source_types().items() if cls.can_probe())
            raise ValueError(f"condition check_file_count needs a source that can count pending changes; "
                             f"type {source_cls.type_name!r} cannot (types that can: {', '.join(able)})")

    def decide(self, tick: Tick) -> Decision:
        if not tick.containers:
            return Decision.skip(f"{tick.endpoint} has no containers yet; its discovery sensor adds them")
        if self.options.condition == "check_file_count":
            return self._file_count(tick)
        return self._external_trigger(tick)

    # -- check_file_count ---------------------------------------------------------------------------
    def _file_count(self, tick: Tick) -> Decision:
        threshold = self.options.file_count_threshold
        deadline = tick.deadline or time.monotonic() + TICK_BUDGET_S
        runs: dict[str, str] = {}  # container -> its stored state (what the run key is made of)
        counts: dict[str, str] = {}
        errors: list[str] = []
        try:
            source, store = tick.open_source(), tick.open_store()
        except FileConnectorError as exc:
            return Decision.skip(_naming(tick.endpoint, f"cannot check pending changes: {redact(str(exc))}"))
        try:
            for container in tick.containers:
                remaining = deadline - time.monotonic()
                if remaining < 1:
                    errors.append(f"{container}: no time left in this tick")
                    continue
                try:
                    state = store.sync_state(tick.endpoint, container)
                    if state.cursor is None and state.last_sync_at is None:
                        counts[container] = "not synced yet"  # its first sync comes from discovery
                        continue
                    pending = source.pending_changes(container, state, limit=threshold, budget_s=remaining)
                except FileConnectorError as exc:
                    errors.append(redact(str(exc)))
                    continue
                counts[container] = str(pending) if pending < threshold else f">={threshold}"
                if pending >= threshold:
                    runs[container] = str(state.cursor) + str(state.last_sync_at)
        finally:
            source.close()
            store.close()
        for error in errors:
            tick.log.warning(_naming(tick.endpoint, f"probe failed: {error}"))
        if runs:  # one run per stored sync state: the same pending changes never start two runs
            return Decision.run(tick, list(runs), basis=f"changes:{short_hash('|'.join(runs.values()))}")
        if errors:
            return Decision.skip(_naming(tick.endpoint, f"probe failed: {errors[0]}")
                                 + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))
        shown = ", ".join(f"{c}: {n}" for c, n in list(counts.items())[:10])
        more = f", ... {len(counts) - 10} more" if len(counts) > 10 else ""
        return Decision.skip(f"no container has {threshold} pending changes ({shown}{more})")

    # -- check_external_trigger ---------------------------------------------------------------------
    def _external_trigger(self, tick: Tick) -> Decision:
        o: ConditionalOptions = self.options
        reasons: list[str] = []
        if o.trigger_url is not None:
            fired, reason = self._ask_url(tick)
            if fired:
                return Decision.every_container(tick)  # one run per container and check
            reasons.append(reason)
        if o.trigger_file:
            path = (self.base_dir / os.path.expanduser(o.trigger_file)).resolve()
            try:
                stamp = path.stat().st_mtime_ns
            except FileNotFoundError:
                reasons.append(f"{path} does not exist")
            except OSError as exc:
                reasons.append(f"{path}: {exc.strerror or exc}")
            else:
                try:  # consumed before the runs are requested, so it can never fire twice
                    os.replace(path, path.with_name(path.name + ".consumed"))
                except OSError as exc:
                    return Decision.skip(f"endpoint {tick.endpoint!r}: trigger file {path} found but cannot be "
                                         f"renamed ({exc.strerror or exc}); not run, or it would run on every check")
                tick.log.info(f"endpoint {tick.endpoint!r}: trigger file {path} consumed")
                return Decision.every_container(tick, basis=f"file:{stamp}")
        return Decision.skip(f"endpoint {tick.endpoint!r}: not triggered: {'; '.join(reasons)}")

    def _ask_url(self, tick: Tick) -> tuple[bool, str]:
        import requests

        from ..sources.http import tls_session

        o: ConditionalOptions = self.options
        shown = o.trigger_url.template  # references, never their values
        try:
            url = o.trigger_url.resolve(f"endpoint {tick.endpoint!r}: trigger_url: ")
        except FileConnectorError as exc:
            return False, str(exc)
        session = tls_session(None)
        try:
            response = session.get(url, timeout=o.trigger_timeout_s, headers={"Accept": "application/json"})
        except requests.RequestException as exc:
            return False, redact(f"trigger_url {shown} cannot be reached ({type(exc).__name__})")
        finally:
            session.close()
        if not 200 <= response.status_code < 300:
            return False, f"trigger_url {shown} answered HTTP {response.status_code}"
        try:
            body = response.json()
        except ValueError:
            return False, f"trigger_url {shown} answered something that is not JSON"
        if body is True or (isinstance(body, dict) and body.get("run") is True):
            return True, ""
        return False, f"trigger_url {shown} answered {redact(str(body))[:80]}"


register_schedule(ConditionalSchedule.type_name, ConditionalSchedule)
