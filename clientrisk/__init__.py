"""The machinery of the client-attrition risk system; the step scripts beside it are what you run.

    data/        client CSVs, their checks, and the append-only store of batches
    model/       the model's features, training and scoring
    calllist/    the ranked list of current clients and the reasons for each risk
    monitoring/  drift statistics, judging new batches, and retraining a challenger
    deployment/  versioned deployments, the live pointer and rollback
    history/     the history database of batches, runs, scores, verdicts and rankings
    alerts/      what is worth telling someone, told by webhook and e-mail
    pipeline/    what one unattended run decides and does, and the quiet cron tick
    api/         the Flask application, its dashboard and metrics, and the API's client
    report/      diagnostics and the PDF report

Importing the package (or any of its subpackages) imports nothing else: a quiet cron tick
imports only the modules it needs.
"""

__version__ = "0.2.0"
