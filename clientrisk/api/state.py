"""What the requests of one API process share: the live model (reloaded when a deployment changes
what is live), caches of what was computed from files, and the config.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from flask import current_app
from werkzeug.exceptions import HTTPException

from clientrisk.api.dashboard import DashboardCache
from clientrisk.api.metrics import Metrics
from clientrisk.api.sessions import SessionStore
from clientrisk.config import Config
from clientrisk.deployment import modelstore
from clientrisk.errors import PipelineError

logger = logging.getLogger(__name__)


class Unavailable(HTTPException):
    code = 503
    description = "not available"


@dataclass(frozen=True)
class LiveModel:
    version: int
    model: object
    deployment: modelstore.Deployment


class ModelWatcher:
    """The deployed model, reloaded when the `current` link points at another version.

    Each request reads the link (one readlink); only a change loads and verifies the new model.
    Deployments are complete before they become live, so a reload never sees half a model.
    """

    def __init__(self, deploy_dir: Path):
        self.deploy_dir = deploy_dir
        self._live: LiveModel | None = None
        self._lock = threading.Lock()

    def get(self) -> LiveModel:
        live = self._live
        if live is not None and live.version == modelstore.current_version(self.deploy_dir):
            return live
        with self._lock:
            live = self._live
            if live is None or live.version != modelstore.current_version(self.deploy_dir):
                model, deployment = modelstore.load_deployed_model(self.deploy_dir)
                live = LiveModel(deployment.version, model, deployment)
                self._live = live
                logger.info("serving model %s", deployment.label)
            return live


class FileCache:
    """What was computed from a file, kept until the file or the `tag` (a model version) changes."""

    def __init__(self):
        self._key = None
        self._value = None
        self._lock = threading.Lock()

    def get(self, path: Path, compute, tag=None):
        stat = path.stat()
        key = (stat.st_mtime_ns, stat.st_size, tag)
        if key != self._key:
            with self._lock:
                if key != self._key:
                    self._value = compute(path)
                    self._key = key
        return self._value


@dataclass
class ApiState:
    config: Config
    token: str | None
    models: ModelWatcher
    diagnostics: FileCache
    scores: FileCache
    openapi: dict
    dashboard: DashboardCache
    metrics: Metrics
    sessions: SessionStore


def state() -> ApiState:
    return current_app.extensions["risk_api"]


def live_model() -> LiveModel:
    try:
        return state().models.get()
    except PipelineError as error:
        logger.warning("no model to serve: %s", error)
        raise Unavailable("no valid model is deployed; run deployment.py") from None
