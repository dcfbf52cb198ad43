"""Alerts reach a webhook and an SMTP server started here, once per event, and a receiver that
does not answer delays a run by `alert_timeout_seconds` at most."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest

import deployment
import fullprocess
from clientrisk.alerts import channels, delivery, events
from clientrisk.config import PROJECT_DIR, SMTP_PASSWORD_ENV, load_config
from clientrisk.data.clientcsv import FEATURES
from clientrisk.errors import ConfigError
from clientrisk.history.database import open_history
from conftest import client_rows

aiosmtpd = pytest.importorskip("aiosmtpd", reason="aiosmtpd (the dev extra) is not installed")
from aiosmtpd.controller import Controller  # noqa: E402


@pytest.fixture(autouse=True)
def no_api(monkeypatch):
    monkeypatch.setenv("RISK_API_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("RISK_API_TOKEN", raising=False)
    monkeypatch.delenv(SMTP_PASSWORD_ENV, raising=False)


# --- receivers started by the tests --------------------------------------------------------------


class Webhook:
    """An HTTP receiver on a free local port: keeps every JSON body POSTed to it; `status` is
    what it answers, or with `hang` it accepts and never answers."""

    def __init__(self, status: int = 200, hang: bool = False):
        self.bodies, self.status, self.hang = [], status, hang
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers["Content-Length"])
                body = json.loads(self.rfile.read(length))
                if receiver.hang:
                    receiver.release.wait(30)
                    return
                receiver.bodies.append(body)
                self.send_response(receiver.status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/secret-token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def subjects(self) -> list[str]:
        return [body["subject"] for body in self.bodies]

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


class Mailbox:
    """An SMTP server (aiosmtpd) on a free local port that keeps every message."""

    def __init__(self):
        self.messages = []
        receiver = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                receiver.messages.append(
                    message_from_bytes(envelope.content, policy=policy.default)
                )
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def subjects(self) -> list[str]:
        return [message["Subject"].removeprefix("[clientrisk] ") for message in self.messages]

    def close(self):
        self.controller.stop()


class SilentServer:
    """Accepts connections and never says a word (an SMTP server that hangs)."""

    def __init__(self):
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.held = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                self.held.append(self.socket.accept()[0])
            except OSError:
                return

    def close(self):
        for connection in self.held:
            connection.close()
        self.socket.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def webhook():
    receiver = Webhook()
    yield receiver
    receiver.close()


@pytest.fixture
def mailbox():
    receiver = Mailbox()
    yield receiver
    receiver.close()


def configure(project, **settings) -> None:
    config = json.loads(project.config_path.read_text())
    project.config_path.write_text(json.dumps({**config, **settings}))


def both(project, webhook, mailbox, **settings) -> None:
    configure(
        project,
        alert_webhook_url=webhook.url,
        alert_email_to="team@example.com, boss@example.com",
        alert_email_from="risk@example.com",
        alert_smtp_host="127.0.0.1",
        alert_smtp_port=mailbox.port,
        **settings,
    )


def stored_alerts(project):
    with open_history(project.root / "ingesteddata" / "history.db") as history:
        return history.alerts(limit=100)


def tick(project) -> int:
    return fullprocess.main(project.args())


# --- every event, to both receivers, once --------------------------------------------------------


def test_a_drift_and_the_redeployment_reach_both_receivers_once(diagnosed, webhook, mailbox):
    both(diagnosed, webhook, mailbox)
    diagnosed.write_input("drifted.csv", client_rows(1000, seed=23, drifted=True))
    assert tick(diagnosed) == 0
    expected = ["drift found (data and model) by run", "model deployed v0002 (was v0001)"]
    for subjects in (webhook.subjects(), mailbox.subjects()):
        assert len(subjects) == 2
        assert subjects[0].startswith(expected[0])
        assert subjects[1] == expected[1]
    body = webhook.bodies[0]
    assert body["kind"] == "drift"
    assert body["event"].startswith("drift:run")
    assert body["text"].startswith(f"*{body['subject']}*\n")  # what a chat tool shows
    assert "lastyear_activity" in body["text"]
    mail = mailbox.messages[1]
    assert mail["To"] == "team@example.com, boss@example.com"
    assert mail["From"] == "risk@example.com"
    assert "model drift on drifted.csv" in mail.get_content()
    # The next ticks see the same events in the history: nothing is sent again.
    assert tick(diagnosed) == 0
    assert tick(diagnosed) == 0
    assert len(webhook.bodies) == len(mailbox.messages) == 2
    recorded = [alert for alert in stored_alerts(diagnosed) if alert.receivers]
    assert [alert.delivered for alert in recorded] == [("webhook", "email")] * 2
    assert all(alert.failures == {} and alert.finished_at for alert in recorded)


def test_two_failed_runs_in_a_row_are_alerted_once(deployed, webhook, mailbox):
    both(deployed, webhook, mailbox)
    deployed.write_input("batch3.csv", client_rows(300, seed=21))
    (deployed.root / "testdata" / "testdata.csv").unlink()
    assert tick(deployed) == 1
    assert not failure_alerts(webhook)  # one failure is not yet an event
    assert tick(deployed) == 1
    assert tick(deployed) == 1  # a third failure is the same streak
    for subjects in (
        [body["subject"] for body in failure_alerts(webhook)],
        [subject for subject in mailbox.subjects() if "in a row" in subject],
    ):
        assert subjects == ["2 runs in a row failed or were interrupted"]
    assert "testdata.csv: data file not found" in failure_alerts(webhook)[0]["text"]


def failure_alerts(webhook) -> list[dict]:
    return [body for body in webhook.bodies if body["kind"] == "failed-runs"]


def test_two_killed_runs_are_alerted_even_when_the_next_run_succeeds(diagnosed, webhook, mailbox):
    """A killed run is marked interrupted by the next one, which may well succeed."""
    both(diagnosed, webhook, mailbox)
    with open_history(diagnosed.root / "ingesteddata" / "history.db") as history:
        for _ in range(2):  # two runs killed with kill -9: still marked running
            history.start_run(999999, "2026-01-01T00:00:00Z", str(diagnosed.config_path))
    assert tick(diagnosed) == 0
    for subjects in (
        [body["subject"] for body in failure_alerts(webhook)],
        [subject for subject in mailbox.subjects() if "in a row" in subject],
    ):
        assert subjects == ["2 runs in a row failed or were interrupted"]
    assert "interrupted: killed or stopped before it finished" in failure_alerts(webhook)[0]["text"]
    assert tick(diagnosed) == 0
    assert len(failure_alerts(webhook)) == 1


def test_a_challenger_kept_out_is_alerted(diagnosed, webhook, mailbox, worse_challengers):
    both(diagnosed, webhook, mailbox)
    diagnosed.write_input("drifted.csv", client_rows(1000, seed=23, drifted=True))
    assert tick(diagnosed) == 0
    for subjects in (webhook.subjects(), mailbox.subjects()):
        assert [subject.split(" (")[0] for subject in subjects] == [
            "drift found",
            "a retrained model was kept out",
        ]
    assert "significantly worse" in webhook.bodies[1]["text"]


def test_a_rollback_by_hand_is_alerted_at_once(diagnosed, webhook, mailbox):
    diagnosed.write_input("drifted.csv", client_rows(1000, seed=23, drifted=True))
    assert tick(diagnosed) == 0  # v0002 is live; no receiver was configured then
    both(diagnosed, webhook, mailbox)
    assert deployment.main([*diagnosed.args(), "--rollback", "--reason", "v0002 misranks"]) == 0
    for subjects in (webhook.subjects(), mailbox.subjects()):
        assert subjects == ["model rolled back to v0001 (was v0002)"]
    assert "v0002 misranks" in webhook.bodies[0]["text"]
    assert tick(diagnosed) == 0
    assert len(webhook.bodies) == len(mailbox.messages) == 1


def make_overdue(project, hours: float) -> None:
    """Move every recorded run `hours` into the past, as if cron had stopped then."""
    import sqlite3

    db = sqlite3.connect(project.root / "ingesteddata" / "history.db")
    with db:
        db.execute(
            "UPDATE runs SET last_finished_at = strftime('%Y-%m-%dT%H:%M:%SZ', last_finished_at,"
            f" '-{hours * 3600:.0f} seconds')"
        )
    db.close()


def cron_tick(project) -> subprocess.CompletedProcess:
    """A tick as cron starts it: no options, the config from RISK_CONFIG."""
    return subprocess.run(
        [sys.executable, str(PROJECT_DIR / "fullprocess.py")],
        env={**os.environ, "RISK_CONFIG": str(project.config_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_no_successful_run_for_too_long_is_noticed_by_the_next_quiet_tick(
    diagnosed, webhook, mailbox
):
    both(diagnosed, webhook, mailbox, alert_no_success_hours=2)
    assert tick(diagnosed) == 0  # decided in full: leaves the quiet tick's stamp
    assert cron_tick(diagnosed).returncode == 0
    assert webhook.bodies == []
    make_overdue(diagnosed, hours=3)  # cron stopped three hours ago, and starts again
    assert cron_tick(diagnosed).returncode == 0
    for subjects in (webhook.subjects(), mailbox.subjects()):
        assert len(subjects) == 1
        assert subjects[0].startswith("no successful run since")
    assert "more than 2 hours" in webhook.bodies[0]["text"]
    assert cron_tick(diagnosed).returncode == 0  # the gap is closed: nothing more
    assert len(webhook.bodies) == len(mailbox.messages) == 1


def test_health_and_the_dashboard_say_when_no_run_has_succeeded_for_too_long(diagnosed):
    from clientrisk.api.app import create_app

    configure(diagnosed, alert_no_success_hours=0.5)
    assert tick(diagnosed) == 0
    client = create_app(diagnosed.config_path, token="").test_client()
    runs = client.get("/health").get_json()["runs"]
    assert runs["overdue"] is False
    assert runs["no_success_hours"] == 0.5
    assert 'id="overdue"' not in client.get("/").text
    make_overdue(diagnosed, hours=1)  # nothing runs (cron stopped): the API notices alone
    client = create_app(diagnosed.config_path, token="").test_client()
    response = client.get("/health")
    assert response.status_code == 200  # the model is still served
    assert response.get_json()["runs"]["overdue"] is True
    assert "has done its work for more than 0.5 hours" in client.get("/").text


def test_more_leavers_than_the_list_expected_are_alerted(diagnosed, webhook, mailbox):
    assert tick(diagnosed) == 0  # the reports and the call list are made
    ranked = pd.read_csv(diagnosed.root / "models" / "riskranking.csv")
    summary = json.loads((diagnosed.root / "models" / "ranking.json").read_text())
    both(diagnosed, webhook, mailbox)
    # Every listed client leaves: far more than the list's probabilities expected.
    gone = ranked[["corporation", "lastmonth_activity", "lastyear_activity"]].assign(
        number_of_employees=ranked["number_of_employees"], exited=1
    )
    diagnosed.write_input("outcomes.csv", gone)
    assert tick(diagnosed) == 0
    leavers = [body for body in webhook.bodies if body["kind"] == "leavers"]
    assert len(leavers) == 1
    clients = summary["clients"]
    assert leavers[0]["subject"] == (
        f"more leavers than expected: {clients} of {clients} clients left"
    )
    expected = summary["expected_leavers"]["expected"]
    whole = f"the whole list: {clients} of {clients} left, {expected:.1f}"
    assert whole in leavers[0]["text"]
    assert any(subject.startswith("more leavers") for subject in mailbox.subjects())


# --- receivers that fail -------------------------------------------------------------------------


def test_a_receiver_that_hangs_delays_the_run_by_the_time_limit_at_most(deployed):
    hanging_hook, silent_smtp = Webhook(hang=True), SilentServer()
    try:
        deployed.write_input("batch3.csv", client_rows(300, seed=21))
        (deployed.root / "testdata" / "testdata.csv").unlink()
        started = time.monotonic()
        assert tick(deployed) == 1  # fails: not yet an event (and no receiver yet)
        alone = time.monotonic() - started
        configure(
            deployed,
            alert_webhook_url=hanging_hook.url,
            alert_email_to="team@example.com",
            alert_smtp_host="127.0.0.1",
            alert_smtp_port=silent_smtp.port,
            alert_timeout_seconds=2,
        )
        started = time.monotonic()
        assert tick(deployed) == 1  # fails again: the alert waits for both receivers
        with_alert = time.monotonic() - started
    finally:
        hanging_hook.close()
        silent_smtp.close()
    waited = with_alert - alone
    assert 1.5 < waited < 3.5, f"the run waited {waited:.1f} s for its alerts"
    (alert,) = [alert for alert in stored_alerts(deployed) if alert.receivers]
    assert alert.key.startswith("failed-runs:")
    assert alert.delivered == ()
    assert set(alert.failures) == {"webhook", "email"}
    assert all("no answer within" in reason for reason in alert.failures.values())
    assert "secret-token" not in alert.failures["webhook"]  # a webhook URL is a secret
    record = json.loads((deployed.root / "logs" / "fullprocess.jsonl").read_text().split("\n")[-2])
    assert set(record["alerts"]["failed-runs:" + alert.key.split(":")[1]]["failures"]) == {
        "webhook",
        "email",
    }
    from clientrisk.api.app import create_app

    html = create_app(deployed.config_path, token="").test_client().get("/").text
    assert "not delivered" in html
    assert "no answer within" in html


def test_a_server_error_is_tried_again_with_back_off_and_recorded(deployed):
    failing = Webhook(status=503)
    try:
        configure(deployed, alert_webhook_url=failing.url, alert_timeout_seconds=2)
        config = load_config(deployed.config_path)
        with open_history(config.history_path) as history:
            started = time.monotonic()
            outcome = delivery.raise_alert(config, history, "vulnerable:requests==2.0.0", "s", "t")
            took = time.monotonic() - started
    finally:
        failing.close()
    assert len(failing.bodies) >= 3  # tried at once, after 0.5 s, after 1 s more ...
    assert took < 2.5
    assert "HTTP 503" in outcome["failures"]["webhook"]
    assert outcome["delivered"] == []


def test_a_refusal_is_not_tried_again(deployed):
    refusing = Webhook(status=404)
    try:
        configure(deployed, alert_webhook_url=refusing.url)
        config = load_config(deployed.config_path)
        with open_history(config.history_path) as history:
            outcome = delivery.raise_alert(config, history, "vulnerable:flask==0.1", "s", "t")
    finally:
        refusing.close()
    assert len(refusing.bodies) == 1
    assert "HTTP 404" in outcome["failures"]["webhook"]
    assert "(1 try)" in outcome["failures"]["webhook"]


def test_an_event_key_is_alerted_once_however_often_it_is_raised(deployed, webhook, mailbox):
    both(deployed, webhook, mailbox)
    config = load_config(deployed.config_path)
    with open_history(config.history_path) as history:
        first = delivery.raise_alert(
            config, history, "vulnerable:requests==2.0.0", "requests 2.0.0 is vulnerable", "t"
        )
        again = delivery.raise_alert(
            config, history, "vulnerable:requests==2.0.0", "requests 2.0.0 is vulnerable", "t"
        )
    assert first["delivered"] == ["webhook", "email"]
    assert again is None
    assert webhook.bodies[0]["kind"] == "vulnerable"
    assert len(webhook.bodies) == len(mailbox.messages) == 1


def test_the_smtp_password_is_used_and_never_recorded(deployed, monkeypatch):
    """A server that refuses the login: the refusal is recorded, the password nowhere."""
    from aiosmtpd.smtp import AuthResult

    def refuse(server, session, envelope, mechanism, auth_data):
        return AuthResult(success=False, handled=False)

    secret = "hunter2-secret"
    monkeypatch.setenv(SMTP_PASSWORD_ENV, secret)
    port = free_port()

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            return "250 OK"

    controller = Controller(
        Handler(),
        hostname="127.0.0.1",
        port=port,
        authenticator=refuse,
        auth_require_tls=False,
    )
    controller.start()
    try:
        configure(
            deployed,
            alert_email_to="team@example.com",
            alert_smtp_host="127.0.0.1",
            alert_smtp_port=port,
        )
        config = load_config(deployed.config_path)
        with open_history(config.history_path) as history:
            outcome = delivery.raise_alert(config, history, "test:login", "s", "t")
            stored = history.alerts()[0]
    finally:
        controller.stop()
    assert "535" in outcome["failures"]["email"]
    assert "(1 try)" in outcome["failures"]["email"]
    assert secret not in json.dumps(stored.failures)
    assert secret not in (deployed.root / "ingesteddata" / "history.db").read_bytes().decode(
        errors="replace"
    )


def test_every_channel_takes_a_message_or_says_why_not(webhook, mailbox):
    """The contract of every alert channel: delivered, or DeliveryFailed with a reason."""
    working = [
        channels.WebhookChannel(webhook.url),
        channels.EmailChannel("127.0.0.1", mailbox.port, ["a@example.com"], "r@example.com"),
    ]
    closed = [
        channels.WebhookChannel(f"http://127.0.0.1:{free_port()}/"),
        channels.EmailChannel("127.0.0.1", free_port(), ["a@example.com"], "r@example.com"),
    ]
    message = {"subject": "s", "text": "t", "event": "e", "kind": "e", "run": None}
    for channel in working:
        channel.send(message, 5)
    for channel in closed:
        with pytest.raises(channels.DeliveryFailed, match=channel.describe()):
            channel.send(message, 5)
    assert len(webhook.bodies) == len(mailbox.messages) == 1


# --- fullprocess.py --test-alert -----------------------------------------------------------------


def test_test_alert_reaches_every_receiver(deployed, webhook, mailbox, caplog):
    both(deployed, webhook, mailbox)
    assert fullprocess.main([*deployed.args(), "--test-alert"]) == 0
    assert webhook.subjects() == mailbox.subjects() == ["test alert"]
    assert "test" not in [alert.key for alert in stored_alerts(deployed)]  # a test is no event


def test_test_alert_says_which_receiver_failed(deployed, webhook, capsys):
    configure(
        deployed,
        alert_webhook_url=webhook.url,
        alert_email_to="a@example.com",
        alert_smtp_host="127.0.0.1",
        alert_smtp_port=free_port(),
        alert_timeout_seconds=1,
    )
    assert fullprocess.main([*deployed.args(), "--test-alert"]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if "ERROR" in line]
    assert len(errors) == 1
    assert "test alert not delivered: e-mail to a@example.com via 127.0.0.1:" in errors[0]
    assert webhook.subjects() == ["test alert"]


def test_test_alert_without_receivers_says_how_to_configure_one(deployed, capsys):
    assert fullprocess.main([*deployed.args(), "--test-alert"]) == 1
    err = capsys.readouterr().err
    assert "no alert receiver is configured: set alert_webhook_url or alert_email_to" in err
    assert "Traceback" not in err


# --- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"alert_webhook_url": "hooks.example.com/x"}, "alert_webhook_url"),
        ({"alert_webhook_url": "ftp://example.com/x"}, "alert_webhook_url"),
        ({"alert_webhook_url": "http://example.com:port/x"}, "alert_webhook_url"),
        ({"alert_email_to": "team", "alert_smtp_host": "mail"}, "alert_email_to"),
        ({"alert_email_to": "a@example.com"}, "alert_smtp_host"),
        ({"alert_smtp_port": 70000}, "alert_smtp_port"),
        ({"alert_smtp_port": "25"}, "alert_smtp_port"),
        ({"alert_email_from": "a@x.com, b@x.com"}, "alert_email_from"),
        ({"alert_timeout_seconds": 0}, "alert_timeout_seconds"),
        ({"alert_no_success_hours": -1}, "alert_no_success_hours"),
    ],
)
def test_a_bad_alert_setting_names_its_key(deployed, settings, named):
    configure(deployed, **settings)
    with pytest.raises(ConfigError, match=f"'{named}'"):
        load_config(deployed.config_path)


def test_a_bad_webhook_url_is_not_repeated_in_the_error(deployed):
    configure(deployed, alert_webhook_url="hooks.example.com/services/T0/B0/secret-token")
    with pytest.raises(ConfigError, match="'alert_webhook_url' must be an http") as error:
        load_config(deployed.config_path)
    assert "secret-token" not in str(error.value)


def test_the_modules_pin_their_public_names():
    assert delivery.__all__ == [
        "AlertBudget",
        "Event",
        "deliver",
        "raise_alert",
        "raise_alerts",
        "send_test_alert",
    ]
    assert events.__all__ == [
        "after_run",
        "alert_live_changes",
        "leavers_event",
        "overdue_since",
        "run_events",
        "vulnerability_events",
    ]
    for module in (delivery, events, channels):
        assert all(hasattr(module, name) for name in module.__all__)


def test_a_top_of_the_list_that_did_not_leave_as_expected_is_alerted(diagnosed, webhook, mailbox):
    assert tick(diagnosed) == 0
    ranked = pd.read_csv(diagnosed.root / "models" / "riskranking.csv")
    both(diagnosed, webhook, mailbox)
    # The top 20, the riskiest, all stay (the rest of the list gets no outcome yet).
    top = ranked.head(20)[["corporation", *FEATURES]].assign(exited=0)
    top["lastmonth_activity"] += 1  # a new observation, not a repeat of the stored one
    diagnosed.write_input("outcomes.csv", top)
    assert tick(diagnosed) == 0
    (leavers,) = [body for body in webhook.bodies if body["kind"] == "leavers"]
    assert leavers["subject"].startswith("fewer leavers than expected")
    assert "the top 20: 0 of 20 left" in leavers["text"]
    assert tick(diagnosed) == 0  # the next run does not alert the same list again
    assert len([body for body in webhook.bodies if body["kind"] == "leavers"]) == 1


def test_a_dependency_with_a_known_vulnerability_is_alerted_once(diagnosed, webhook, mailbox):
    both(diagnosed, webhook, mailbox)
    path = diagnosed.root / "models" / "diagnostics.json"
    report = json.loads(path.read_text())
    report["vulnerabilities"] = {
        "vulnerable": [{"package": "urllib3", "installed": "2.0.0", "ids": ["PYSEC-1"]}]
    }
    path.write_text(json.dumps(report))
    assert tick(diagnosed) == 0
    assert tick(diagnosed) == 0
    found = [body for body in webhook.bodies if body["kind"] == "vulnerability"]
    assert len(found) == 1
    assert found[0]["subject"] == "known vulnerability in urllib3 2.0.0"
    assert "PYSEC-1" in found[0]["text"]
    assert "known vulnerability in urllib3 2.0.0" in mailbox.subjects()
