"""The report's charts, as PNG bytes: confusion matrix, score history, precision, calibration.

Drawn on matplotlib Figure objects, never through pyplot: no global state, nothing left open.
"""

from __future__ import annotations

import io
from datetime import timedelta

from matplotlib import dates as mdates
from matplotlib.figure import Figure

from clientrisk.timestamps import parse_utc

MAX_SERIES = 6
MIN_PAD = timedelta(minutes=30)  # each side of the scores in time: one point is an hour wide
LABELLED_POINTS = 8  # up to this many scores, each is labelled with its F1
SERIES_COLOURS = ("#1f5f99", "#e67e22", "#27ae60", "#8e44ad", "#16a085", "#d35400")


PRECISION_MARKS = (20, 50, 100)


def confusion_matrix_png(metrics: dict, title: str) -> bytes:
    """A 2x2 confusion matrix with counts and shares in the cells."""
    counts = metrics["confusion"]
    cells = [[counts["tn"], counts["fp"]], [counts["fn"], counts["tp"]]]
    total = sum(counts.values()) or 1
    figure = Figure(figsize=(5.2, 4.4), dpi=150, layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(cells, cmap="Blues", vmin=0)
    brightest = max(max(row) for row in cells) or 1
    for row in range(2):
        for column in range(2):
            value = cells[row][column]
            axes.text(
                column,
                row,
                f"{value:,}\n{value / total:.1%}",
                ha="center",
                va="center",
                fontsize=14,
                color="white" if value > brightest / 2 else "black",
            )
    labels = ["stayed (0)", "left (1)"]
    axes.set_xticks([0, 1], labels)
    axes.set_yticks([0, 1], labels)
    axes.set_xlabel("Predicted by the model")
    axes.set_ylabel("Actual")
    axes.set_title(title, fontsize=10)
    figure.colorbar(image, ax=axes, shrink=0.8, label="clients")
    return _png(figure)


def score_history_png(history: list[dict], deployments: list[dict]) -> bytes:
    return _png(score_history_figure(history, deployments))


def score_history_figure(history: list[dict], deployments: list[dict]) -> Figure:
    """F1 of every recorded score over time, one series per model, deployments marked.

    A model that was deployed is named by its version; a retrained model kept out is drawn apart
    (crosses), never on the line of the model that stayed live. Past MAX_SERIES models the older
    ones share one grey series, so the legend (beside the plot) stays readable.
    """
    figure = Figure(figsize=(7.5, 3.3), dpi=150, layout="constrained")
    axes = figure.add_subplot()
    # A deployment history line may have lost its time (edited by hand).
    deployments = [change for change in deployments if parse_utc(change.get("time"))]
    names = {}
    for change in deployments:
        if change.get("model_sha256") and change["model_sha256"] not in names:
            names[change["model_sha256"]] = change["to_version"]
    points = [row for row in history if row["f1"] is not None and parse_utc(row["scored_at"])]
    models = list(dict.fromkeys(row["model_sha256"] for row in points))
    deployed = [sha for sha in models if sha in names]
    shown = set(deployed[-MAX_SERIES:])
    palette = iter(SERIES_COLOURS)
    for sha in deployed:
        rows = [row for row in points if row["model_sha256"] == sha]
        label, colour = (
            (names[sha], next(palette)) if sha in shown else ("earlier models", "#b0b0b0")
        )
        axes.plot(
            [parse_utc(row["scored_at"]) for row in rows],
            [row["f1"] for row in rows],
            marker="o",
            markersize=4,
            color=colour,
            label=label if label not in axes.get_legend_handles_labels()[1] else None,
        )
    if len(points) <= LABELLED_POINTS:
        # A short history is read point by point: each with its F1 written beside it.
        for row in points:
            axes.annotate(
                f"{row['f1']:.2f}",
                (parse_utc(row["scored_at"]), row["f1"]),
                textcoords="offset points",
                xytext=(0, 6),
                ha="center",
                fontsize=7,
            )
    kept_out = [row for row in points if row["model_sha256"] not in names]
    if kept_out:
        axes.plot(
            [parse_utc(row["scored_at"]) for row in kept_out],
            [row["f1"] for row in kept_out],
            marker="x",
            linestyle="none",
            color="#c0392b",
            label="retrained, kept out",
        )
    for number, change in enumerate(deployments):
        axes.axvline(
            parse_utc(change["time"]),
            color="grey",
            linestyle=":",
            linewidth=1,
            label="deployment" if number == 0 else None,
        )
    times = [parse_utc(row["scored_at"]) for row in points]
    times += [parse_utc(change["time"]) for change in deployments]
    if times:
        # A short history would otherwise be stretched over years by the automatic limits, and
        # a single point be drawn among ticks seconds apart.
        pad = max(MIN_PAD, (max(times) - min(times)) * 0.06)
        axes.set_xlim(min(times) - pad, max(times) + pad)
    locator = mdates.AutoDateLocator(minticks=3, maxticks=6)
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    axes.set_ylim(0, 1)
    axes.set_ylabel("F1 (test, held-out, new rows)")
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7, frameon=False)
    return figure


def precision_at_k_png(truth, probabilities) -> bytes:
    """Of the k test clients ranked highest, the share who left, against the share of all."""
    import numpy as np

    order = np.argsort(-np.asarray(probabilities), kind="stable")
    hits = np.cumsum(np.asarray(truth)[order])
    k = np.arange(1, len(order) + 1)
    figure = Figure(figsize=(3.7, 3.0), dpi=150, layout="constrained")
    axes = figure.add_subplot()
    axes.plot(k, hits / k, color="#1f5f99", label="top k by the model")
    axes.axhline(hits[-1] / len(k), color="grey", linestyle="--", label="all clients (base rate)")
    marks = [mark for mark in PRECISION_MARKS if mark <= len(k)]
    for mark in marks:
        axes.plot(mark, hits[mark - 1] / mark, "o", color="#1f5f99", markersize=4)
    if marks:
        text = "\n".join(f"top {mark}: {hits[mark - 1] / mark:.0%}" for mark in marks)
        axes.text(0.97, 0.97, text, transform=axes.transAxes, ha="right", va="top", fontsize=7)
    axes.set_xscale("log")
    axes.set_ylim(0, 1.05)
    return _share_who_left(
        figure, "clients called (k, test data)", "Precision of the top of the list", "lower left"
    )


def calibration_png(truth, probabilities) -> bytes:
    """Predicted probability against the share who left, in ten groups of equal size."""
    from sklearn.calibration import calibration_curve

    left, predicted = calibration_curve(truth, probabilities, n_bins=10, strategy="quantile")
    figure = Figure(figsize=(3.7, 3.0), dpi=150, layout="constrained")
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfectly calibrated")
    axes.plot(predicted, left, marker="o", markersize=4, color="#1f5f99", label="the model")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    return _share_who_left(
        figure,
        "predicted probability of leaving",
        "Calibration (test data, ten groups)",
        "upper left",
    )


def past_list_png(parts: list[dict]) -> bytes:
    """One past list's parts: the share who left of those with an outcome since, the share the
    list expected with its 95 % interval, and the base rate."""
    shown = [part for part in parts if part.get("with_outcome")]
    figure = Figure(figsize=(3.4, 2.2), dpi=150, layout="constrained")
    axes = figure.add_subplot()
    names = [f"top {part['top']}" if part["top"] else "whole list" for part in shown]
    places = range(len(shown))
    left = [part["share_left"] for part in shown]
    colours = ["#1f5f99" if part["verdict"] == "as expected" else "#b3261e" for part in shown]
    axes.bar(places, left, width=0.5, color=colours, label="share who left")
    expected = [part["expected"] / part["with_outcome"] for part in shown]
    low = [part["low"] / part["with_outcome"] for part in shown]
    high = [part["high"] / part["with_outcome"] for part in shown]
    axes.errorbar(
        places,
        expected,
        yerr=[
            [e - lo for e, lo in zip(expected, low, strict=True)],
            [hi - e for e, hi in zip(expected, high, strict=True)],
        ],
        fmt="_",
        color="black",
        markersize=14,
        capsize=3,
        label="expected (95 %)",
    )
    base = [part["at_base_rate"] / part["with_outcome"] for part in shown if part["top"]]
    if base:
        axes.plot(
            [place for place, part in zip(places, shown, strict=True) if part["top"]],
            base,
            "_",
            color="#e67e22",
            markersize=22,
            markeredgewidth=2,
            label="base rate",
        )
    axes.set_xticks(list(places), names)
    axes.set_ylim(0, 1.05)
    axes.tick_params(labelsize=7)
    axes.set_ylabel("share who left", fontsize=7)
    axes.set_title("How a past list did: of its clients with an outcome since", fontsize=7)
    axes.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, frameon=False)
    axes.grid(alpha=0.3, axis="y")
    return _png(figure)


def _share_who_left(figure: Figure, xlabel: str, title: str, legend: str) -> bytes:
    """Label a plot of the share of clients who left against `xlabel`, and render it."""
    axes = figure.axes[0]
    axes.set_xlabel(xlabel)
    axes.set_ylabel("share who left")
    axes.set_title(title, fontsize=9)
    axes.legend(fontsize=7, loc=legend)
    axes.grid(alpha=0.3)
    return _png(figure)


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
