"""`type: email`: a plain-text and HTML summary of each event over SMTP (STARTTLS, SSL or plain)."""

from __future__ import annotations

import html
import smtplib
import ssl
from email.message import EmailMessage
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..config import Secret
from .base import BasePlugin, PluginMetadata, SyncEvent
from .manager import register_plugin


class EmailOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str
    port: int | None = None  # default: 465 for ssl, 587 for starttls, 25 for none
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: str | None = None
    password: Secret | None = None
    sender: str = Field(alias="from", default="file-connector@localhost")
    to: list[str] = Field(min_length=1)
    cc: list[str] = Field(default_factory=list)
    subject_prefix: str = "[File Connector]"
    timeout_s: float = Field(default=30.0, gt=0)
    ca_bundle: str | None = None  # PEM to verify the server's certificate with (default: system store)


def render(event: SyncEvent) -> tuple[str, str]:
    """(plain text, HTML) bodies for one event."""
    lines = [event.headline, "", f"status: {event.status}"]
    lines += [f"{k}: {v}" for k, v in event.counts.items()]
    if event.duration_s is not None:
        lines.append(f"duration: {event.duration_s:.2f} s")
    if event.error:
        lines.append(f"error: {event.error}")
    if event.run_url:
        lines.append(f"run: {event.run_url}")
    rows = "".join(f"<tr><th align='left'>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                   for k, v in [("status", event.status), *event.counts.items()])
    extra = ""
    if event.error:
        extra += f"<p style='color:#b00'><b>Error:</b> <code>{html.escape(event.error)}</code></p>"
    if event.run_url:
        extra += f"<p><a href='{html.escape(event.run_url)}'>Open the Dagster run</a></p>"
    body = f"<html><body><h3>{html.escape(event.headline)}</h3><table>{rows}</table>{extra}</body></html>"
    return "\n".join(lines) + "\n", body


class EmailPlugin(BasePlugin):
    type_name = "email"
    metadata = PluginMetadata("email", "1.0.0", "Email a summary of each sync result over SMTP",
                              "File Connector", ())
    Options = EmailOptions

    def execute(self, context: SyncEvent) -> dict[str, Any]:
        opts: EmailOptions = self.options  # type: ignore[assignment]
        message = EmailMessage()
        message["Subject"] = f"{opts.subject_prefix} {context.endpoint}/{context.container}: {context.status}"
        message["From"] = opts.sender
        message["To"] = ", ".join(opts.to)
        if opts.cc:
            message["Cc"] = ", ".join(opts.cc)
        text, body = render(context)
        message.set_content(text)
        message.add_alternative(body, subtype="html")
        tls = ssl.create_default_context(cafile=opts.ca_bundle)
        port = opts.port or {"ssl": 465, "starttls": 587, "none": 25}[opts.security]
        where = f"SMTP {opts.host}:{port}"
        try:
            if opts.security == "ssl":
                client: smtplib.SMTP = smtplib.SMTP_SSL(opts.host, port, timeout=opts.timeout_s, context=tls)
            else:
                client = smtplib.SMTP(opts.host, port, timeout=opts.timeout_s)
            with client:
                if opts.security == "starttls":
                    client.starttls(context=tls)
                if opts.username:
                    password = opts.password.resolve(f"plugin {self.name}: password: ") if opts.password else ""
                    client.login(opts.username, password)
                refused = client.send_message(message)
        except smtplib.SMTPAuthenticationError as exc:
            raise RuntimeError(f"{where}: login as {opts.username!r} refused ({exc.smtp_code})") from None
        except smtplib.SMTPException as exc:
            raise RuntimeError(f"{where}: {type(exc).__name__}") from None
        except OSError as exc:
            raise RuntimeError(f"{where}: cannot connect ({exc.strerror or type(exc).__name__})") from None
        return {"sent_to": len(opts.to) + len(opts.cc) - len(refused)}


register_plugin(EmailPlugin.type_name, EmailPlugin)
