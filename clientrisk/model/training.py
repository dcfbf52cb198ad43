"""Train the attrition model on the ingested data and save it as `trainedmodel.pkl`.

The model is one scikit-learn Pipeline: gaps filled without inventing a trend (`features.py`: last
month from last year and back, medians for the rest) with missing-value indicators; features
on a logarithmic scale for the heavy-tailed counts, with the activity trend and dormancy
(`project.client_features`); cubic splines on those; standard scaling and a logistic regression.
Its strength and class weighting are chosen by stratified cross-validation on average precision,
which rewards a ranking whose top holds the clients who really leave (the managers call from the
top); its probabilities are then calibrated (sigmoid) and its decision threshold tuned for F1,
both by cross-validation. Everything is chosen on the training data alone.

Two other families serve markets an additive model cannot hold (`FAMILIES`): the same regression
with the products of pairs of features (`interactions`), and gradient boosting of trees
(`boosting`, scikit-learn's HistGradientBoostingClassifier), calibrated and tuned the same way.
A retrain chooses among them by how well each predicts the newest rows (retraining.py); a
training by hand fits the logistic regression unless told otherwise. Rows may carry weights
that fall with their age (`age_weights`), so that a market that changes little by little is
learnt mostly from its recent rows.

Beside the model, the out-of-fold predictions on its own training rows say how far its log loss
exceeds what its probabilities expect on its own market (`check_reference`): the calibrated
drift check's reference, from every training row rather than a few hundred held-out ones.
"""

from __future__ import annotations

import logging
import pickle
import platform
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import sklearn
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import (
    FixedThresholdClassifier,
    GridSearchCV,
    StratifiedKFold,
    cross_val_predict,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from threadpoolctl import threadpool_limits

from clientrisk.atomicfiles import atomic_path, atomic_write_json, sha256_file, write_csv
from clientrisk.config import (
    MODEL_FILE,
    MODEL_METADATA_FILE,
    SETTINGS,
    TRAINING_SAMPLE_FILE,
    Config,
)
from clientrisk.data import batchstore
from clientrisk.data.clientcsv import FEATURES, TARGET
from clientrisk.errors import DataError
from clientrisk.model.blockfit import fit_logistic
from clientrisk.model.features import ActivityImputer, Interactions, SplineBasis, client_features
from clientrisk.monitoring.drift import log_loss_excess
from clientrisk.timestamps import utc_now

logger = logging.getLogger(__name__)

RANDOM_SEED = 0
PARAM_GRID = {
    "model__C": [0.01, 0.1, 1.0, 10.0],
    "model__class_weight": [None, "balanced"],
}
# Used when there are too few rows of a class to cross-validate (tiny practice files).
FALLBACK_PARAMS = {"model__C": 1.0, "model__class_weight": "balanced"}
MAX_FOLDS = 5
# Newton steps with the exact Hessian: a few passes over the rows for a few dozen coefficients,
# where L-BFGS took hundreds when the penalty is weak.
SOLVER = "newton-cholesky"
SPLINE_KNOTS = 5
# Splines for the logarithms and the trend; the flags after them (dormancy, gaps) pass as they are.
CURVED_COLUMNS = 4
# Rows transformed at a time when the data is large: bounds the memory besides the design matrix.
CHUNK_ROWS = 250_000
# From this many rows the final regression is fitted a block of rows at a time (blockfit.py):
# scikit-learn's solver would weigh a second copy of the whole design matrix (1.3 GB more for
# ten million rows); below it, that copy is small and scikit-learn's solver is faster.
BLOCKWISE_FROM_ROWS = 2_000_000
SELECTION_SCORING = "average_precision"
# Calibration and threshold tuning cross-validate inside each fold: they need this many per class.
MIN_CLASS_ROWS_TO_CALIBRATE = 25
# Above this many rows, settings, calibration and threshold are chosen on a stratified sample of
# this size and only the final regression sees every row (config setting `tuning_rows`).
TUNING_ROWS = SETTINGS["tuning_rows"].default
# Rows of the training data kept with the model, as the reference for data-drift checks.
REFERENCE_SAMPLE_ROWS = 10_000
# The model families, simplest first, and how the record names them.
FAMILIES = {
    "logistic": "logistic regression",
    "interactions": "logistic regression with interactions",
    "boosting": "gradient boosting",
}
# Gradient boosting of shallow trees, slowly, with its own regularisation: no grid search (its
# calibration and threshold are still cross-validated).
BOOSTING_PARAMS = {
    "max_iter": 100,
    "learning_rate": 0.1,
    "max_leaf_nodes": 15,
    "min_samples_leaf": 40,
    "l2_regularization": 1.0,
    "early_stopping": False,
}


@dataclass
class TrainingResult:
    model: Pipeline
    metadata: dict
    model_path: Path

    @property
    def summary(self) -> str:
        cv = self.metadata["cross_validation"]
        params = ", ".join(f"{key}={value}" for key, value in cv["params"].items())
        if cv["folds"] == 0:
            score = "no cross-validation (too few rows)"
        else:
            score = f"CV average precision {cv['score_mean']:.3f} ± {cv['score_std']:.3f}"
        if cv["calibrated"]:
            params += f"; calibrated, threshold {cv['threshold']:.2f}"
            score += f", CV F1 {cv['f1_mean']:.3f}"
        rows = self.metadata["training_rows"]
        family = FAMILIES[self.metadata.get("family", "logistic")]
        weighting = self.metadata.get("weighting") or {}
        if weighting.get("half_life_rows"):
            rows = f"{rows} rows (half-life {weighting['half_life_rows']:,} rows)"
        else:
            rows = f"{rows} rows"
        return f"trained {family} ({params}) on {rows}, {score} -> {self.model_path}"


def build_pipeline(classifier=None, family: str = "logistic") -> Pipeline:
    """The untrained model: one object from raw feature columns to a probability of leaving.

    Args:
        classifier: the last step; the family's own estimator when not given.
        family: one of FAMILIES.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; use one of {', '.join(FAMILIES)}")
    steps = [
        ("impute", ActivityImputer()),
        ("features", FunctionTransformer(client_features)),
    ]
    if family == "boosting":
        if classifier is None:
            classifier = boosting_classifier()
        return Pipeline([*steps, ("model", classifier)])
    if classifier is None:
        classifier = LogisticRegression(solver=SOLVER, max_iter=1000, random_state=RANDOM_SEED)
    if family == "interactions":
        steps.append(("interact", Interactions(columns=CURVED_COLUMNS)))
    return Pipeline(
        [
            *steps,
            ("spline", SplineBasis(columns=CURVED_COLUMNS, knots=SPLINE_KNOTS)),
            ("scale", StandardScaler()),
            ("model", classifier),
        ]
    )


def boosting_classifier() -> HistGradientBoostingClassifier:
    return HistGradientBoostingClassifier(**BOOSTING_PARAMS, random_state=RANDOM_SEED)


def age_weights(batch_of_rows, half_life_rows: float | None) -> np.ndarray | None:
    """Weights that halve every `half_life_rows` rows of age: a row's age is the number of rows
    in later batches (the newest batch's rows weigh 1). None without a half-life (no decay)."""
    if not half_life_rows:
        return None
    batch_of_rows = np.asarray(batch_of_rows)
    seqs, counts = np.unique(batch_of_rows, return_counts=True)
    later = np.cumsum(counts[::-1])[::-1] - counts
    ages = later[np.searchsorted(seqs, batch_of_rows)]
    return 0.5 ** (ages / float(half_life_rows))


def regression_params(params: dict) -> dict:
    """Grid-search parameters of the pipeline's last step, as the regression's own keywords."""
    return {key.removeprefix("model__"): value for key, value in params.items()}


def base_classifier(params: dict, family: str = "logistic"):
    """The family's uncalibrated classifier with the chosen `params`."""
    if family == "boosting":
        return boosting_classifier()
    return LogisticRegression(
        solver=SOLVER, max_iter=1000, random_state=RANDOM_SEED, **regression_params(params)
    )


def calibrate(base, design, target, cv, weights=None):
    """`base` fitted on every row, sigmoid-calibrated on its out-of-fold predictions, and the
    threshold from which those calibrated predictions give the best F1.

    Class weighting ranks the rare leavers better but inflates their probabilities; calibration
    gives the client managers probabilities that mean what they say, and the tuned threshold
    turns them into the best 0/1 prediction for F1. The same out-of-fold predictions say how far
    the model's log loss exceeds what its probabilities expect on its own market
    (`check_reference`), from every training row.

    Returns:
        (the classifier with its threshold, the threshold, the F1 there, the check's reference).
    """
    fit_weights = {} if weights is None else {"sample_weight": weights}
    calibrated = CalibratedClassifierCV(base, method="sigmoid", cv=cv, ensemble=False)
    calibrated.fit(design, target, **fit_weights)
    # The predictions the calibration was fitted on: the same folds, the same fits.
    decision = cross_val_predict(
        base, design, target, cv=cv, method="decision_function", params=fit_weights or None
    )
    sigmoid = calibrated.calibrated_classifiers_[0].calibrators[0]
    probabilities = sigmoid.predict(decision)
    dataset = f"out-of-fold predictions on {len(probabilities)} training rows"
    return _with_threshold(calibrated, design, target, probabilities, dataset, weights)


def _with_threshold(calibrated, design, target, probabilities, dataset: str, weights=None):
    """`calibrated` with the threshold of the best F1 on `probabilities` (its predictions of
    `target`), that F1, and the drift check's reference from the same predictions, each row
    counting with its weight (rows weighed by age: the threshold and the reference are those of
    the market the model learnt most from).

    Returns:
        (the classifier with its threshold, the threshold, the F1 there, the check's reference).
    """
    target = np.asarray(target)
    threshold, f1 = best_f1_threshold(target, probabilities, weights)
    tuned = FixedThresholdClassifier(FrozenEstimator(calibrated), threshold=threshold)
    tuned.fit(design, target)
    excess, variance = log_loss_excess(target, probabilities, weights)
    if weights is not None:
        dataset += " weighed by age"
    reference = {
        "excess": round(excess, 6),
        "variance": variance,
        "rows": len(probabilities),
        "dataset": dataset,
    }
    return tuned, threshold, f1, reference


def check_training_data(data: pd.DataFrame, source: str) -> None:
    """Raise DataError when `data` cannot train a classifier."""
    if data.empty:
        raise DataError(f"{source}: no rows to train on")
    classes = data[TARGET].nunique()
    if classes < 2:
        raise DataError(f"{source}: only one class of {TARGET} ({data[TARGET].iloc[0]}), need both")
    empty = [name for name in FEATURES if data[name].isna().all()]
    if empty:
        raise DataError(f"{source}: column(s) with no values at all: {', '.join(empty)}")


def fit_model(
    data: pd.DataFrame,
    tuning_rows: int = TUNING_ROWS,
    family: str = "logistic",
    weights: np.ndarray | None = None,
) -> tuple[Pipeline, dict]:
    """Choose the settings by cross-validation and fit on all of `data`.

    With more than `tuning_rows` rows, the settings, the calibration and the threshold are chosen
    on a stratified sample of that many rows and only the final regression sees every row
    (`fit_large`), provided the sample holds MIN_CLASS_ROWS_TO_CALIBRATE rows of each outcome.
    With fewer than MIN_CLASS_ROWS_TO_CALIBRATE rows of a class (tiny practice
    files) the model is not calibrated and keeps the 0.5 threshold; with fewer than 2 it is not
    cross-validated.

    Args:
        family: one of FAMILIES.
        weights: one weight per row (`age_weights`), or None for equal weights.

    Returns:
        (fitted pipeline, cross-validation summary).
    """
    features, target = data[list(FEATURES)], data[TARGET]
    smallest_class = int(target.value_counts().min())
    # The sample must hold enough of the rarer outcome to calibrate on; when it would not (very
    # rare leavers, or a tiny `tuning_rows`), the settings are chosen on every row.
    # (Gradient boosting learns from every row at any size: its trees cost little per row.)
    large = family != "boosting" and len(data) > tuning_rows
    if large and smallest_class * tuning_rows / len(data) >= MIN_CLASS_ROWS_TO_CALIBRATE:
        return fit_large(data, tuning_rows, family, weights)
    folds = min(MAX_FOLDS, smallest_class)
    fit_params = {"model__sample_weight": weights} if weights is not None else {}
    # BLAS and OpenMP threads fight over small matrices: on 2 cores, fitting took up to 8 times
    # longer with them than with one, and one is faster up to hundreds of thousands of rows.
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if folds < 2:
            logger.warning("too few rows of one class to cross-validate; using default settings")
            params = {} if family == "boosting" else FALLBACK_PARAMS
            model = build_pipeline(family=family).set_params(**params)
            return model.fit(features, target, **fit_params), _cv_summary(params, folds=0)
        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=RANDOM_SEED)
        if family == "boosting":
            params, score, score_std = {}, None, None
        else:
            search = GridSearchCV(
                build_pipeline(family=family), PARAM_GRID, scoring=SELECTION_SCORING, cv=cv
            )
            search.fit(features, target, **fit_params)
            params, score = search.best_params_, search.best_score_
            score_std = float(search.cv_results_["std_test_score"][search.best_index_])
            logger.debug(
                "chose %s by %d-fold cross-validation (average precision %.3f ± %.3f)",
                regression_params(params),
                folds,
                score,
                score_std,
            )
        summary = _cv_summary(params, folds, score, score_std)
        if smallest_class < MIN_CLASS_ROWS_TO_CALIBRATE:
            untuned = build_pipeline(base_classifier(params, family), family)
            return _untuned(untuned, params, features, target, summary, family, fit_params)
        prep = build_pipeline(family=family)[:-1]
        design = prep.fit_transform(features)
        tuned, threshold, f1, reference = calibrate(
            base_classifier(params, family), design, target, cv, weights
        )
    summary.update(
        calibrated=True,
        threshold=round(threshold, 6),
        f1_mean=round(f1, 6),
        check_reference=reference,
    )
    return Pipeline([*prep.steps, ("model", tuned)]), summary


def fit_large(
    data: pd.DataFrame, tuning_rows: int, family: str = "logistic", weights=None
) -> tuple[Pipeline, dict]:
    """The same model for data too large to cross-validate whole: bounded cost at any size.

    The gap fill, the splines' range and the scaling are learnt from every row, a block of rows
    at a time, into one float32 design matrix (the only copy of the data this adds). Strength
    and class weighting are chosen by cross-validation on a stratified sample of `tuning_rows`
    rows; the regression is then fitted on every row. Its probabilities are calibrated and its
    threshold tuned on the sample: a regression of a few dozen coefficients fitted on far more
    rows barely knows the sample better than new rows, so no cross-validation is needed there.
    """
    features, target = data[list(FEATURES)], data[TARGET].to_numpy()
    prep, design = _design_matrix(features, family)
    sample = stratified_sample(target, tuning_rows, RANDOM_SEED)
    tuning_design, tuning_target = design[sample].astype(float), target[sample]
    tuning_weights = None if weights is None else weights[sample]
    fit_weights = {} if weights is None else {"sample_weight": tuning_weights}
    folds = min(MAX_FOLDS, int(np.bincount(tuning_target).min()))
    grid = {key.removeprefix("model__"): values for key, values in PARAM_GRID.items()}
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=RANDOM_SEED)
        regression = LogisticRegression(solver=SOLVER, max_iter=1000, random_state=RANDOM_SEED)
        search = GridSearchCV(regression, grid, scoring=SELECTION_SCORING, cv=cv)
        search.fit(tuning_design, tuning_target, **fit_weights)
        best, score = search.best_params_, search.best_score_
        score_std = float(search.cv_results_["std_test_score"][search.best_index_])
        final_params = {"solver": SOLVER, "max_iter": 1000, "random_state": RANDOM_SEED}
        if len(target) >= BLOCKWISE_FROM_ROWS:
            final = fit_logistic(design, target, **final_params, **best, sample_weight=weights)
        else:
            final = LogisticRegression(**final_params, **best).fit(
                design, target, sample_weight=weights
            )
        del design
        params = {f"model__{key}": value for key, value in best.items()}
        calibrated = CalibratedClassifierCV(FrozenEstimator(final), method="sigmoid")
        # The regression is fitted already: the weights are for the calibration alone, as meant.
        warnings.filterwarnings("ignore", message="Since FrozenEstimator does not appear")
        calibrated.fit(tuning_design, tuning_target, **fit_weights)
        probabilities = calibrated.predict_proba(tuning_design)[:, 1]
        # A regression of a few dozen coefficients fitted on far more rows than the sample: its
        # excess on the sample is what it shows on new rows of its market.
        tuned, threshold, f1, reference = _with_threshold(
            calibrated,
            tuning_design,
            tuning_target,
            probabilities,
            f"{len(sample)} training rows (a stratified sample)",
            tuning_weights,
        )
    summary = _cv_summary(params, folds, score, score_std)
    summary.update(
        calibrated=True,
        threshold=round(threshold, 6),
        f1_mean=round(f1, 6),
        tuning_rows=len(sample),
        check_reference=reference,
    )
    logger.debug("chose %s on %d of %d rows, fitted on all", best, len(sample), len(target))
    return Pipeline([*prep.steps, ("model", tuned)]), summary


def stratified_sample(target: np.ndarray, size: int, seed: int) -> np.ndarray:
    """`size` row numbers, sorted, with each outcome in its share of `target` (the remainder of
    the rounding to the outcomes with the largest fractions). Memory for one class's row numbers
    at a time, where scikit-learn's splitter permutes and sorts every row several times (2 GB
    more for ten million rows)."""
    rng = np.random.default_rng(seed)
    counts = np.bincount(target, minlength=2)
    exact = counts * size / len(target)
    quotas = np.floor(exact).astype(int)
    for outcome in np.argsort(quotas - exact)[: size - quotas.sum()]:
        quotas[outcome] += 1
    chosen = [
        np.flatnonzero(target == outcome)[rng.choice(counts[outcome], quota, replace=False)]
        for outcome, quota in enumerate(quotas)
        if quota
    ]
    return np.sort(np.concatenate(chosen))


def best_f1_threshold(
    truth: np.ndarray, probabilities: np.ndarray, weights: np.ndarray | None = None
) -> tuple[float, float]:
    """The probability from which flagging a client gives the best F1 on these rows, and that F1
    (each row counting with its weight, when given).

    Every distinct probability is a candidate: rows sorted by probability, the counts of true and
    false alarms above each cut are running sums.
    """
    order = np.argsort(-probabilities, kind="stable")
    counts = np.ones(len(order)) if weights is None else np.asarray(weights, float)[order]
    ranked, hits = probabilities[order], truth[order].astype(float) * counts
    true_alarms = np.cumsum(hits)
    flagged = np.cumsum(counts)
    last_of_value = np.r_[ranked[1:] != ranked[:-1], True]
    f1 = 2 * true_alarms / (flagged + hits.sum())
    f1[~last_of_value] = -1
    best = int(np.argmax(f1))
    return float(ranked[best]), float(f1[best])


def _design_matrix(features: pd.DataFrame, family: str = "logistic") -> tuple[Pipeline, np.ndarray]:
    """The fitted preprocessing steps of the pipeline and every row through them (float32)."""
    prep = build_pipeline(family=family)[:-1]
    steps = [step for _, step in prep.steps]
    impute, shapes, (spline, scale) = steps[0], steps[1:-2], steps[-2:]
    impute.fit(features)
    blocks = range(0, len(features), CHUNK_ROWS)
    for index, shape in enumerate(shapes):  # each learns what it needs from the first block
        part = impute.transform(features.iloc[:CHUNK_ROWS])
        for earlier in shapes[:index]:
            part = earlier.transform(part)
        shape.fit(part)

    def shaped(start):
        part = impute.transform(features.iloc[start : start + CHUNK_ROWS])
        for shape in shapes:
            part = shape.transform(part)
        return part

    ranges = [
        np.vstack([np.nanmin(part, axis=0), np.nanmax(part, axis=0)])
        for part in map(shaped, blocks)
    ]
    spline.fit(np.vstack(ranges))
    design = None
    for start in blocks:
        part = spline.transform(shaped(start))
        if design is None:
            design = np.empty((len(features), part.shape[1]), dtype=np.float32)
        design[start : start + len(part)] = part
        scale.partial_fit(part)
    for start in blocks:
        block = slice(start, start + CHUNK_ROWS)
        design[block] = scale.transform(design[block])
    return prep, design


def _untuned(model: Pipeline, params: dict, features, target, summary: dict, family, fit_params):
    """A model too small to calibrate and tune: unless balanced weights already centre its
    probabilities, it flags a client whose probability is above the share who left (at 0.5,
    a model of rare leavers would hardly ever flag one)."""
    if params.get("model__class_weight") == "balanced":
        return model.fit(features, target, **fit_params), summary
    rate = round(float(target.mean()), 6)
    fixed = FixedThresholdClassifier(base_classifier(params, family), threshold=rate)
    summary.update(threshold=rate)
    return build_pipeline(fixed, family).fit(features, target, **fit_params), summary


def _cv_summary(params: dict, folds: int, score=None, score_std=None) -> dict:
    return {
        "folds": folds,
        "params": regression_params(params),
        "scoring": SELECTION_SCORING,
        "score_mean": None if score is None else round(float(score), 6),
        "score_std": None if score_std is None else round(float(score_std), 6),
        "calibrated": False,
        "threshold": 0.5,
        "f1_mean": None,
    }


def library_versions() -> dict:
    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "pandas": pd.__version__,
        "numpy": np.__version__,
    }


def reference_sample(data: pd.DataFrame) -> pd.DataFrame:
    """A seeded sample of the training features: what later data is compared with for drift."""
    rows = min(len(data), REFERENCE_SAMPLE_ROWS)
    return data[list(FEATURES)].sample(n=rows, random_state=RANDOM_SEED).sort_index()


def save_model(model: Pipeline, sample: pd.DataFrame, metadata: dict, model_dir: Path):
    """Write the model, its reference sample and last its metadata (naming both hashes).

    Each file is written atomically; a reader that finds the metadata finds what it names.

    Returns:
        (the model's path, the metadata as written).
    """
    model_path = model_dir / MODEL_FILE
    with atomic_path(model_path) as tmp_path, open(tmp_path, "wb") as handle:
        pickle.dump(model, handle, protocol=pickle.HIGHEST_PROTOCOL)
    write_csv(sample, model_dir / TRAINING_SAMPLE_FILE)
    metadata = {
        **metadata,
        "model_file": MODEL_FILE,
        "model_sha256": sha256_file(model_path),
        "training_sample": {"file": TRAINING_SAMPLE_FILE, "rows": len(sample)},
    }
    atomic_write_json(model_dir / MODEL_METADATA_FILE, metadata)
    return model_path, metadata


def run(
    config: Config,
    holdout: pd.DataFrame | None = None,
    run_id: int | None = None,
    from_batch: int | None = None,
    half_life_rows: int | None = None,
    family: str = "logistic",
    why: str | None = None,
) -> TrainingResult:
    """Train on the stored rows and save the model with its metadata in `output_model_path`.

    Args:
        holdout: rows to leave out of training, kept to compare this model with another.
        run_id: the fullprocess.py run training a challenger (None: trained by hand).
        from_batch: learn only from this batch on (a window of the newest market); default all.
        half_life_rows: weigh rows down by age, halving every this many rows (None: no decay).
        family: the model family (FAMILIES).
        why: why this family and weighting, for the record.
    """
    data, batches = batchstore.stored_outcomes(config)
    from_batch = from_batch or batches[0].seq
    data = data[(data[batchstore.BATCH_COLUMN] >= from_batch).to_numpy()].reset_index(drop=True)
    held_out = 0
    if holdout is not None:
        kept = batchstore.without_rows(data, holdout)
        held_out, data = len(data) - len(kept), kept
    check_training_data(data, str(config.ingested_dir))
    logger.debug("fitting on %d rows (%d held out)", len(data), held_out)
    weights = age_weights(data[batchstore.BATCH_COLUMN].to_numpy(), half_life_rows)
    model, cv_summary = fit_model(data, config.settings["tuning_rows"], family, weights)
    metadata = {
        "trained_at": utc_now(),
        "trained_by": {"run": run_id} if run_id is not None else {"run": None, "by": "hand"},
        "training_rows": len(data),
        "held_out_rows": held_out,
        "exited_rate": round(float(data[TARGET].mean()), 6),
        "from_batch": from_batch,
        "through_batch": batches[-1].seq,
        "training_data": {
            "batches": len(batches),
            "sha256": batchstore.fingerprint(batches),
        },
        "training_files": [
            {"batch": batch.seq, "file": batch.source, "sha256": batch.sha256}
            for batch in batches
            if batch.seq >= from_batch
        ],
        "features": list(FEATURES),
        "family": family,
        "weighting": {
            "half_life_rows": half_life_rows,
            "effective_rows": round(float(weights.sum()), 1) if weights is not None else len(data),
        },
        "why": why or "every row weighing the same, as at the start or by hand",
        "cross_validation": cv_summary,
        "random_seed": RANDOM_SEED,
        "versions": library_versions(),
    }
    model_path, metadata = save_model(model, reference_sample(data), metadata, config.model_dir)
    logger.debug("wrote %s (SHA-256 %s)", model_path, metadata["model_sha256"])
    return TrainingResult(model, metadata, model_path)
