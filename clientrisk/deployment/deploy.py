"""Deploy the trained model with its score and ingestion record, or roll back to an earlier one.

Each deployment is a new numbered version in `prod_deployment_path` with a manifest (model
SHA-256, score, training data hash, time); earlier ones are kept and `--rollback` goes back.
A model that fullprocess.py is still comparing with the live one cannot be deployed, nor one it
kept out (unless `--force`). Deployments and rollbacks take the lock fullprocess.py takes to
deploy, and are mirrored in the history database.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from clientrisk.atomicfiles import lock_is_held, read_json, sha256_file
from clientrisk.config import (
    METRICS_FILE,
    MODEL_FILE,
    MODEL_METADATA_FILE,
    RECORD_FILE,
    SCORE_FILE,
    TRAINING_SAMPLE_FILE,
    Config,
)
from clientrisk.deployment import modelstore
from clientrisk.history.database import open_history

logger = logging.getLogger(__name__)


@dataclass
class DeploymentResult:
    deployment: modelstore.Deployment
    action: str  # "deploy", "rollback" or "unchanged"
    previous: int | None

    @property
    def summary(self) -> str:
        live = self.deployment
        f1 = live.manifest.get("metrics", {}).get("f1")
        score = "" if f1 is None else f", F1 {f1:.3f}"
        was = modelstore.version_name(self.previous) if self.previous else "nothing"
        if self.action == "unchanged":
            return f"{live.label} is already live with this model and record; nothing to do"
        if self.action == "rollback":
            return f"rolled back to {live.label}{score} (was {was}) in {live.path.parent.parent}"
        return (
            f"deployed {live.label} (model {live.manifest['model_sha256'][:12]}{score},"
            f" was {was}) -> {live.path}"
        )


def collect_artifacts(config: Config):
    """The files to deploy and the manifest entries, after checking they belong together.

    Returns:
        (name -> source path, manifest fields).

    Raises:
        DeploymentError: an artifact is missing, or the score is for a different model.
    """
    model_dir = config.model_dir
    sources = {
        MODEL_FILE: model_dir / MODEL_FILE,
        MODEL_METADATA_FILE: model_dir / MODEL_METADATA_FILE,
        TRAINING_SAMPLE_FILE: model_dir / TRAINING_SAMPLE_FILE,
        SCORE_FILE: model_dir / SCORE_FILE,
        METRICS_FILE: model_dir / METRICS_FILE,
        RECORD_FILE: config.ingestion_record_file,
    }
    hints = {
        MODEL_FILE: "training.py",
        MODEL_METADATA_FILE: "training.py",
        TRAINING_SAMPLE_FILE: "training.py",
        SCORE_FILE: "scoring.py",
        METRICS_FILE: "scoring.py",
        RECORD_FILE: "ingestion.py",
    }
    for name, path in sources.items():
        if not path.is_file():
            raise modelstore.DeploymentError(f"{path}: not found; run {hints[name]} first")
    metadata = read_json(sources[MODEL_METADATA_FILE], "model metadata")
    metrics = read_json(sources[METRICS_FILE], "score metrics")
    model_sha256 = sha256_file(sources[MODEL_FILE])
    if metadata.get("model_sha256") != model_sha256:
        raise modelstore.DeploymentError(
            f"{sources[MODEL_FILE]}: does not match {MODEL_METADATA_FILE}; run training.py again"
        )
    if metrics.get("model_sha256") != model_sha256:
        raise modelstore.DeploymentError(
            f"{sources[METRICS_FILE]}: the score is for a different model; run scoring.py first"
        )
    manifest = {
        "model_sha256": model_sha256,
        "metrics": {key: value for key, value in metrics.items() if key != "model_sha256"},
        "trained_at": metadata.get("trained_at"),
        "trained_by": metadata.get("trained_by"),
        "training_rows": metadata.get("training_rows"),
        "from_batch": metadata.get("from_batch"),
        "through_batch": metadata.get("through_batch"),
        "cross_validation": metadata.get("cross_validation"),
        "family": metadata.get("family", "logistic"),
        "weighting": metadata.get("weighting"),
        "why": metadata.get("why"),
        "training_data_sha256": metadata.get("training_data", {}).get("sha256"),
        "ingestion_record_sha256": sha256_file(sources[RECORD_FILE]),
        "source": str(model_dir),
    }
    reference = (metadata.get("cross_validation") or {}).get("check_reference")
    if reference:
        manifest["check_reference"] = reference
    return sources, manifest


def check_not_held_back(config: Config, manifest: dict, force: bool) -> None:
    """Refuse a model that a fullprocess.py run is comparing with the live one, or kept out.

    Raises:
        DeploymentError: saying which run holds it back and how to override, if one may.
    """
    run = (manifest.get("trained_by") or {}).get("run")
    with open_history(config.history_location) as history:
        verdict = history.challenger_verdict(manifest["model_sha256"])
    model_file = config.model_dir / MODEL_FILE
    undecided = verdict is None or verdict[0] == "pending"
    if run is not None and undecided and lock_is_held(config.run_lock_file):
        raise modelstore.DeploymentError(
            f"{model_file}: fullprocess.py run {run} trained this model and is still"
            " comparing it with the live one; wait for its verdict"
        )
    if verdict is not None and verdict[0] == "kept out" and not force:
        raise modelstore.DeploymentError(
            f"{model_file}: run {verdict[2]} kept this model out ({verdict[1]});"
            " deploy it anyway with --force"
        )


def deploy_trained_model(
    config: Config,
    reason: str,
    *,
    expected_sha256: str | None = None,
    expected_live=False,
    force: bool = False,
    extra_manifest: dict | None = None,
) -> DeploymentResult:
    """Deploy what is in `output_model_path`, unless exactly that is live already.

    Args:
        expected_sha256: the model the caller trained; anything else there is refused.
        expected_live: the version the caller judged against (see modelstore.deploy).
        force: deploy a model that fullprocess.py kept out.
        extra_manifest: more to record in the manifest (such as the drift check's reference).
    """
    sources, manifest = collect_artifacts(config)
    manifest.update(extra_manifest or {})
    if expected_sha256 is not None and manifest["model_sha256"] != expected_sha256:
        raise modelstore.DeploymentError(
            f"{sources[MODEL_FILE]}: replaced by another model (SHA-256"
            f" {manifest['model_sha256'][:12]}…) while this run was comparing its own"
        )
    if expected_sha256 is None:
        check_not_held_back(config, manifest, force)
    previous = modelstore.current_version(config.deploy_dir)
    logger.debug(
        "model %s from %s; live: %s",
        manifest["model_sha256"][:12],
        config.model_dir,
        modelstore.version_name(previous) if previous else "nothing",
    )
    if previous is not None:
        live = modelstore.get_deployment(config.deploy_dir, previous)
        same_model = live.manifest.get("model_sha256") == manifest["model_sha256"]
        same_record = (
            live.manifest.get("ingestion_record_sha256") == manifest["ingestion_record_sha256"]
        )
        if same_model and same_record:
            return DeploymentResult(live, "unchanged", previous)
    deployment = modelstore.deploy(
        config.deploy_dir,
        sources,
        manifest,
        reason,
        expected_live=expected_live,
        keep_versions=config.settings["keep_versions"],
    )
    mirror_history(config)
    return DeploymentResult(deployment, "deploy", previous)


def mirror_history(config: Config) -> None:
    """Copy the deployment folder's history into the history database."""
    with open_history(config.history_location) as history:
        added = history.sync_deployments(modelstore.read_history(config.deploy_dir))
    logger.debug("%d change(s) of the live deployment mirrored in the history", added)


def roll_back(config: Config, to_version: int | None, reason: str) -> DeploymentResult:
    previous = modelstore.current_version(config.deploy_dir)
    deployment = modelstore.rollback(config.deploy_dir, to_version, reason)
    mirror_history(config)
    return DeploymentResult(deployment, "rollback", previous)


def run(
    config: Config, rollback: str | None = None, reason: str | None = None, force: bool = False
):
    """Deploy the trained model, or with `rollback` ("previous" or a version) go back; either
    way, alert about the change (deployment.py run by hand)."""
    if rollback is None:
        result = deploy_trained_model(config, reason or "manual deployment", force=force)
    else:
        to_version = None
        if rollback != "previous":
            number = rollback.removeprefix("v")
            if not number.isdigit():
                raise modelstore.DeploymentError(
                    f"--rollback: '{rollback}' is not a version number"
                )
            to_version = int(number)
        result = roll_back(config, to_version, reason or "")
    from clientrisk.alerts import events

    with open_history(config.history_location) as history:
        events.alert_live_changes(config, history)
    return result
