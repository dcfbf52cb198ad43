"""Raising an alert: once per event, to every configured receiver, within a time limit.

`raise_alert` is the one entry point: the pipeline's events (events.py), the realized outcomes
of past call lists and the dependency check all call it with a key naming their event (such as
`drift:run12` or `vulnerable:requests==2.31.0`). The history database remembers every key, so
an event is alerted once however many ticks see it. Each receiver is tried again with
exponential back-off, all within `alert_timeout_seconds` for the whole run (an `AlertBudget`);
a receiver that fails is recorded (in the history, the run's record and the log) and shown on
the dashboard, and never fails the run. An alert is recorded even when no receiver is
configured: the dashboard then is where it is read.
"""

from __future__ import annotations

import logging
import threading
import time

from clientrisk.alerts.channels import DeliveryFailed, configured_channels

__all__ = ["AlertBudget", "Event", "deliver", "raise_alert", "raise_alerts", "send_test_alert"]

logger = logging.getLogger(__name__)

FIRST_RETRY_SECONDS = 0.5  # then 1, 2, 4, ... while the budget lasts


class AlertBudget:
    """The seconds left for delivering alerts in one run (`alert_timeout_seconds` in all)."""

    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())


def _attempt(channel, message: dict, seconds: float) -> None:
    """One try, in a thread of its own: a receiver that holds the connection open past
    `seconds` (its socket timeout restarts with every byte it trickles) is left behind, never
    waited for."""
    outcome: list = []

    def send():
        try:
            channel.send(message, seconds)
            outcome.append(None)
        except DeliveryFailed as error:
            outcome.append(error)
        except Exception as error:  # a bug in a channel must not become the run's failure
            outcome.append(DeliveryFailed(f"{channel.describe()}: unexpected {error!r}"))

    worker = threading.Thread(target=send, name=f"alert-{channel.name}", daemon=True)
    worker.start()
    worker.join(seconds)
    if not outcome:
        raise DeliveryFailed(f"{channel.describe()}: no answer within {seconds:.1f} s")
    if outcome[0] is not None:
        raise outcome[0]


def deliver(channel, message: dict, budget: AlertBudget) -> str | None:
    """Send `message` through `channel`, trying again with back-off while `budget` lasts.

    Returns:
        None once delivered, else why not (one line, the last failure and the tries).
    """
    wait, tries, last = FIRST_RETRY_SECONDS, 0, None
    while True:
        seconds = budget.left()
        if seconds <= 0:
            break
        tries += 1
        try:
            _attempt(channel, message, seconds)
            return None
        except DeliveryFailed as error:
            last = error
            if error.permanent or budget.left() <= wait:
                break
            time.sleep(wait)
            wait *= 2
    if last is None:
        return f"{channel.describe()}: not tried, the alerts' time limit was used up"
    return f"{last} ({tries} {'try' if tries == 1 else 'tries'})"


def raise_alert(config, history, event_key: str, subject: str, text: str, **fields) -> dict | None:
    """Alert about an event once: record it under `event_key`, deliver it to every configured
    receiver, and record what each made of it. Never raises for a failed delivery.

    Args:
        config: the loaded config (its settings name the receivers and the time limit).
        history: the open history database (it remembers the keys already alerted).
        event_key: names the event, the same for every tick that sees it.
        subject, text: one line, and what a reader needs to act.
        fields: `run` (the run's id) and `kind` (the event's kind; by default the key up to its
            first colon).

    Returns:
        What happened ({key, subject, delivered, failures}), or None when the event was
        alerted before.
    """
    outcomes = raise_alerts(config, history, [Event(event_key, subject, text, **fields)])
    return outcomes[0] if outcomes else None


class Event:
    """Something to alert about: its key, a one-line subject and the text."""

    def __init__(self, key: str, subject: str, text: str, run=None, kind: str | None = None):
        self.key, self.subject, self.text, self.run = key, subject, text, run
        self.kind = kind or key.partition(":")[0]

    def message(self, config) -> dict:
        return {
            "subject": self.subject,
            "text": self.text,
            "event": self.key,
            "kind": self.kind,
            "run": self.run,
            "project": config.path.name,
        }


def raise_alerts(config, history, events, budget: AlertBudget | None = None) -> list[dict]:
    """Raise the alerts of `events` not raised before, all within one time limit.

    Each receiver takes the new alerts in order in a thread of its own, so one that does not
    answer delays none of the others, and the caller waits `alert_timeout_seconds` at most.

    Returns:
        What happened to each new alert ({key, subject, delivered, failures}).
    """
    budget = budget or AlertBudget(config.settings["alert_timeout_seconds"])
    channels = configured_channels(config.settings)
    names = [channel.name for channel in channels]
    new = [
        event
        for event in events
        if history.claim_alert(event.key, event.run, event.subject, event.text, names)
    ]
    if not new:
        return []
    for event in new:
        logger.warning("alert: %s", event.subject)
    messages = [event.message(config) for event in new]
    problems = _deliver_everywhere(channels, messages, budget)
    outcomes = []
    for index, event in enumerate(new):
        failures = {
            name: found[index] for name, found in problems.items() if found[index] is not None
        }
        delivered = [name for name in names if name not in failures]
        for problem in failures.values():
            logger.warning("alert not delivered: %s", problem)
        history.finish_alert(event.key, delivered, failures)
        outcomes.append(
            {"key": event.key, "subject": event.subject, "delivered": delivered,
             "failures": failures}
        )  # fmt: skip
    return outcomes


def _deliver_everywhere(channels, messages: list[dict], budget: AlertBudget) -> dict:
    """{channel name: [None or why not, for each message]}, each channel in a thread."""
    problems = {
        channel.name: [f"{channel.describe()}: not tried, the alerts' time limit was used up"]
        * len(messages)
        for channel in channels
    }

    def work(channel):
        for index, message in enumerate(messages):
            problems[channel.name][index] = deliver(channel, message, budget)

    workers = [
        threading.Thread(target=work, args=(channel,), name=f"alerts-{channel.name}", daemon=True)
        for channel in channels
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(budget.left() + 0.5)  # each try ends by the deadline (see _attempt)
    return {name: list(found) for name, found in problems.items()}


def send_test_alert(config) -> tuple[list[str], dict]:
    """Send a test message to every configured receiver (never recorded as an event).

    Returns:
        (the receivers that took it, {receiver: why not} for the others).
    """
    event = Event(
        "test",
        "test alert",
        f"A test message from fullprocess.py --test-alert ({config.path.name}):"
        " alerts reach this receiver.",
    )
    channels = configured_channels(config.settings)
    budget = AlertBudget(config.settings["alert_timeout_seconds"])
    problems = _deliver_everywhere(channels, [event.message(config)], budget)
    delivered = [c.describe() for c in channels if problems[c.name][0] is None]
    failures = {name: found[0] for name, found in problems.items() if found[0] is not None}
    return delivered, failures
