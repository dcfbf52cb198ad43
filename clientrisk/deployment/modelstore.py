"""The deployed-model store: versioned deployments, the live pointer, the history and safe loading.

Layout of `prod_deployment_path`:

    versions/v0001/        one folder per deployment, never changed once complete:
                           the model, its metadata, its score and metrics, the ingestion record
                           and manifest.json (version, checksums, score, training data, time)
    current -> versions/v0002
                           the live deployment; switched with one atomic rename
    trainedmodel.pkl, latestscore.txt, ingestedfiles.txt
                           links through `current`, where the course's scripts look for them
    deploymenthistory.txt  one tab-separated line per change of what is live
    checkedfiles.txt       input files fullprocess.py has judged against the live model

A deployment is assembled in a hidden folder, its copies checked against the checksums of their
sources, renamed into `versions/` when whole, and only then made live, so a crash at any moment
leaves the previous deployment live and intact; the top-level links exist before `current`
first switches, so the live deployment is whole at every instant. Versions beyond
`keep_versions` are removed, never the live one or the one a rollback would restore. Only the
standard library is imported here, the slower parts of it where they are used, because a cron
tick that finds nothing to do reads the live version; unpickling a model imports scikit-learn.
"""

from __future__ import annotations

import logging
import os
from collections import namedtuple
from pathlib import Path

from clientrisk.atomicfiles import (
    atomic_write_json,
    atomic_write_text,
    exclusive_lock,
    fsync_dir,
    fsync_file,
    read_json,
    remove_leftovers,
    sha256_file,
    staging_folder,
    temp_name,
)
from clientrisk.config import MODEL_FILE, RECORD_FILE, SCORE_FILE
from clientrisk.errors import PipelineError
from clientrisk.timestamps import utc_now

logger = logging.getLogger(__name__)

VERSIONS_DIR = "versions"
CURRENT_LINK = "current"
MANIFEST_FILE = "manifest.json"
HISTORY_FILE = "deploymenthistory.txt"
LOCK_FILE = ".deployment.lock"
# Paths at the top of the deployment folder that always show the live deployment.
LIVE_LINKS = (MODEL_FILE, SCORE_FILE, RECORD_FILE)
HISTORY_FIELDS = ("time", "action", "from_version", "to_version", "model_sha256", "f1", "reason")
HISTORY_HEADER = "# What was live when: one tab-separated line per change of the live deployment."


class DeploymentError(PipelineError):
    """No usable deployment, or one whose files do not match its manifest."""


class LiveChanged(DeploymentError):
    """What is live changed since the caller looked (a rollback or deployment meanwhile)."""


class Deployment(namedtuple("Deployment", "version path manifest")):
    """A complete deployment: its number, its folder and its manifest."""

    __slots__ = ()

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def label(self) -> str:
        return version_name(self.version)

    @property
    def through_batch(self) -> int:
        """The newest batch the model was trained on (0 for a model from before batches)."""
        return self.manifest.get("through_batch") or 0


def version_name(version: int) -> str:
    return f"v{version:04d}"


def parse_version(name: str) -> int | None:
    """The number in a version folder name such as `v0003`, or None for anything else."""
    if len(name) > 1 and name[0] == "v" and name[1:].isdigit():
        return int(name[1:])
    return None


def list_versions(deploy_dir: Path) -> list[int]:
    """Complete deployments (those with a manifest), oldest first."""
    versions_dir = Path(deploy_dir) / VERSIONS_DIR
    if not versions_dir.is_dir():
        return []
    found = ((parse_version(path.name), path) for path in versions_dir.iterdir() if path.is_dir())
    return sorted(v for v, path in found if v is not None and (path / MANIFEST_FILE).is_file())


def current_version(deploy_dir: Path) -> int | None:
    """The live version number, read from the `current` link alone (cheap enough per request)."""
    try:
        target = os.readlink(Path(deploy_dir) / CURRENT_LINK)
    except OSError:
        return None
    return parse_version(Path(target).name)


def get_deployment(deploy_dir: Path, version: int) -> Deployment:
    path = Path(deploy_dir) / VERSIONS_DIR / version_name(version)
    manifest = read_json(path / MANIFEST_FILE, f"manifest of deployment {version_name(version)}")
    return Deployment(version, path, manifest)


def current_deployment(deploy_dir: Path) -> Deployment:
    """The live deployment.

    Raises:
        DeploymentError: nothing is deployed.
    """
    version = current_version(deploy_dir)
    if version is None:
        raise DeploymentError(f"{deploy_dir}: no model is deployed; run deployment.py first")
    return get_deployment(deploy_dir, version)


def verify_files(deployment: Deployment) -> None:
    """Check every file of a deployment against the SHA-256 in its manifest.

    Raises:
        DeploymentError: a file is missing or was changed after deployment.
    """
    for name, expected in deployment.manifest.get("files", {}).items():
        verify_file(deployment.path / name, expected)


def verify_file(path: Path, expected_sha256: str) -> None:
    try:
        actual = sha256_file(path)
    except FileNotFoundError:
        raise DeploymentError(f"{path}: file is missing") from None
    if actual != expected_sha256:
        raise DeploymentError(
            f"{path}: SHA-256 {actual[:12]}… does not match the recorded {expected_sha256[:12]}…;"
            " refusing to use a file that changed after it was written"
        )


def deployed_file(deployment: Deployment, name: str) -> Path | None:
    """A file of a deployment, checked against its manifest; None if the version has no such file.

    Raises:
        DeploymentError: the file was changed after deployment.
    """
    expected = deployment.manifest.get("files", {}).get(name)
    if expected is None:
        return None
    verify_file(deployment.path / name, expected)
    return deployment.path / name


def load_model(path: Path, expected_sha256: str):
    """Unpickle a model only if its bytes are the ones recorded when it was saved.

    Raises:
        DeploymentError: checksum mismatch, or a file that does not unpickle.
    """
    from clientrisk.model.pickled import load_model_file

    refuse_writable_by_others([path.parent, path])
    verify_file(path, expected_sha256)
    try:
        with open(path, "rb") as handle:
            model = load_model_file(handle)
    except Exception as error:  # unpickling can raise nearly anything
        raise DeploymentError(f"{path}: cannot load model: {error}") from None
    problem = _not_a_fitted_model(model)
    if problem:
        raise DeploymentError(f"{path}: {problem}; not served")
    return model


def refuse_writable_by_others(paths) -> None:
    """Refuse to unpickle from a place that others than its owner may write to: whoever can
    write a pickle (and the checksum beside it) can run code in whatever loads it.

    Raises:
        DeploymentError: naming the file or folder, its mode and what to do.
    """
    import stat

    for path in paths:
        try:
            mode = os.stat(path).st_mode
        except OSError as error:
            raise DeploymentError(f"{path}: cannot be examined: {error.strerror}") from None
        if mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise DeploymentError(
                f"{path}: writable by others than its owner (mode {stat.filemode(mode)}); a"
                f" model there is not loaded, as a changed one could run any code (chmod go-w)"
            )


def _not_a_fitted_model(model) -> str | None:
    """Why `model` is not a fitted classifier that gives probabilities, or None."""
    if not callable(getattr(model, "predict_proba", None)):
        return f"a {type(model).__name__}, not a classifier that gives probabilities"
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(model)
    except (NotFittedError, TypeError) as error:
        return f"not a fitted model ({str(error).splitlines()[0][:120]})"
    return None


def load_deployed_model(deploy_dir: Path):
    """The live model, checked against its manifest.

    Returns:
        (model, deployment).
    """
    deployment = current_deployment(deploy_dir)
    refuse_writable_by_others([Path(deploy_dir), Path(deploy_dir) / VERSIONS_DIR])
    model = load_model(deployment.model_path, deployment.manifest["model_sha256"])
    return model, deployment


# --- changing what is live -----------------------------------------------------------------------


def deploy(
    deploy_dir: Path,
    files: dict[str, Path],
    manifest: dict,
    reason: str,
    *,
    expected_live=False,
    keep_versions: int | None = None,
) -> Deployment:
    """Copy `files` into a new version, check the copies, write its manifest and make it live.

    Args:
        deploy_dir: the deployment folder.
        files: name in the deployment -> source path; must include the model.
        manifest: what to record besides the version, time and file checksums.
        reason: why, for the history.
        expected_live: the version the caller judged against (None: nothing live); when given,
            the deployment is refused if another one is live by now.
        keep_versions: remove older versions beyond this many (never the live one or the one a
            rollback would restore); None keeps them all.

    Raises:
        LiveChanged: `expected_live` is no longer live.
        DeploymentError: a copy does not match its source.
    """
    deploy_dir = Path(deploy_dir)
    versions_dir = deploy_dir / VERSIONS_DIR
    versions_dir.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(deploy_dir / LOCK_FILE):
        _reconcile_history(deploy_dir)
        remove_leftovers([versions_dir, deploy_dir])
        previous = current_version(deploy_dir)
        if expected_live is not False and previous != expected_live:
            raise LiveChanged(
                f"{deploy_dir}: {_name_or_nothing(previous)} is live, not"
                f" {_name_or_nothing(expected_live)} as when this model was judged"
            )
        version = _next_version(versions_dir)
        staging = versions_dir / temp_name(version_name(version))
        final = versions_dir / version_name(version)
        with staging_folder(staging):
            checksums = _copy_checked(files, staging)
            _check_against_manifest(checksums, manifest, files)
            manifest = {
                **manifest,
                "version": version,
                "deployed_at": utc_now(),
                "reason": reason,
                "files": checksums,
            }
            atomic_write_json(staging / MANIFEST_FILE, manifest)
            os.rename(staging, final)
        fsync_dir(versions_dir)
        deployment = Deployment(version, final, manifest)
        verify_files(deployment)
        _make_live(deploy_dir, deployment, "deploy", previous, reason)
        if keep_versions is not None:
            prune_versions(deploy_dir, keep_versions)
    return deployment


def _copy_checked(files: dict[str, Path], staging: Path) -> dict[str, str]:
    """Copy each file into `staging` and check the copy against its source's checksum.

    Returns:
        name -> SHA-256.
    """
    import shutil

    checksums = {}
    for name, source in files.items():
        expected = sha256_file(source)
        shutil.copyfile(source, staging / name)
        fsync_file(staging / name)
        copied = sha256_file(staging / name)
        if copied != expected:
            raise DeploymentError(
                f"{source}: changed while it was being copied (SHA-256 {expected[:12]}… before,"
                f" {copied[:12]}… copied); nothing was deployed"
            )
        checksums[name] = copied
    return checksums


# Manifest entries that name the checksum of a deployed file, hashed before the deployment lock
# was taken: the copies must still be those files.
MANIFEST_CHECKSUMS = {"model_sha256": MODEL_FILE, "ingestion_record_sha256": RECORD_FILE}


def _check_against_manifest(checksums: dict, manifest: dict, files: dict) -> None:
    """Refuse copies that are not the files the manifest describes (replaced meanwhile).

    Raises:
        DeploymentError: naming the file and both checksums; nothing is deployed.
    """
    for key, name in MANIFEST_CHECKSUMS.items():
        recorded, copied = manifest.get(key), checksums.get(name)
        if recorded is not None and copied is not None and recorded != copied:
            raise DeploymentError(
                f"{files[name]}: replaced while it was being deployed (the manifest was made for"
                f" SHA-256 {recorded[:12]}…, the copy is {copied[:12]}…); nothing was deployed"
            )


def _name_or_nothing(version) -> str:
    return "nothing" if version is None else version_name(version)


def prune_versions(deploy_dir: Path, keep: int) -> list[int]:
    """Remove the oldest versions beyond `keep`; never the live one or the one a rollback
    would restore.

    The caller holds the deployment lock.

    Returns:
        The versions removed.
    """
    import shutil

    live = current_version(deploy_dir)
    versions = list_versions(deploy_dir)
    protected = {live, None if live is None else rollback_target(deploy_dir, live)}
    oldest = versions[: max(0, len(versions) - keep)]
    removed = [version for version in oldest if version not in protected]
    for version in removed:
        path = Path(deploy_dir) / VERSIONS_DIR / version_name(version)
        # Renamed first, so that a kill half-way leaves a leftover, never half a version.
        doomed = path.with_name(temp_name(path.name))
        os.rename(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        logger.info("%s: removed (only the newest %d versions are kept)", path, keep)
    return removed


def rollback_target(deploy_dir: Path, live: int) -> int | None:
    """The version `--rollback` would make live: the one that was live when the live version
    was deployed (so that rolling back again goes further back), else the newest one before it.
    """
    versions = set(list_versions(deploy_dir))
    for change in reversed(read_history(deploy_dir)):
        if change.get("action") == "deploy" and change.get("to_version") == version_name(live):
            previous = parse_version(change.get("from_version") or "")
            if previous in versions and previous != live:
                return previous
            break
    earlier = [version for version in sorted(versions) if version < live]
    return earlier[-1] if earlier else None


def rollback(deploy_dir: Path, to_version: int | None = None, reason: str = "") -> Deployment:
    """Make an earlier deployment live again: `to_version`, or the one that was live before the
    live one was deployed (see `rollback_target`).

    Raises:
        DeploymentError: no such earlier deployment, or its files fail their checksums.
    """
    deploy_dir = Path(deploy_dir)
    with exclusive_lock(deploy_dir / LOCK_FILE):
        _reconcile_history(deploy_dir)
        live = current_version(deploy_dir)
        if live is None:
            raise DeploymentError(f"{deploy_dir}: nothing is deployed, so nothing to roll back")
        versions = list_versions(deploy_dir)
        if to_version is None:
            to_version = rollback_target(deploy_dir, live)
            if to_version is None:
                raise DeploymentError(
                    f"{deploy_dir}: {version_name(live)} is the oldest deployment; nothing earlier"
                )
        if to_version not in versions:
            raise DeploymentError(
                f"{deploy_dir}: no complete deployment {version_name(to_version)}"
            )
        if to_version == live:
            raise DeploymentError(f"{deploy_dir}: {version_name(live)} is already live")
        target = get_deployment(deploy_dir, to_version)
        verify_files(target)
        reason = reason or f"rollback from {version_name(live)}"
        _make_live(deploy_dir, target, "rollback", live, reason)
    return target


def _make_live(deploy_dir: Path, deployment: Deployment, action: str, previous, reason) -> None:
    """Point `current` at `deployment` in one rename, then record the change.

    The top-level links lead through `current`, so they are made first: from the instant
    `current` exists, every path the course's scripts use shows the live deployment.
    """
    _ensure_live_links(deploy_dir)
    staging_link = deploy_dir / temp_name(CURRENT_LINK)
    staging_link.unlink(missing_ok=True)
    os.symlink(Path(VERSIONS_DIR) / version_name(deployment.version), staging_link)
    os.replace(staging_link, deploy_dir / CURRENT_LINK)
    fsync_dir(deploy_dir)
    _append_history(deploy_dir, action, previous, deployment, reason)
    logger.info(
        "%s: %s live (was %s): %s",
        deploy_dir,
        deployment.label,
        version_name(previous) if previous else "nothing",
        reason,
    )


def _ensure_live_links(deploy_dir: Path) -> None:
    for name in LIVE_LINKS:
        link = deploy_dir / name
        target = Path(CURRENT_LINK) / name
        if link.is_symlink() and Path(os.readlink(link)) == target:
            continue
        staging = deploy_dir / temp_name(name)
        staging.unlink(missing_ok=True)
        os.symlink(target, staging)
        os.replace(staging, link)
    fsync_dir(deploy_dir)


def _next_version(versions_dir: Path) -> int:
    numbers = [parse_version(path.name) for path in versions_dir.iterdir()]
    return max([number for number in numbers if number is not None], default=0) + 1


# --- history -------------------------------------------------------------------------------------


def read_history(deploy_dir: Path) -> list[dict]:
    """The deployment history, oldest first, as dicts with HISTORY_FIELDS."""
    path = Path(deploy_dir) / HISTORY_FILE
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    rows = [line.split("\t") for line in lines if line.strip() and line[0] != "#"]
    return [dict(zip(rows[0], cells, strict=False)) for cells in rows[1:]] if rows else []


def _append_history(
    deploy_dir: Path, action: str, previous, deployment: Deployment, reason
) -> None:
    history = read_history(deploy_dir)
    score = deployment.manifest.get("metrics", {}).get("f1")
    history.append(
        {
            "time": utc_now(),
            "action": action,
            "from_version": version_name(previous) if previous else "-",
            "to_version": deployment.label,
            "model_sha256": deployment.manifest.get("model_sha256", ""),
            "f1": "" if score is None else f"{score:.6f}",
            "reason": " ".join(str(reason).split()),
        }
    )
    lines = [HISTORY_HEADER, "\t".join(HISTORY_FIELDS)]
    lines += ["\t".join(str(row.get(name, "")) for name in HISTORY_FIELDS) for row in history]
    atomic_write_text(Path(deploy_dir) / HISTORY_FILE, "\n".join(lines) + "\n")


def mend_history(deploy_dir: Path) -> None:
    """Record a switch of the live deployment whose history line a killed process never wrote."""
    if current_version(deploy_dir) is None:
        return
    with exclusive_lock(Path(deploy_dir) / LOCK_FILE):
        _reconcile_history(deploy_dir)


def _reconcile_history(deploy_dir: Path) -> None:
    """Record a live switch whose history line was lost when a process died in between."""
    live = current_version(deploy_dir)
    history = read_history(deploy_dir)
    recorded = history[-1]["to_version"] if history else None
    if live is None or recorded == version_name(live):
        return
    deployment = get_deployment(deploy_dir, live)
    previous = parse_version(recorded) if recorded else None
    _append_history(
        deploy_dir, "recovered", previous, deployment, "switch recorded after an interrupted run"
    )
