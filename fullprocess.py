"""Keep the deployed model current; run by cron every 10 minutes, unattended.

1. Nothing deployed yet: bootstrap (ingest, train, score, deploy, then report).
2. New data? Input files not read before (by name and content), or stored batches that no run
   has judged yet. None: stop, after making the reports again if they are behind the live model.
3. Ingest, then judge the new rows: is the deployed model still right on them (`drift_check`),
   would a model fitted on them do better, and each feature against its training data. Fewer
   than `min_batch_rows` rows: "insufficient data". No drift: stop, with the batches recorded as
   judged. A store too small for any test (`min_comparison_rows`) learns every new row instead.
4. Drift: retrain with the recipe (window, age weights, model family) that predicts the newest
   rows best, compare it with the deployed model row by row on held-out newest rows (or out of
   fold when too few can be held out), give a stored model that does better back its place, and
   deploy unless the retrained model is significantly worse, and only if the model it was judged
   against is still live (a rollback meanwhile wins).
5. Then diagnostics, reporting and the API calls (an API that does not answer is recorded, not a
   failure).

One run at a time: a second run exits at once with code 75. When nothing has changed since the
last quiet run, the tick is decided by `clientrisk.pipeline.quiettick` before anything else is
imported; the rest is `clientrisk.pipeline.fullprocess`.
"""

from __future__ import annotations

import sys

from clientrisk.pipeline import quiettick

if __name__ == "__main__":
    _quiet = quiettick.run(sys.argv[1:], quiettick.config_path(__file__))
    if _quiet is not None:
        sys.exit(_quiet)

# The imports below come after the quiet tick, which needs none of them.
from types import SimpleNamespace

from clientrisk.config import default_config_path
from clientrisk.pipeline.fullprocess import test_alert, tick


def parse_args(argv: list[str] | None):
    """The options; without any (as cron runs it) argparse, a few milliseconds, is not needed."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        return SimpleNamespace(config=default_config_path(beside=__file__), verbose=False)
    from clientrisk.cli import build_parser

    parser = build_parser(__file__, __doc__)
    parser.add_argument(
        "--test-alert",
        action="store_true",
        help="send a test message to every configured alert receiver and exit (0: all took it)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if getattr(args, "test_alert", False):
        return test_alert(args)
    return tick(args)


if __name__ == "__main__":
    sys.exit(main())
