"""Report on the deployed model: a confusion-matrix plot and a PDF for the client managers.

Writes, in `output_model_path`, `confusionmatrix.png` (the deployed model on the test data) and
`summary_report.pdf`: page 1 for the client managers (who to call and why, what changed since the
previous ranking, expected leavers), then model quality (metrics, precision of the top of the
list, calibration, confusion matrix, score history), drift, and the engineering detail
(statistics, missing data, timings, dependencies). Both are written
atomically, and only after everything in them was computed.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import (
    Image,
    KeepTogether,
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from clientrisk.atomicfiles import atomic_path, read_json
from clientrisk.calllist import outcomes, ranking
from clientrisk.calllist.reasons import percents, reason_text
from clientrisk.config import DIAGNOSTICS_FILE, REPORT_FILE, Config
from clientrisk.data.clientcsv import TARGET, read_labelled_csv
from clientrisk.deployment import modelstore
from clientrisk.errors import PipelineError
from clientrisk.history.database import open_history
from clientrisk.model.scoring import evaluate_model, predict
from clientrisk.report.charts import (
    calibration_png,
    confusion_matrix_png,
    past_list_png,
    precision_at_k_png,
    score_history_png,
)
from clientrisk.timestamps import readable_utc

logger = logging.getLogger(__name__)

CONFUSION_MATRIX_FILE = "confusionmatrix.png"
# Longer client identifiers are cut in the report's tables (the CSV has them whole).
SHOWN_ID_LENGTH = 24
PAGE_MARGIN = 18 * mm
CONTENT_WIDTH = A4[0] - 2 * PAGE_MARGIN
SECTIONS = (
    "Who to call",
    "Model quality on the test data and the newest rows",
    "Score history",
    "Data drift",
    "The ingested data: statistics and missing values",
    "Timings",
    "Dependencies",
)
TOP_SHOWN = 20
REASONS_SHOWN = 2  # on page 1; riskranking.csv has up to three
# Clients named per line of what changed on page 1 (after a drift most of the top is new, and
# twenty names a line, with how a past list did beside its chart, push the list off page 1).
CHANGES_SHOWN = 3


# --- figures -------------------------------------------------------------------------------------


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


def _family_words(manifest: dict) -> str:
    """Which model family is live, and why it was chosen."""
    from xml.sax.saxutils import escape

    from clientrisk.model.training import FAMILIES

    family = manifest.get("family", "logistic")
    why = manifest.get("why")
    name = FAMILIES.get(family, family)
    if why and why.startswith(name):  # a retrain's reason names the family itself
        return escape(why)
    return escape(name + (f", {why}" if why else ""))


def _image(png: bytes, width: float) -> Image:
    image = Image(io.BytesIO(png))
    image.drawHeight = width * image.imageHeight / image.imageWidth
    image.drawWidth = width
    return image


def build_story(facts: dict) -> list:
    """The report's flowables, from everything `facts` holds (see `gather_facts`).

    Page 1 is for the client managers: who to call and why, what changed, expected leavers. Then
    model quality, drift, and the engineering detail.
    """
    styles = getSampleStyleSheet()
    body, heading, small = styles["BodyText"], styles["Heading2"], styles["Italic"]
    cell = ParagraphStyle("cell", parent=body, fontSize=7, leading=8.2)
    report, metrics, deployment = facts["diagnostics"], facts["metrics"], facts["deployment"]
    ranked = facts["ranking"]
    manifest = deployment.manifest
    story = [
        Paragraph("Client attrition risk report", styles["Title"]),
        Paragraph(
            f"Generated {facts['generated']} UTC from model <b>{deployment.label}</b>; ranking of"
            f" {readable_utc(ranked['made_at'])} over the data through batch"
            f" {ranked['through_batch']}.",
            body,
        ),
    ]
    titles = iter(enumerate(SECTIONS, start=1))

    def section(*flowables) -> None:
        number, name = next(titles)
        title = Paragraph(f"{number}. {name}", heading)
        story.append(KeepTogether([title, *flowables[:1]]))
        story.extend(flowables[1:])

    quality = report.get("quality") or {}
    section(*_who_to_call(ranked, quality, report["drift"].get("in_words"), body, cell))
    story.append(PageBreak())
    section(
        _quality_table(metrics, quality.get("newest")),
        *_quality_words(quality, facts["test_file"], small),
        Spacer(0, 3 * mm),
        Table(
            [
                [
                    _image(facts["precision_png"], 0.49 * CONTENT_WIDTH),
                    _image(facts["calibration_png"], 0.49 * CONTENT_WIDTH),
                ]
            ],
            colWidths=[0.5 * CONTENT_WIDTH] * 2,
        ),
        Paragraph(
            "Left: of the k test clients the model ranks highest, the share who really left."
            " Right: in ten groups of test clients by predicted probability, the share who left;"
            " on the diagonal the probabilities mean what they say.",
            small,
        ),
        _image(facts["confusion_png"], 0.5 * CONTENT_WIDTH),
    )
    section(
        _image(facts["history_png"], CONTENT_WIDTH),
        Paragraph(
            f"F1 of each model on the test data, on the newest rows held out when it was"
            f" trained and on new batches, one line per model;"
            f" retrained models kept out are crosses; dotted lines mark deployments. The live model"
            f" was deployed {readable_utc(manifest.get('deployed_at'))} and trained on"
            f" {_number(manifest.get('training_rows'))} rows: {_family_words(manifest)}.",
            small,
        ),
    )
    section(*_drift_flowables(report["drift"], body))
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
    section(
        _table(rows, [0.22, 0.08, 0.1, 0.09, 0.1, 0.06, 0.09, 0.1, 0.12]),
        Spacer(0, 2 * mm),
        _table(
            [["Column", "Missing values"]]
            + [[name, f"{share:.2f} %"] for name, share in report["missing_percent"].items()],
            [0.4, 0.2],
        ),
    )
    timings = report["timings"]
    rows = [["Step", "Median seconds", "Runs (seconds)", "Measured on"]]
    rows += [
        [
            name,
            f"{t['median_seconds']:.3f}",
            ", ".join(f"{run:.3f}" for run in t["runs"]),
            t.get("measured", "a copy"),
        ]
        for name, t in timings.items()
    ]
    if timings:
        section(_table(rows, [0.14, 0.16, 0.34, 0.36]))
    else:
        section(
            Paragraph(
                "No timed run yet: the steps were run by hand. fullprocess.py records how long"
                " each step takes; diagnostics.py --time-on-copy times them on a copy.",
                body,
            )
        )
    rows = [["Package", "Pinned", "Installed", "Latest", "Status", "Known vulnerabilities"]]
    rows += [
        [
            d["package"],
            d["pinned"] or "-",
            d["installed"] or "-",
            d["latest"] or "?",
            d["status"],
            _vulnerability_cell(d),
        ]
        for d in report["dependencies"]
    ]
    section(
        _table(rows, [0.22, 0.14, 0.14, 0.14, 0.16, 0.2]),
        *_vulnerability_words(report.get("vulnerabilities"), body),
        Paragraph(
            f"Model SHA-256 {manifest['model_sha256'][:12]}; diagnostics of"
            f" {report['generated_at']}.",
            small,
        ),
    )
    return story


def _vulnerability_cell(dependency: dict) -> str:
    """How many vulnerabilities are known for the installed release ("-" when not asked)."""
    if "vulnerabilities" not in dependency:
        return "-"
    ids = dependency["vulnerabilities"]
    if ids is None:
        return "not checked"
    return str(len(ids)) if ids else "none"


def _vulnerability_words(found: dict | None, style) -> list:
    """The vulnerability check in one paragraph (ids and the versions that fix them)."""
    from xml.sax.saxutils import escape

    if not found:
        return [Paragraph("Vulnerabilities were not checked for these diagnostics.", style)]
    words = found["in_words"]
    return [Spacer(0, 2 * mm), Paragraph(escape(words[:1].upper() + words[1:] + "."), style)]


def _quality_table(metrics: dict, newest: dict | None) -> Table:
    """The live model on the test file and, when known, on the newest rows with an outcome."""

    def figure(value, digits: str = ".3f") -> str:
        return "n/a" if value is None else format(value, digits)

    names = (
        ("F1", "f1"),
        ("Precision (of those flagged, share who left)", "precision"),
        ("Recall (of those who left, share flagged)", "recall"),
        ("ROC AUC (ranking quality)", "roc_auc"),
    )
    if newest is None:
        rows = [["Metric", "Test file"]]
        rows += [[name, figure(metrics[key])] for name, key in names]
    else:
        rows = [["Metric", "Test file", "Newest rows"]]
        rows += [[name, figure(metrics[key]), figure(newest.get(key))] for name, key in names]
    extra = [] if newest is None else [""]
    rows += [
        ["Log loss (probabilities; lower is better)", f"{metrics['log_loss']:.3f}", *extra],
        [
            "Clients",
            _number(metrics["rows"]),
            *([] if newest is None else [_number(newest["rows"])]),
        ],
        ["Share who left", f"{metrics['exited_rate']:.1%}", *extra],
    ]
    return _table(rows, [0.5, 0.16] if newest is None else [0.5, 0.16, 0.16])


def _quality_words(quality: dict, test_file: str, style) -> list:
    """Where the newest rows come from, and whether the test file still resembles them."""
    words = []
    newest = quality.get("newest")
    if newest:
        words.append(
            f"Newest rows: {escape(newest['dataset'])}, {escape(newest['measured'])}; the model"
            " never learnt from them."
        )
    resemblance = quality.get("test_file_drift") or {}
    if resemblance.get("available") and not resemblance["resembles"]:
        words.append(
            f"{escape(test_file)} no longer resembles the incoming data"
            f" ({escape(resemblance['compared'])}: {', '.join(resemblance['drifted'])} changed"
            " much): its figures describe an earlier market; the newest rows say how the model"
            " does now."
        )
    return [Paragraph(" ".join(words), style)] if words else []


def _precision_shares(precision: dict) -> str:
    """ "top 20: 35 %, top 50: 30 %, top 100: 28 %", smallest first; empty when the test data is
    smaller than the smallest top."""
    tops = sorted(
        (int(key.removeprefix("top_")), value)
        for key, value in precision.items()
        if key.startswith("top_")
    )
    return ", ".join(f"top {k}: {value:.0%}" for k, value in tops)


def _who_to_call(ranked: dict, quality: dict, drift_words: str | None, body, cell) -> list:
    leavers, precision = ranked["expected_leavers"], ranked.get("precision")
    figures = (f"<b>{escape(quality['story'])}</b> " if quality.get("story") else "") + (
        f"<b>{_number(ranked['clients'])}</b> current clients. Expected to leave:"
        f" <b>{leavers['expected']:,.0f}</b> (95 % interval {leavers['low']:,}–{leavers['high']:,},"
        + (
            " chance and the model's own error"
            if leavers.get("includes_model_error")
            else " if the probabilities are right"
        )
        + f"), {leavers['share'] or 0:.1%} of them."
        + (f" The interval is {leavers['widened']}." if leavers.get("widened") else "")
    )
    shares = _precision_shares(precision) if precision else ""
    resemblance = quality.get("test_file_drift") or {}
    if resemblance.get("available") and not resemblance["resembles"]:
        # Figures of the old market would mislead: say so instead (they are on page 2).
        figures += (
            " The test clients are of an earlier market: they cannot tell how often the top of"
            " the list is right."
        )
    elif shares:
        figures += (
            f" How often the top of the list is right, on the {_number(precision['rows'])} test"
            f" clients: of those ranked highest, the share who left ({shares}), against"
            f" {precision['base_rate']:.0%} of all clients."
        )
    elif precision:
        figures += (
            f" The {_number(precision['rows'])} test clients are too few to say how often the"
            " top of the list is right."
        )
    rows = [["Rank", "Client", "Risk", "Why: the strongest reasons, and the risk without each"]]
    for client in ranked["top"]:
        why = ". ".join(
            escape(_reason_words(item, client["probability"], full=position == 0))
            for position, item in enumerate(client["reasons"][:REASONS_SHOWN])
        )
        risk = _risk(client["probability"])
        rows.append(
            [
                client["rank"],
                _shorten(client["corporation"]),
                f"{risk} *" if client.get("note") else risk,
                Paragraph(why or "no reason recorded", cell),
            ]
        )
    table = _table(rows, [0.05, 0.09, 0.08, 0.78], align_right_from=2)
    table.setStyle(TableStyle([("FONT", (0, 1), (-1, -1), "Helvetica", 7.5)]))
    table.setStyle(
        TableStyle([("ALIGN", (3, 0), (3, -1), "LEFT"), ("VALIGN", (0, 0), (-1, -1), "TOP")])
    )
    calls = ranked.get("calls_this_week") or 0
    if calls:
        shown = len(ranked["top"])
        figures += f" <b>The first {calls:,} are this week's calls</b>" + (
            " (above the line in the table)."
            if calls < shown
            else f" (marked in the column {ranking.CALL_COLUMN} of the list)."
        )
        if calls < shown:
            table.setStyle(TableStyle([("LINEBELOW", (0, calls), (-1, calls), 1.2, colors.black)]))
    reasoned = (
        "every current client with its reasons"
        if ranked["clients"] <= ranking.REASONED_CLIENTS
        else f"every current client, the first {ranking.REASONED_CLIENTS:,} with their reasons"
    )
    if ranked.get("outside_range"):
        figures += (
            f" {_number(ranked['outside_range'])} of them have figures outside the range the"
            " model has seen: treat their risk as uncertain (marked * below; which figures: the"
            " column outside_range of the list)."
        )
    tight = ParagraphStyle("tight", parent=cell, spaceBefore=1, spaceAfter=2)
    estimate = ranked.get("estimated") or {}
    words, chart = _past_list(ranked, tight)
    if "top_20" in estimate:
        words.insert(
            0,
            Paragraph(
                f"<b>Estimated before outcomes:</b> the model's own probabilities say"
                f" {estimate['top_20']:.0%} of the top 20"
                + (
                    f" and {estimate['top_100']:.0%} of the top 100"
                    if "top_100" in estimate
                    else ""
                )
                + " will leave (an estimate blind to a change in how clients behave).",
                tight,
            ),
        )
    side = [
        *words,
        *([Paragraph(f"<b>What arrives:</b> {escape(drift_words)}", tight)] if drift_words else []),
        *_what_changed(ranked, tight),
    ]
    if chart is not None:  # the chart beside the words, where it costs no height of its own
        side = [Table([[side, chart]], colWidths=[0.64 * CONTENT_WIDTH, 0.36 * CONTENT_WIDTH])]
        side[0].setStyle(
            TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("LEFTPADDING", (0, 0), (0, 0), 0)])
        )
    return [
        Paragraph(figures, body),
        *side,
        Spacer(0, 1 * mm),
        table,
        Paragraph(
            "A reason: what moves the client's risk most, and the risk with that figure alone"
            " typical (a month like its own monthly average; the median year and head count)."
            " Current clients: "
            + escape(ranked.get("current_rule") or "every client still with us")
            + f". The full list, {reasoned}, is {escape(ranked['file'])}.",
            tight,
        ),
    ]


def _past_list(ranked: dict, cell) -> tuple[list, Image | None]:
    """How the newest past list with an outcome since did: its top 20 and whole list in words
    (the top 50 and 100 are in the chart and on the dashboard), and its chart."""
    found = ranked.get("past_lists") or []
    if not found or not any(part.get("with_outcome") for part in found[0]["parts"]):
        return [], None
    newest = found[0]
    parts = [part for part in newest["parts"] if part["with_outcome"]]
    said = []
    for part in (parts[0], parts[-1]) if len(parts) > 1 else parts:
        who = f"the top {part['top']}" if part["top"] else f"all {part['clients']:,} on it"
        said.append(
            f"of {who}, {part['with_outcome']:,} have an outcome since: {part['left']:,} left,"
            f" {part['expected']:,.1f} were expected ({part['low']:,}–{part['high']:,})"
            + (f", {part['at_base_rate']:,.1f} at the base rate" if part["top"] else "")
            + f" ({part['verdict']})"
        )
    words = f"{outcomes.list_name(newest)[0].upper()}{outcomes.list_name(newest)[1:]}: " + (
        "; ".join(said) + "."
    )
    text = Paragraph(
        f"<b>How a past list did.</b> {escape(words)} <i>{escape(outcomes.CALLS_CAVEAT_SHORT)}</i>",
        cell,
    )
    return [text], _image(past_list_png(found[0]["parts"]), 0.35 * CONTENT_WIDTH)


def _reason_words(item: dict, probability: float, full: bool) -> str:
    """A reason on page 1: the strongest in full, the next one short (the figure, and the risk
    without it)."""
    if full or "risk_if_typical" not in item:
        return reason_text(item)
    _, without = percents(probability, item["risk_if_typical"])
    return f"Also {item['reason'].rsplit('; ', 1)[0]}: risk {without} if typical"


def _risk(probability: float) -> str:
    """A probability as people read it: whole percents, never a certain 0 % or 100 %."""
    if probability >= 0.995:
        return ">99%"
    if probability < 0.005:
        return "<1%"
    return f"{probability:.0%}"


def _what_changed(ranked: dict, body) -> list:
    changes = ranked["changes"]
    previous = changes.get("previous")
    if previous is None:
        return [Paragraph("<b>What changed:</b> this is the first ranking.", body)]
    lines = [
        f"<b>What changed</b> since the ranking of {readable_utc(previous['made_at'])} (model"
        f" {previous['model_version']}, {_number(previous['clients'])} clients):"
        f" {changes['joined_list']:,} clients joined the list and {changes['left_list']:,} left"
        " it."
    ]
    if changes["new_in_top"]:
        items = ", ".join(
            f"<b>{escape(_shorten(item['corporation']))}</b> (now {item['rank']},"
            + (" new" if item["previous_rank"] is None else f" was {item['previous_rank']}")
            + ")"
            for item in changes["new_in_top"][:CHANGES_SHOWN]
        )
        lines.append(f"New in the top {TOP_SHOWN}: {items}{_more(changes['new_in_top'])}.")
    else:
        lines.append(f"Nobody new in the top {TOP_SHOWN}.")
    if changes["risers"]:
        items = ", ".join(
            f"<b>{escape(_shorten(item['corporation']))}</b>"
            f" {_risk(item['previous_probability'])} → {_risk(item['probability'])}"
            f" (rank {item['previous_rank']} → {item['rank']})"
            for item in changes["risers"]
        )
        lines.append(f"Biggest risers: {items}.")
    if changes["left_top"]:
        items = ", ".join(
            f"{escape(_shorten(item['corporation']))} (was {item['previous_rank']}):"
            f" {escape(item['now'])}"
            for item in changes["left_top"][:CHANGES_SHOWN]
        )
        lines.append(f"Out of the top {TOP_SHOWN}: {items}{_more(changes['left_top'])}.")
    return [Paragraph(" ".join(lines), body)]  # one paragraph: page 1 has no height to spare


def _more(items: list) -> str:
    """ " and 15 more" for the clients of a line of what changed beyond the first shown."""
    return f" and {len(items) - CHANGES_SHOWN} more" if len(items) > CHANGES_SHOWN else ""


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
    test = read_labelled_csv(config.test_data_file)
    metrics = evaluate_model(model, test)
    probabilities = predict(model, test)["probability"].to_numpy()
    ranked = _ranking(config, report, deployment)
    with open_history(config.history_location) as history:
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
        "test_file": config.test_data_file.name,
        "diagnostics": report,
        "ranking": ranked,
        "confusion_png": confusion_matrix_png(metrics, title),
        "precision_png": precision_at_k_png(test[TARGET].to_numpy(), probabilities),
        "calibration_png": calibration_png(test[TARGET].to_numpy(), probabilities),
        "history_png": score_history_png(scores, deployments),
    }


def _ranking(config: Config, report: dict, deployment) -> dict:
    """The newest ranking of the live model: ranking.json, else the one in diagnostics.json."""
    try:
        summary = ranking.read_summary(config)
    except PipelineError:
        summary = None
    if summary is None or summary.get("model_sha256") != deployment.manifest["model_sha256"]:
        summary = report.get("ranking")
    if not summary or "expected_leavers" not in summary:
        raise PipelineError(
            f"{config.model_dir / ranking.RANKING_SUMMARY_FILE}: no ranking of {deployment.label}"
            " yet; run diagnostics.py (or ranking.py) first"
        )
    return summary


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
    with open_history(config.history_location) as history:
        history.record_reports(
            deployment.manifest["model_sha256"],
            deployment.label,
            report.get("data", {}).get("through_batch"),
        )
    logger.debug("wrote %s (%d pages) and %s", pdf_path, pages, png_path)
    return ReportingResult(pdf_path, png_path, pages)
