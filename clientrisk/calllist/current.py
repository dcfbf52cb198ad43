"""Who is current: the clients the call list holds.

Once the company has sent a roster (rows without an outcome), the latest roster
(the rows without an outcome of the newest batch that has any) is the list of current clients,
less those with a recorded exit in that batch or a later one; a later batch with outcomes adds
none of its stayers. Without any roster, a client is current when its latest observation is a
recorded stay and it has no recorded exit at all. Either way a client who left is listed again
only when a later roster lists it. Each client is ranked on its latest observation (from the
roster on); within one batch a row without an outcome is the present observation and wins over
a recorded stay, then the last line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from clientrisk.data import batchstore, rowkeys
from clientrisk.data.clientcsv import ID_COLUMN, TARGET


def current_clients(ingested_dir: Path, seqs, outcomes: pd.DataFrame | None = None) -> pd.DataFrame:
    """The latest observation of every current client (see the module's docstring), with the
    batch it came in.

    Args:
        outcomes: the stored rows with an outcome of `seqs` (with their batch), when the caller
            has read them already.
    """
    if outcomes is None:
        outcomes = batchstore.read_rows(ingested_dir, seqs, batchstore.OUTCOMES_FILE)
    present = batchstore.read_rows(ingested_dir, seqs, batchstore.CURRENT_FILE)
    exited = outcomes[TARGET].to_numpy(dtype="float64", na_value=np.nan) == 1
    if len(present):  # the latest roster, less who left in its batch or later
        roster_batch = present[batchstore.BATCH_COLUMN].max()
        roster = present[present[batchstore.BATCH_COLUMN].to_numpy() == roster_batch]
        later = outcomes[batchstore.BATCH_COLUMN].to_numpy() >= roster_batch
        left = outcomes.loc[later & exited, ID_COLUMN]
        rows = pd.concat([outcomes[later & ~exited], roster], ignore_index=True)
        keep = batchstore.codes_in(rows[ID_COLUMN], roster[ID_COLUMN])
    else:  # no roster: the stayers who never left
        left = outcomes.loc[exited, ID_COLUMN]
        rows = outcomes[~exited].reset_index(drop=True)
        keep = np.ones(len(rows), dtype=bool)
    if len(left):
        keep &= ~batchstore.codes_in(rows[ID_COLUMN], left)
    rows = rows[keep]
    no_outcome = np.isnan(rows[TARGET].to_numpy(dtype="float64", na_value=np.nan))
    # Within a batch a row without an outcome after a recorded stay, in arrival order within
    # each (one stable sort of an integer key, not a sort on two columns).
    key = rows[batchstore.BATCH_COLUMN].to_numpy() * 2 + no_outcome
    rows = rows.iloc[np.argsort(key, kind="stable")]
    last = ~rowkeys.duplicated(rows, [ID_COLUMN], keep="last")
    return rows[last].drop(columns=[TARGET]).reset_index(drop=True)


def current_rule(batches) -> str:
    """Who the list holds, in a sentence for its readers, from the stored batches (in the
    history's form)."""
    rosters = [batch for batch in batches if batch.current_rows]
    if rosters:
        return (
            f"the clients on the latest roster ({rosters[-1].source}, batch {rosters[-1].seq}),"
            " less those who left since; a later file with outcomes adds no one, and a client"
            " who left is listed again only when a later roster lists it"
        )
    return (
        "no roster has been sent: the clients whose latest record says they stayed and who"
        " never left"
    )
