"""Train the attrition model on the ingested data and save it as `trainedmodel.pkl`.

The model is one scikit-learn Pipeline: median imputation with missing-value indicators, log1p for
the heavy-tailed counts, standard scaling and a logistic regression whose strength and class
weighting are chosen by stratified cross-validation on the training data alone.
"""

from __future__ import annotations

import logging
import pickle
import platform
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import sklearn
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from project import (
    FEATURES,
    MODEL_FILE,
    MODEL_METADATA_FILE,
    TARGET,
    Config,
    DataError,
    atomic_path,
    atomic_write_json,
    build_parser,
    read_ingestion_record,
    read_labelled_csv,
    run_cli,
    sha256_file,
    utc_now,
)

logger = logging.getLogger(__name__)

RANDOM_SEED = 0
PARAM_GRID = {
    "model__C": [0.001, 0.01, 0.1, 1.0, 10.0, 100.0],
    "model__class_weight": [None, "balanced"],
}
# Used when there are too few rows of a class to cross-validate (tiny practice files).
FALLBACK_PARAMS = {"model__C": 1.0, "model__class_weight": "balanced"}
MAX_FOLDS = 5


@dataclass
class TrainingResult:
    model: Pipeline
    metadata: dict
    model_path: Path

    @property
    def summary(self) -> str:
        cv = self.metadata["cross_validation"]
        params = ", ".join(f"{key}={value}" for key, value in cv["params"].items())
        score = (
            "no CV (too few rows)"
            if cv["f1_mean"] is None
            else (f"CV F1 {cv['f1_mean']:.3f} ± {cv['f1_std']:.3f} over {cv['folds']} folds")
        )
        rows = self.metadata["training_rows"]
        return (
            f"trained logistic regression ({params}) on {rows} rows, {score} -> {self.model_path}"
        )


def build_pipeline() -> Pipeline:
    """The untrained model: one object from raw feature columns to a probability of leaving."""
    return Pipeline(
        [
            ("impute", SimpleImputer(strategy="median", add_indicator=True)),
            ("log", FunctionTransformer(np.log1p, feature_names_out="one-to-one")),
            ("scale", StandardScaler()),
            ("model", LogisticRegression(max_iter=1000, random_state=RANDOM_SEED)),
        ]
    )


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


def fit_model(data: pd.DataFrame) -> tuple[Pipeline, dict]:
    """Choose the settings by cross-validated F1 and fit on all of `data`.

    Returns:
        (fitted pipeline, cross-validation summary).
    """
    features, target = data[list(FEATURES)], data[TARGET]
    folds = min(MAX_FOLDS, int(target.value_counts().min()))
    pipeline = build_pipeline()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if folds < 2:
            logger.warning("too few rows of one class to cross-validate; using default settings")
            pipeline.set_params(**FALLBACK_PARAMS).fit(features, target)
            return pipeline, _cv_summary(FALLBACK_PARAMS, None, None, 0)
        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=RANDOM_SEED)
        search = GridSearchCV(pipeline, PARAM_GRID, scoring="f1", cv=cv, error_score="raise")
        search.fit(features, target)
    best = search.best_index_
    std = float(search.cv_results_["std_test_score"][best])
    return search.best_estimator_, _cv_summary(search.best_params_, search.best_score_, std, folds)


def _cv_summary(params: dict, mean, std, folds: int) -> dict:
    return {
        "scoring": "f1",
        "folds": folds,
        "f1_mean": None if mean is None else round(float(mean), 6),
        "f1_std": None if std is None else round(float(std), 6),
        "params": {key.removeprefix("model__"): value for key, value in params.items()},
    }


def library_versions() -> dict:
    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "pandas": pd.__version__,
        "numpy": np.__version__,
    }


def save_model(model: Pipeline, metadata: dict, model_dir: Path) -> Path:
    """Write the model, then its metadata (which names the model's hash), each atomically."""
    model_path = model_dir / MODEL_FILE
    with atomic_path(model_path) as tmp_path, open(tmp_path, "wb") as handle:
        pickle.dump(model, handle, protocol=pickle.HIGHEST_PROTOCOL)
    metadata = {**metadata, "model_file": MODEL_FILE, "model_sha256": sha256_file(model_path)}
    atomic_write_json(model_dir / MODEL_METADATA_FILE, metadata)
    return model_path


def run(config: Config) -> TrainingResult:
    """Train on `finaldata.csv` and save the model with its metadata in `output_model_path`."""
    data_path = config.final_data_file
    if not data_path.exists():
        raise DataError(f"{data_path}: no ingested data; run ingestion.py first")
    data = read_labelled_csv(data_path)
    check_training_data(data, str(data_path))
    model, cv_summary = fit_model(data)
    record = read_ingestion_record(config.ingestion_record_file)
    metadata = {
        "trained_at": utc_now(),
        "training_rows": len(data),
        "exited_rate": round(float(data[TARGET].mean()), 6),
        "training_data": {"file": data_path.name, "sha256": sha256_file(data_path)},
        "training_files": [
            {"file": entry.file, "sha256": entry.sha256}
            for entry in record
            if entry.status == "ingested"
        ],
        "features": list(FEATURES),
        "cross_validation": cv_summary,
        "random_seed": RANDOM_SEED,
        "versions": library_versions(),
    }
    model_path = save_model(model, metadata, config.model_dir)
    return TrainingResult(model, metadata, model_path)


def main(argv: list[str] | None = None) -> int:
    args = build_parser(__file__, __doc__).parse_args(argv)
    return run_cli(args, run)


if __name__ == "__main__":
    sys.exit(main())
