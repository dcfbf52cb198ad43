"""Report on the deployed model: a confusion-matrix plot and a PDF for the client managers.

Writes, in `output_model_path`, `confusionmatrix.png` (the deployed model on the test data) and
`summary_report.pdf`: the model and its metrics, the score history, the clients most at risk, and
the latest diagnostics (statistics, missing data, drift, timings, dependencies). Both are written
atomically, and only after everything in them was computed.
"""

from __future__ import annotations

import io
import logging
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.sax.saxutils import escape

from matplotlib import dates as mdates
from matplotlib.figure import Figure
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import (
    Image,
    KeepTogether,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

import modelstore
from clientdata import read_labelled_csv
from files import atomic_path, read_json
from history import open_history
from project import DIAGNOSTICS_FILE, Config, PipelineError, build_parser, parse_utc, run_cli
from scoring import evaluate_model

logger = logging.getLogger(__name__)

CONFUSION_MATRIX_FILE = "confusionmatrix.png"
# Longer client identifiers are cut in the report's tables (the CSV has them whole).
SHOWN_ID_LENGTH = 24
REPORT_FILE = "summary_report.pdf"
PAGE_MARGIN = 18 * mm
CONTENT_WIDTH = A4[0] - 2 * PAGE_MARGIN
SECTIONS = (
    "Model performance on the test data",
    "Score history",
    "Clients most at risk",
    "Summary statistics of the ingested data",
    "Missing data",
    "Data drift",
    "Timings",
    "Dependencies",
)


# --- figures -------------------------------------------------------------------------------------


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
    """F1 of every recorded score over time, with the deployments marked."""
    figure = Figure(figsize=(7.5, 3.2), dpi=150, layout="constrained")
    axes = figure.add_subplot()
    # A deployment history line may have lost its time (edited by hand).
    deployments = [change for change in deployments if parse_utc(change.get("time"))]
    for context, marker in (("test", "o"), ("new data", "s")):
        points = [row for row in history if row["context"] == context and row["f1"] is not None]
        if points:
            axes.plot(
                [parse_utc(row["scored_at"]) for row in points],
                [row["f1"] for row in points],
                marker=marker,
                linestyle="-" if context == "test" else "none",
                label=f"F1 on {'the test data' if context == 'test' else 'newly arrived data'}",
            )
    for change in deployments:
        axes.axvline(parse_utc(change["time"]), color="grey", linestyle=":", linewidth=1)
        axes.annotate(
            change["to_version"],
            (parse_utc(change["time"]), 1.0),
            xycoords=("data", "axes fraction"),
            fontsize=7,
            rotation=90,
            va="top",
            ha="right",
            color="grey",
        )
    times = [parse_utc(row["scored_at"]) for row in history]
    times += [parse_utc(change["time"]) for change in deployments]
    if times:
        # A short history would otherwise be stretched over years by the automatic limits.
        pad = max(timedelta(hours=12), (max(times) - min(times)) * 0.05)
        axes.set_xlim(min(times) - pad, max(times) + pad)
    locator = mdates.AutoDateLocator()
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    axes.set_ylim(0, 1)
    axes.set_ylabel("F1")
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="lower left", fontsize=8)
    return _png(figure)


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


# --- the PDF -------------------------------------------------------------------------------------


def _table(rows: list[list], widths: list[float], align_right_from: int = 1) -> Table:
    table = Table(rows, colWidths=[width * CONTENT_WIDTH for width in widths], repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 8.5),
                ("FONT", (0, 1), (-1, -1), "Helvetica", 8.5),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#dde6f0")),
                ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.HexColor("#f4f6f8")]),
                ("ALIGN", (align_right_from, 0), (-1, -1), "RIGHT"),
                ("LINEBELOW", (0, 0), (-1, 0), 0.6, colors.HexColor("#6b7c93")),
                ("TOPPADDING", (0, 0), (-1, -1), 2),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
            ]
        )
    )
    return table


def _number(value, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.{digits}f}"


def _shorten(text, length: int = SHOWN_ID_LENGTH) -> str:
    text = str(text)
    return text if len(text) <= length else text[: length - 1] + "…"


def _image(png: bytes, width: float) -> Image:
    image = Image(io.BytesIO(png))
    image.drawHeight = width * image.imageHeight / image.imageWidth
    image.drawWidth = width
    return image


def build_story(facts: dict) -> list:
    """The report's flowables, from everything `facts` holds (see `gather_facts`)."""
    styles = getSampleStyleSheet()
    body, heading, small = styles["BodyText"], styles["Heading2"], styles["Italic"]
    report, metrics, deployment = facts["diagnostics"], facts["metrics"], facts["deployment"]
    manifest = deployment.manifest
    story = [
        Paragraph("Client attrition risk report", styles["Title"]),
        Paragraph(
            f"Generated {facts['generated']} UTC. Deployed model <b>{deployment.label}</b>"
            f" (SHA-256 {manifest['model_sha256'][:12]}), deployed {manifest.get('deployed_at')},"
            f" trained on {_number(manifest.get('training_rows'))} rows."
            f" Diagnostics from {report['generated_at']}.",
            body,
        ),
    ]

    def section(number: int, *flowables) -> None:
        title = Paragraph(f"{number}. {SECTIONS[number - 1]}", heading)
        story.append(KeepTogether([title, *flowables[:1]]))
        story.extend(flowables[1:])

    auc = metrics["roc_auc"]
    section(
        1,
        _table(
            [
                ["Metric", "Value"],
                ["F1", f"{metrics['f1']:.3f}"],
                ["Precision (of those flagged, share who left)", f"{metrics['precision']:.3f}"],
                ["Recall (of those who left, share flagged)", f"{metrics['recall']:.3f}"],
                ["ROC AUC (ranking quality)", "n/a" if auc is None else f"{auc:.3f}"],
                ["Test clients", _number(metrics["rows"])],
                ["Share who left", f"{metrics['exited_rate']:.1%}"],
            ],
            [0.6, 0.2],
        ),
        Spacer(0, 4 * mm),
        _image(facts["confusion_png"], 0.62 * CONTENT_WIDTH),
    )
    section(
        2,
        _image(facts["history_png"], CONTENT_WIDTH),
        Paragraph(
            "Each point is one scoring; dotted lines mark changes of the deployed model.", small
        ),
    )
    top = report["ranking"]["top"]
    rows = [["Rank", "Client", "Risk", "Last month", "Last year", "Employees"]]
    rows += [
        [
            client["rank"],
            _shorten(client["corporation"]),
            f"{client['probability']:.1%}",
            _number(client["lastmonth_activity"]),
            _number(client["lastyear_activity"]),
            _number(client["number_of_employees"]),
        ]
        for client in top
    ]
    section(
        3,
        Paragraph(
            f"The {len(top)} of {_number(report['ranking']['clients'])} clients with the highest"
            " probability of leaving. Activity is in the company's activity units. The full list"
            f" is in {report['ranking']['file']}.",
            body,
        ),
        _table(rows, [0.08, 0.14, 0.12, 0.2, 0.2, 0.18], align_right_from=2),
    )
    stats = report["summary_statistics"]
    rows = [["Column", "Count", "Mean", "Median", "Std", "Min", "Q1", "Q3", "Max"]]
    rows += [
        [name]
        + [
            _number(s[key])
            for key in ("count", "mean", "median", "std", "min", "q25", "q75", "max")
        ]
        for name, s in stats.items()
    ]
    section(4, _table(rows, [0.22, 0.08, 0.1, 0.09, 0.1, 0.06, 0.09, 0.1, 0.12]))
    rows = [["Column", "Missing values"]]
    rows += [[name, f"{share:.2f} %"] for name, share in report["missing_percent"].items()]
    section(5, _table(rows, [0.4, 0.2]))
    section(6, *_drift_flowables(report["drift"], body))
    timings = report["timings"]
    rows = [["Step", "Median seconds", "Runs"]]
    rows += [
        [name, f"{t['median_seconds']:.3f}", ", ".join(f"{run:.3f}" for run in t["runs"])]
        for name, t in timings.items()
    ]
    section(7, _table(rows, [0.2, 0.2, 0.45]))
    rows = [["Package", "Pinned", "Installed", "Latest", "Status"]]
    rows += [
        [d["package"], d["pinned"] or "-", d["installed"] or "-", d["latest"] or "?", d["status"]]
        for d in report["dependencies"]
    ]
    section(8, _table(rows, [0.26, 0.16, 0.16, 0.16, 0.2]))
    return story


def _drift_flowables(drift: dict, style) -> list:
    if not drift.get("available"):
        return [Paragraph(f"Not available: {drift.get('reason')}.", style)]
    rows = [["Feature", "KS stat.", "adj. p", "KS drift", "PSI", "PSI level", "Median ref. / now"]]
    for item in drift["features"]:
        rows.append(
            [
                item["feature"],
                _number(item["ks_statistic"], 3),
                "n/a"
                if item["ks_adjusted_pvalue"] is None
                else f"{item['ks_adjusted_pvalue']:.3g}",
                "yes" if item["ks_drift"] else "no",
                _number(item["psi"], 3),
                item["psi_level"],
                f"{_number(item['reference_median'])} / {_number(item['current_median'])}",
            ]
        )
    verdict = ", ".join(drift["drifted"]) or "none"
    return [
        Paragraph(
            f"Compared {escape(drift['compared'])} with the {escape(drift['reference'])}."
            " A feature drifts when"
            " the Kolmogorov-Smirnov test, corrected for testing several features"
            f" (Benjamini-Hochberg), gives p &lt; {drift['ks_alpha']}. PSI measures how large the"
            f" change is (0.1 moderate, {drift['psi_major']} major). Drifted: <b>{verdict}</b>.",
            style,
        ),
        _table(rows, [0.22, 0.1, 0.1, 0.1, 0.1, 0.12, 0.26]),
    ]


def write_pdf(story: list, path: Path) -> int:
    """Write the report atomically.

    Returns:
        The number of pages.
    """

    def footer(canvas, document) -> None:
        canvas.saveState()
        canvas.setFont("Helvetica", 8)
        canvas.setFillColor(colors.grey)
        canvas.drawString(PAGE_MARGIN, 10 * mm, "Client attrition risk report")
        canvas.drawRightString(A4[0] - PAGE_MARGIN, 10 * mm, f"page {document.page}")
        canvas.restoreState()

    with atomic_path(path) as tmp_path:
        document = SimpleDocTemplate(
            str(tmp_path),
            pagesize=A4,
            leftMargin=PAGE_MARGIN,
            rightMargin=PAGE_MARGIN,
            topMargin=PAGE_MARGIN,
            bottomMargin=PAGE_MARGIN,
            title="Client attrition risk report",
        )
        document.build(story, onFirstPage=footer, onLaterPages=footer)
    return document.page


# --- the step ------------------------------------------------------------------------------------


def gather_facts(config: Config) -> dict:
    """Everything the report shows, checked to be about the model that is live now."""
    model, deployment = modelstore.load_deployed_model(config.deploy_dir)
    report_path = config.model_dir / DIAGNOSTICS_FILE
    if not report_path.is_file():
        raise PipelineError(f"{report_path}: no diagnostics yet; run diagnostics.py first")
    report = read_json(report_path, "diagnostics")
    if report.get("model", {}).get("sha256") != deployment.manifest["model_sha256"]:
        raise PipelineError(
            f"{report_path}: made for model {report.get('model', {}).get('version')}, but"
            f" {deployment.label} is live; run diagnostics.py again"
        )
    metrics = evaluate_model(model, read_labelled_csv(config.test_data_file))
    with open_history(config.history_path) as history:
        scores, deployments = history.scores(), history.deployments()
    logger.debug(
        "report on %s: %d scores and %d deployments in the history, diagnostics of %s",
        deployment.label,
        len(scores),
        len(deployments),
        report.get("generated_at"),
    )
    title = (
        f"Model {deployment.label} on {config.test_data_file.name}\n"
        f"{metrics['rows']:,} clients, F1 {metrics['f1']:.3f}"
    )
    return {
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
        "deployment": deployment,
        "metrics": metrics,
        "diagnostics": report,
        "confusion_png": confusion_matrix_png(metrics, title),
        "history_png": score_history_png(scores, deployments),
    }


@dataclass
class ReportingResult:
    pdf_path: Path
    png_path: Path
    pages: int

    @property
    def summary(self) -> str:
        return f"wrote {self.png_path} and {self.pdf_path} ({self.pages} pages)"


def run(config: Config) -> ReportingResult:
    facts = gather_facts(config)
    story = build_story(facts)
    png_path = config.model_dir / CONFUSION_MATRIX_FILE
    with atomic_path(png_path) as tmp_path:
        tmp_path.write_bytes(facts["confusion_png"])
    pdf_path = config.model_dir / REPORT_FILE
    pages = write_pdf(story, pdf_path)
    deployment, report = facts["deployment"], facts["diagnostics"]
    with open_history(config.history_path) as history:
        history.record_reports(
            deployment.manifest["model_sha256"],
            deployment.label,
            report.get("data", {}).get("through_batch"),
        )
    logger.debug("wrote %s (%d pages) and %s", pdf_path, pages, png_path)
    return ReportingResult(pdf_path, png_path, pages)


def main(argv: list[str] | None = None) -> int:
    args = build_parser(__file__, __doc__).parse_args(argv)
    return run_cli(args, run)


if __name__ == "__main__":
    sys.exit(main())
