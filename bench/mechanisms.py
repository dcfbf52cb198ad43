"""What each hand-written mechanism kept for speed saves beside the library's way, same run.

Four mechanisms, each beside what it replaces, on rows from the data generator's process
(`ingestion_cost.client_frame`: six-letter codes, all clients distinct, seeded), at each of
--sizes stored rows (default 10,000 and 1,000,000):

* row keys (`clientrisk/data/rowkeys.py`) beside pandas' `duplicated` / `drop_duplicates`:
  `ingestion.py` (first ingestion of every file) and `ranking.py` (on the deployed project),
  each a whole process, the library way by `rowkeys.duplicated` replaced with pandas' (the
  input files hold no repeats: the case row keys are made for); and the calls alone on the
  stored rows read back (all distinct; a sixth sent again; each client's latest row, as the
  call list finds it);
* the spline basis (`SplineBasis`) beside scikit-learn's `SplineTransformer(knots="uniform",
  extrapolation="linear")` on the same columns (a `ColumnTransformer` passing the flags
  through): `training.py` as a whole process both ways, the two trained models' probabilities
  on the test rows, and fit + transform and transform alone (with the largest difference of the
  two bases, on the rows and on rows beyond the fitted range);
* the quiet tick's stamp (`clientrisk/pipeline/quiettick.py`): `python fullprocess.py` with
  nothing new, as cron runs it (no option, the config from RISK_CONFIG), on a deployed project,
  with the stamp in place and with it removed before the run (the full decision runs, and
  leaves the stamp again), beside `python -c pass`;
* the block-wise fit (`clientrisk/model/blockfit.py`) beside scikit-learn's `LogisticRegression`
  (newton-cholesky, the solver training uses, and lbfgs, each at its default tolerance and at
  1e-8) on the same float32 design matrix as `training.py` builds it (settings chosen as it
  does, on a stratified sample), at each of --fit-sizes rows (default 1, 2 and 3 million):
  each fit in its own process with one BLAS thread, as training fits; its time, the process's
  peak resident memory and how much of it the fit added above the loaded matrix; how far its
  objective is above the lowest found, and its probabilities and coefficients against the
  block-wise fit.

Every measurement runs in a child process (the parent stays small, so a child's peak memory is
its own); whole processes alternate between the two ways, --repeats times each (the quiet tick
--ticks times), and the tables give medians and the ratio of the library's way to the
mechanism, measured in the same run. Bytecode caching is left on, as under cron. The whole
benchmark takes nine to ten minutes on two cores; --quick (10,000 rows everywhere) under two.

Usage: python bench/mechanisms.py [--quick] [--sizes 10000 1000000]
       [--fit-sizes 1000000 2000000 3000000] [--repeats 3] [--ticks 11]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import runpy
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(PROJECT_DIR), str(PROJECT_DIR / "bench"), str(PROJECT_DIR / "scripts")]

ENV = {
    **{k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "RISK_CONFIG")},
    "RISK_API_URL": "http://127.0.0.1:9",  # no API in the scratch projects
}
WAYS = ("mechanism", "library")
BENCH_SEED = 19


# --- the library's ways ----------------------------------------------------------------------


def pandas_duplicated(frame, columns, keep: str = "first"):
    """`rowkeys.duplicated` done by pandas alone."""
    return frame.duplicated(subset=list(columns), keep=keep).to_numpy()


def library_spline_basis(columns: int = 4, knots: int = 5):
    """`SplineBasis(columns, knots)` made of scikit-learn's parts."""
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import SplineTransformer

    splines = SplineTransformer(n_knots=knots, degree=3, knots="uniform", extrapolation="linear")
    return ColumnTransformer([("spline", splines, list(range(columns)))], remainder="passthrough")


def use_library_way(mechanism: str) -> None:
    """Put the library's way in place of `mechanism` for the rest of this process."""
    if mechanism == "rowkeys":
        from clientrisk.data import rowkeys

        rowkeys.duplicated = pandas_duplicated  # drop_duplicates goes through it too
    elif mechanism == "spline":
        from clientrisk.model import training

        training.SplineBasis = library_spline_basis
    else:
        raise SystemExit(f"no library way for {mechanism}")


# --- child processes -------------------------------------------------------------------------


def child_run_script(way: str, script: str, *args: str) -> None:
    """Run a step script as `python script args` does, with the library's way if `way` names
    a mechanism (otherwise "mechanism")."""
    if way != "mechanism":
        use_library_way(way)
    sys.argv = [str(PROJECT_DIR / script), *args]
    sys.path[0] = str(PROJECT_DIR)  # as for a script run from the project folder
    runpy.run_path(sys.argv[0], run_name="__main__")


def child_make_project(rows: str, root: str) -> None:
    from ingestion_cost import client_frame, make_project

    import generate_data

    rows, root = int(rows), Path(root)
    make_project(root, rows)
    (root / "extra.csv").unlink()
    test = client_frame(2000, seed=rows + 1)
    generate_data.write_csv(test, root / "testdata" / "testdata.csv")


def _medians(calls: dict, argument, repeats: int) -> dict:
    """Median seconds of each call on `argument`, the calls alternating."""
    seconds = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            started = time.perf_counter()
            call(argument)
            seconds[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in seconds.items()}


def child_time_rowkeys(config_path: str, repeats: str) -> None:
    """The row keys' calls beside pandas' on the stored rows with an outcome."""
    import numpy as np
    import pandas as pd

    from clientrisk.config import load_config
    from clientrisk.data import batchstore, rowkeys
    from clientrisk.data.clientcsv import COLUMNS, ID_COLUMN

    config = load_config(config_path)
    seqs = sorted(batchstore.stored_batch_folders(config.ingested_dir))
    rows = batchstore.read_rows(config.ingested_dir, seqs)
    again = rows.sample(frac=0.2, random_state=BENCH_SEED)
    resent = pd.concat([rows, again], ignore_index=True)
    columns = list(COLUMNS)
    cases = {
        "drop_duplicates, all distinct": (
            rows,
            lambda frame: rowkeys.drop_duplicates(frame, columns),
            lambda frame: frame.drop_duplicates(subset=columns, ignore_index=True),
        ),
        "drop_duplicates, a sixth sent again": (
            resent,
            lambda frame: rowkeys.drop_duplicates(frame, columns),
            lambda frame: frame.drop_duplicates(subset=columns, ignore_index=True),
        ),
        "latest row of each client": (
            resent,
            lambda frame: rowkeys.duplicated(frame, [ID_COLUMN], keep="last"),
            lambda frame: pandas_duplicated(frame, [ID_COLUMN], keep="last"),
        ),
    }
    out = {}
    for name, (frame, by_keys, by_pandas) in cases.items():
        found, expected = by_keys(frame), by_pandas(frame)
        same = (
            found.equals(expected)
            if isinstance(found, pd.DataFrame)
            else bool(np.array_equal(found, expected))
        )
        if not same:
            raise SystemExit(f"row keys and pandas disagree: {name}")
        times = _medians({"mechanism": by_keys, "library": by_pandas}, frame, int(repeats))
        out[name] = {**times, "rows": len(frame)}
    print(json.dumps(out))


def child_time_spline(rows: str, repeats: str) -> None:
    """SplineBasis beside SplineTransformer on the features the model's splines see."""
    import numpy as np
    from ingestion_cost import client_frame

    from clientrisk.data.clientcsv import FEATURES
    from clientrisk.model import training
    from clientrisk.model.features import SplineBasis

    rows = int(rows)
    frame = client_frame(rows, seed=rows + BENCH_SEED)[list(FEATURES)]
    shaped = training.build_pipeline()[:2].fit_transform(frame)
    columns, knots = training.CURVED_COLUMNS, training.SPLINE_KNOTS
    # Beyond the fitted range on both sides, where the bases extrapolate.
    beyond = shaped[:2000].copy()
    low, high = shaped[:, :columns].min(axis=0), shaped[:, :columns].max(axis=0)
    beyond[:1000, :columns] = low - (high - low) * np.linspace(0.01, 0.5, 1000)[:, None]
    beyond[1000:, :columns] = high + (high - low) * np.linspace(0.01, 0.5, 1000)[:, None]
    mechanism = SplineBasis(columns=columns, knots=knots).fit(shaped)
    library = library_spline_basis(columns, knots).fit(shaped)
    differences = {
        name: float(np.abs(mechanism.transform(x) - library.transform(x)).max())
        for name, x in (("inside", shaped), ("beyond", beyond))
    }
    # Fitted on every row (as in cross-validation) and transforming them; transforming alone is
    # what predictions pay, and training's design matrix (its basis is fitted on the ranges).
    fitted = _medians(
        {
            "mechanism": SplineBasis(columns=columns, knots=knots).fit_transform,
            "library": library_spline_basis(columns, knots).fit_transform,
        },
        shaped,
        int(repeats),
    )
    alone = _medians(
        {"mechanism": mechanism.transform, "library": library.transform}, shaped, int(repeats)
    )
    times = {"fit_transform": fitted, "transform": alone}
    print(json.dumps({**times, "max_difference": differences, "shape": list(shaped.shape)}))


def child_compare_models(config_path: str, mechanism_model: str, library_model: str) -> None:
    """How the models trained both ways differ on the test rows."""
    import pickle

    import numpy as np

    from clientrisk.config import load_config
    from clientrisk.data.clientcsv import FEATURES, read_labelled_csv

    test = read_labelled_csv(load_config(config_path).test_data_file)[list(FEATURES)]
    models = []
    for path in (mechanism_model, library_model):
        with open(path, "rb") as handle:
            models.append(pickle.load(handle))
    probabilities = [model.predict_proba(test)[:, 1] for model in models]
    flags = [model.predict(test) for model in models]
    print(
        json.dumps(
            {
                "test_rows": len(test),
                "max_probability_difference": float(np.abs(np.subtract(*probabilities)).max()),
                "flags_differing": int((flags[0] != flags[1]).sum()),
            }
        )
    )


def child_make_design(rows: str, folder: str) -> None:
    """The design matrix training builds from `rows` clients, and the settings it would choose
    on its stratified sample (as `training.fit_large`)."""
    import warnings

    import numpy as np
    from ingestion_cost import client_frame
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from threadpoolctl import threadpool_limits

    from clientrisk.data.clientcsv import FEATURES, TARGET
    from clientrisk.model import training

    rows, folder = int(rows), Path(folder)
    frame = client_frame(rows, seed=rows + BENCH_SEED)
    target = frame[TARGET].to_numpy()
    _, design = training._design_matrix(frame[list(FEATURES)])
    del frame
    if rows > training.TUNING_ROWS:
        sample = training.stratified_sample(target, training.TUNING_ROWS, training.RANDOM_SEED)
    else:
        sample = np.arange(rows)
    folds = min(training.MAX_FOLDS, int(np.bincount(target[sample]).min()))
    grid = {key.removeprefix("model__"): values for key, values in training.PARAM_GRID.items()}
    regression = LogisticRegression(
        solver=training.SOLVER, max_iter=1000, random_state=training.RANDOM_SEED
    )
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=training.RANDOM_SEED)
    search = GridSearchCV(regression, grid, scoring=training.SELECTION_SCORING, cv=cv)
    with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(design[sample].astype(float), target[sample])
    np.save(folder / "design.npy", design)
    np.save(folder / "target.npy", target)
    (folder / "params.json").write_text(json.dumps(search.best_params_))
    print(json.dumps({"design_mb": design.nbytes / 2**20, "params": search.best_params_}))


def _memory_mb(field: str) -> float:
    """This process's VmRSS or VmHWM (its own peak: reset by exec, unlike ru_maxrss)."""
    status = Path("/proc/self/status").read_text()
    return int(status.split(f"{field}:")[1].split()[0]) / 1024


# The fits compared: the block-wise fit, then scikit-learn's solvers (a tolerance after the colon;
# without one, scikit-learn's default, 1e-4, as training.py fits below BLOCKWISE_FROM_ROWS).
FITS = ("blockwise", "newton-cholesky", "newton-cholesky:1e-8", "lbfgs", "lbfgs:1e-8")


def child_fit(fit: str, folder: str) -> None:
    """One fit of the final regression on the whole design matrix."""
    import warnings

    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    from clientrisk.model import training
    from clientrisk.model.blockfit import fit_logistic

    folder = Path(folder)
    design, target = np.load(folder / "design.npy"), np.load(folder / "target.npy")
    params = json.loads((folder / "params.json").read_text())
    final = {"max_iter": 1000, "random_state": training.RANDOM_SEED, **params}
    solver, _, tolerance = fit.partition(":")
    if tolerance:
        final["tol"] = float(tolerance)
    loaded = _memory_mb("VmRSS")
    with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        started = time.perf_counter()
        if solver == "blockwise":
            model = fit_logistic(design, target, solver=training.SOLVER, **final)
        else:
            model = LogisticRegression(solver=solver, **final).fit(design, target)
        seconds = time.perf_counter() - started
    peak = _memory_mb("VmHWM")
    np.save(folder / f"coef-{fit}.npy", np.r_[model.coef_.ravel(), model.intercept_])
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_mb": peak,
                "fit_mb": peak - loaded,
                "iterations": int(model.n_iter_.max()),
            }
        )
    )


def child_compare_fits(folder: str, *fits: str) -> None:
    """How far each fit's objective is above the lowest found, and how its probabilities and
    coefficients differ from the block-wise fit's."""
    import numpy as np
    from sklearn.utils.class_weight import compute_class_weight

    folder = Path(folder)
    design = np.load(folder / "design.npy", mmap_mode="r")
    target = np.load(folder / "target.npy")
    params = json.loads((folder / "params.json").read_text())
    weight = compute_class_weight(params["class_weight"], classes=np.array([0, 1]), y=target)
    coefs = {fit: np.load(folder / f"coef-{fit}.npy") for fit in fits}
    # scikit-learn's objective over C: the weighted log loss summed, plus the penalty over C.
    objective = {
        fit: 0.5 / params["C"] * float(coef[:-1] @ coef[:-1]) for fit, coef in coefs.items()
    }
    probabilities = {fit: [] for fit in fits}
    for start in range(0, len(design), 250_000):
        block = np.asarray(design[start : start + 250_000], dtype=float)
        truth = target[start : start + 250_000]
        for fit, coef in coefs.items():
            margin = block @ coef[:-1] + coef[-1]
            loss = np.logaddexp(0.0, margin) - truth * margin
            objective[fit] += float(weight[truth] @ loss)
            probabilities[fit].append(1 / (1 + np.exp(-margin)))
    lowest = min(objective.values())
    reference = np.concatenate(probabilities["blockwise"])
    out = {}
    for fit in fits:
        difference = np.abs(np.concatenate(probabilities[fit]) - reference)
        out[fit] = {
            "objective_above": (objective[fit] - lowest) / lowest,
            "probability_max": float(difference.max()),
            "probability_p99": float(np.quantile(difference, 0.99)),
            "coef": float(np.abs(coefs[fit] - coefs["blockwise"]).max()),
        }
    print(json.dumps(out))


CHILDREN = {
    "--run": child_run_script,
    "--make-project": child_make_project,
    "--time-rowkeys": child_time_rowkeys,
    "--time-spline": child_time_spline,
    "--compare-models": child_compare_models,
    "--make-design": child_make_design,
    "--fit": child_fit,
    "--compare-fits": child_compare_fits,
}


# --- the parent ------------------------------------------------------------------------------


def measured(command: list[str], env: dict | None = None) -> dict:
    """Wall seconds and peak resident MB of one child process (from wait4), and its output."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env or ENV, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        output, errors = out.read(), err.read()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(command)} failed ({code}):\n{errors[-3000:]}")
    return {"seconds": seconds, "peak_mb": usage.ru_maxrss / 1024, "out": output}


def child(name: str, *args) -> dict:
    """Run a child of this script: the JSON it printed last (its wall time and peak under
    "process")."""
    result = measured([sys.executable, __file__, name, *map(str, args)])
    lines = result.pop("out").strip().splitlines()
    return {**(json.loads(lines[-1]) if lines else {}), "process": result}


def alternating(commands: dict, repeats: int, before=None, after=None) -> dict:
    """Median wall seconds and peak MB of each command, run in turn `repeats` times each;
    `before(name, command)` may change a command, `after(name)` runs after it."""
    runs = {name: [] for name in commands}
    for _ in range(repeats):
        for name, command in commands.items():
            runs[name].append(measured(before(name, command) if before else command))
            if after is not None:
                after(name)
    return {
        name: {
            "seconds": statistics.median(run["seconds"] for run in done),
            "peak_mb": statistics.median(run["peak_mb"] for run in done),
        }
        for name, done in runs.items()
    }


def script_runs(mechanism: str, script: str, config: Path) -> dict:
    return {
        way: [
            *(sys.executable, __file__, "--run", mechanism if way == "library" else way),
            *(script, "--config", str(config)),
        ]
        for way in WAYS
    }


def fresh_copy(pristine: Path, scratch: Path):
    """A `before` that points each run's --config at a fresh copy of the pristine project."""
    count = itertools.count()

    def prepare(way: str, command: list[str]) -> list[str]:
        copy = scratch / f"copy-{next(count)}"
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.copytree(pristine, copy)
        return [*command[:-1], str(copy / "config.json")]

    return prepare


def quiet_ticks(config: Path, ticks: int) -> dict:
    """`python fullprocess.py` with nothing new: with its stamp, and with the stamp removed."""
    env = {**ENV, "RISK_CONFIG": str(config)}
    stamp = config.parent / f".{config.name}.quiet"
    tick = [sys.executable, str(PROJECT_DIR / "fullprocess.py")]
    empty = [sys.executable, "-c", "pass"]
    measured(tick, env)  # decides in full, and leaves the stamp
    seconds = {"pass": [], "mechanism": [], "library": []}
    for _ in range(ticks):
        seconds["pass"].append(measured(empty, env)["seconds"])
        left = stamp.stat().st_mtime_ns
        seconds["mechanism"].append(measured(tick, env)["seconds"])
        if stamp.stat().st_mtime_ns != left:
            raise SystemExit("the stamped tick decided in full: the stamp did not hold")
        stamp.unlink()
        seconds["library"].append(measured(tick, env)["seconds"])
        if not stamp.exists():
            raise SystemExit("the full quiet decision left no stamp")
    return {name: statistics.median(values) for name, values in seconds.items()}


def bench_size(rows: int, scratch: Path, repeats: int, ticks: int) -> dict:
    pristine = scratch / "pristine"
    child("--make-project", rows, pristine)
    results = {}
    progress(f"{rows:,} rows: ingestion.py both ways")
    results["ingestion"] = alternating(
        script_runs("rowkeys", "ingestion.py", pristine / "config.json"),
        repeats,
        before=fresh_copy(pristine, scratch / "ingest"),
    )
    shutil.rmtree(scratch / "ingest", ignore_errors=True)
    deployed = scratch / "deployed"
    shutil.copytree(pristine, deployed)
    config = deployed / "config.json"
    progress(f"{rows:,} rows: bootstrap, quiet ticks")
    measured([sys.executable, str(PROJECT_DIR / "fullprocess.py"), "--config", str(config)])
    results["tick"] = quiet_ticks(config, ticks)
    progress(f"{rows:,} rows: row keys and splines alone")
    results["rowkeys_calls"] = child("--time-rowkeys", config, 5)
    results["spline_calls"] = child("--time-spline", rows, 5)
    progress(f"{rows:,} rows: ranking.py, training.py both ways")
    results["ranking"] = alternating(script_runs("rowkeys", "ranking.py", config), repeats)
    model = deployed / "models" / "trainedmodel.pkl"
    results["training"] = alternating(
        script_runs("spline", "training.py", config),
        repeats,
        after=lambda way: shutil.copy(model, scratch / f"model-{way}"),
    )
    results["models"] = child(
        "--compare-models", config, scratch / "model-mechanism", scratch / "model-library"
    )
    return results


def bench_fit(rows: int, scratch: Path, repeats: int) -> dict:
    folder = scratch / f"fit-{rows}"
    folder.mkdir()
    made = child("--make-design", rows, folder)
    runs = {fit: [] for fit in FITS}
    for _ in range(repeats):
        for fit in FITS:
            runs[fit].append(child("--fit", fit, folder))
    fits = {
        solver: {
            key: statistics.median(run[key] for run in done) for key in done[0] if key != "process"
        }
        for solver, done in runs.items()
    }
    agreement = child("--compare-fits", folder, *FITS)
    shutil.rmtree(folder)
    return {"made": made, "fits": fits, "agreement": agreement}


def progress(message: str) -> None:
    sys.stderr.write(f"{time.strftime('%H:%M:%S')} {message}\n")
    sys.stderr.flush()


def cell(result: dict) -> str:
    return f"{result['seconds']:.3f} s, {result['peak_mb']:.0f} MB"


def ratio(result: dict) -> str:
    return f"**{result['library']['seconds'] / result['mechanism']['seconds']:.2f}**"


def print_tables(sizes: dict, fits: dict, repeats: int, ticks: int) -> None:
    print(f"\n### Row keys beside pandas' duplicated (processes: median of {repeats})\n")
    print("| Rows | Run | Row keys | pandas | pandas / row keys |")
    print("| --- | --- | --- | --- | --- |")
    for rows, result in sizes.items():
        for name in ("ingestion", "ranking"):
            run = result[name]
            print(
                f"| {rows:,} | `{name}.py`, whole process | {cell(run['mechanism'])} |"
                f" {cell(run['library'])} | {ratio(run)} |"
            )
        for name, call in result["rowkeys_calls"].items():
            if name == "process":
                continue
            print(
                f"| {call['rows']:,} | {name}, the call alone (median of 5) |"
                f" {call['mechanism']:.4f} s | {call['library']:.4f} s |"
                f" {call['library'] / call['mechanism']:.2f} |"
            )
    print(f"\n### Spline basis beside SplineTransformer (processes: median of {repeats})\n")
    print("| Rows | Run | SplineBasis | SplineTransformer | SplineTransformer / SplineBasis |")
    print("| --- | --- | --- | --- | --- |")
    for rows, result in sizes.items():
        run, calls = result["training"], result["spline_calls"]
        print(
            f"| {rows:,} | `training.py`, whole process | {cell(run['mechanism'])} |"
            f" {cell(run['library'])} | {ratio(run)} |"
        )
        for name, what in (("fit_transform", "fit + transform"), ("transform", "transform")):
            call = calls[name]
            print(
                f"| {rows:,} | {what} alone, {calls['shape'][1]} columns in (median of 5) |"
                f" {call['mechanism']:.4f} s | {call['library']:.4f} s |"
                f" {call['library'] / call['mechanism']:.2f} |"
            )
    print(
        "\n| Rows | Largest basis difference (inside / beyond the fitted range) |"
        " Trained models on the test rows: largest probability difference, flags differing |"
    )
    print("| --- | --- | --- |")
    for rows, result in sizes.items():
        difference, models = result["spline_calls"]["max_difference"], result["models"]
        print(
            f"| {rows:,} | {difference['inside']:.1e} / {difference['beyond']:.1e} |"
            f" {models['max_probability_difference']:.1e},"
            f" {models['flags_differing']} of {models['test_rows']:,} |"
        )
    print(f"\n### Quiet tick: `python fullprocess.py`, nothing new (median of {ticks})\n")
    print(
        "| Stored rows | With the stamp | Stamp removed (full decision) | `python -c pass` |"
        " Full / stamp |"
    )
    print("| --- | --- | --- | --- | --- |")
    for rows, result in sizes.items():
        tick = result["tick"]
        print(
            f"| {rows:,} | {tick['mechanism'] * 1000:.1f} ms"
            f" ({tick['mechanism'] / tick['pass']:.2f} x pass) | {tick['library'] * 1000:.1f} ms"
            f" ({tick['library'] / tick['pass']:.2f} x pass) | {tick['pass'] * 1000:.1f} ms |"
            f" **{tick['library'] / tick['mechanism']:.2f}** |"
        )
    print(f"\n### Final regression on the whole design matrix (median of {repeats})\n")
    print(
        "| Rows | Fit | Seconds (/ block-wise) | Peak MB | Fit's own MB (/ block-wise) |"
        " Iterations | Objective above the lowest (relative) | Probability difference from"
        " block-wise: largest / 99th percentile | Largest coefficient difference |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for rows, result in fits.items():
        block = result["fits"]["blockwise"]
        for name, fit in result["fits"].items():
            agreement = result["agreement"][name]
            solver, _, tolerance = name.partition(":")
            label = f"{solver}, tol={tolerance}" if tolerance else solver
            print(
                f"| {rows:,} | {label} | {fit['seconds']:.2f}"
                f" ({fit['seconds'] / block['seconds']:.2f}) | {fit['peak_mb']:.0f} |"
                f" {fit['fit_mb']:.0f} ({fit['fit_mb'] / max(block['fit_mb'], 1):.2f}) |"
                f" {fit['iterations']} | {agreement['objective_above']:.1e} |"
                f" {agreement['probability_max']:.1e} / {agreement['probability_p99']:.1e} |"
                f" {agreement['coef']:.1e} |"
            )
        made = result["made"]
        chosen = ", ".join(f"{key}={value}" for key, value in made["params"].items())
        print(
            f"| {rows:,} | (design matrix {made['design_mb']:.0f} MB float32; {chosen})"
            " | | | | | | | |"
        )


def main() -> int:
    if sys.argv[1:2] and sys.argv[1] in CHILDREN:
        CHILDREN[sys.argv[1]](*sys.argv[2:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 rows only, everywhere")
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 1_000_000])
    parser.add_argument(
        "--fit-sizes", type=int, nargs="*", default=[1_000_000, 2_000_000, 3_000_000]
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ticks", type=int, default=11)
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.fit_sizes = [10_000], [10_000]
    started = time.perf_counter()
    sizes, fits = {}, {}
    with tempfile.TemporaryDirectory(prefix="risk-mechanisms-") as scratch:
        for rows in args.sizes:
            folder = Path(scratch) / f"size-{rows}"
            folder.mkdir()
            sizes[rows] = bench_size(rows, folder, args.repeats, args.ticks)
            shutil.rmtree(folder)
        for rows in args.fit_sizes:
            progress(f"{rows:,} rows: the final regression, each fit")
            fits[rows] = bench_fit(rows, Path(scratch), args.repeats)
    print_tables(sizes, fits, args.repeats, args.ticks)
    print(f"\n(whole benchmark: {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
