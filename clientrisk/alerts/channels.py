"""The receivers of alerts: a webhook (a JSON POST) and e-mail (SMTP), each optional.

Each channel takes one message within a given number of seconds or raises `DeliveryFailed`
saying why in one line, never a traceback, and never with a secret in it: the SMTP password
(from RISK_ALERT_SMTP_PASSWORD) is never written, and a webhook is named by its scheme and host
only (a chat tool's webhook URL is itself a secret).
"""

from __future__ import annotations

import json
import os
import smtplib
import socket
import ssl
import urllib.error
import urllib.request
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import urlsplit

from clientrisk.config import SMTP_PASSWORD_ENV

__all__ = ["Channel", "DeliveryFailed", "EmailChannel", "WebhookChannel", "configured_channels"]

USER_AGENT = "clientrisk-alerts"


class DeliveryFailed(Exception):
    """A receiver did not take a message: `permanent` when trying again cannot help (the
    receiver refused it, rather than failing to answer)."""

    def __init__(self, reason: str, permanent: bool = False):
        super().__init__(reason)
        self.permanent = permanent


class Channel:
    """A receiver of alerts: `name` (as the history records it), and `send`."""

    name = ""

    def describe(self) -> str:
        """Where messages go, in words safe to log."""
        raise NotImplementedError

    def send(self, message: dict, seconds: float) -> None:
        """Deliver `message` (subject, text and the event's fields) within `seconds`.

        Raises:
            DeliveryFailed: saying why, without any secret.
        """
        raise NotImplementedError


class WebhookChannel(Channel):
    """A JSON POST of `{"text": ..., ...}`: `text` (the subject in bold, then the details) is
    what Slack and Mattermost show; the other fields (subject, details, event, kind, run,
    project) are for other receivers."""

    name = "webhook"

    def __init__(self, url: str):
        self.url = url

    def describe(self) -> str:
        parts = urlsplit(self.url)
        return f"webhook {parts.scheme}://{parts.netloc.rpartition('@')[2]}"

    def send(self, message: dict, seconds: float) -> None:
        body = {
            **message,
            "text": f"*{message['subject']}*\n{message['text']}",
            "details": message["text"],
        }
        request = urllib.request.Request(
            self.url,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "User-Agent": USER_AGENT},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=seconds) as response:
                response.read(1 << 16)
        except urllib.error.HTTPError as error:
            # Throttled or a server error may pass; any other refusal will not.
            raise DeliveryFailed(
                f"{self.describe()} answered HTTP {error.code} {error.reason}",
                permanent=error.code < 500 and error.code not in (408, 429),
            ) from None
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", error)
            if isinstance(reason, TimeoutError | socket.timeout) or "timed out" in str(reason):
                reason = f"no answer within {seconds:.1f} s"
            raise DeliveryFailed(f"{self.describe()}: {reason}") from None


class EmailChannel(Channel):
    """An e-mail through an SMTP server: STARTTLS when the server offers it (TLS from the start
    on port 465), and a login when RISK_ALERT_SMTP_PASSWORD is set."""

    name = "email"

    def __init__(self, host: str, port: int, to: list[str], sender: str, user: str = ""):
        self.host, self.port, self.to = host, port, to
        self.sender = sender or f"clientrisk@{socket.gethostname()}"
        self.user = user or self.sender

    def describe(self) -> str:
        return f"e-mail to {', '.join(self.to)} via {self.host}:{self.port}"

    def send(self, message: dict, seconds: float) -> None:
        mail = EmailMessage()
        mail["Subject"] = f"[clientrisk] {message['subject']}"
        mail["From"] = self.sender
        mail["To"] = ", ".join(self.to)
        mail["Date"] = formatdate(usegmt=True)
        mail["Message-ID"] = make_msgid(domain="clientrisk")
        fields = "\n".join(f"{key}: {value}" for key, value in message.items() if key != "text")
        mail.set_content(f"{message['text']}\n\n--\n{fields}\n")
        password = os.environ.get(SMTP_PASSWORD_ENV, "")
        try:
            self._deliver(mail, seconds, password)
        except (smtplib.SMTPAuthenticationError, smtplib.SMTPRecipientsRefused) as error:
            raise DeliveryFailed(self._words(error, password), permanent=True) from None
        except smtplib.SMTPResponseException as error:
            permanent = 500 <= error.smtp_code < 600
            raise DeliveryFailed(self._words(error, password), permanent=permanent) from None
        except (smtplib.SMTPException, OSError, ssl.SSLError) as error:
            raise DeliveryFailed(self._words(error, password, seconds)) from None

    def _deliver(self, mail: EmailMessage, seconds: float, password: str) -> None:
        if self.port == 465:
            server = smtplib.SMTP_SSL(
                self.host, self.port, timeout=seconds, context=ssl.create_default_context()
            )
        else:
            server = smtplib.SMTP(self.host, self.port, timeout=seconds)
        with server:
            server.ehlo()
            if self.port != 465 and server.has_extn("starttls"):
                server.starttls(context=ssl.create_default_context())
                server.ehlo()
            if password:
                server.login(self.user, password)
            server.send_message(mail)

    def _words(self, error: Exception, password: str, seconds: float | None = None) -> str:
        if isinstance(error, TimeoutError | socket.timeout):
            text = f"no answer within {seconds:.1f} s"
        elif isinstance(error, smtplib.SMTPResponseException):
            detail = error.smtp_error
            detail = detail.decode(errors="replace") if isinstance(detail, bytes) else str(detail)
            text = f"the server answered {error.smtp_code} {detail}"
        elif isinstance(error, smtplib.SMTPRecipientsRefused):
            text = f"the server refused {', '.join(error.recipients)}"
        else:
            text = str(error) or type(error).__name__
        if password:
            text = text.replace(password, "***")
        return f"{self.describe()}: {' '.join(text.split())}"


def configured_channels(settings: dict) -> list[Channel]:
    """The receivers the config's settings name (none, one or both)."""
    channels: list[Channel] = []
    if settings.get("alert_webhook_url"):
        channels.append(WebhookChannel(settings["alert_webhook_url"]))
    if settings.get("alert_email_to"):
        channels.append(
            EmailChannel(
                settings["alert_smtp_host"],
                settings["alert_smtp_port"],
                [address.strip() for address in settings["alert_email_to"].split(",")],
                settings.get("alert_email_from", ""),
                settings.get("alert_smtp_user", ""),
            )
        )
    return channels
