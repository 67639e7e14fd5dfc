"""Progress of long loops (encoding, epochs): a live bar with its rate on a terminal; in a log
(dvc repro piped, a Prefect worker, CI) no bar at all, and the caller logs one summary line when
the loop is done, so a log holds one line per stage rather than one per step."""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm


def progress(total: int, desc: str, unit: str, file: TextIO | None = None) -> tqdm:
    """A tqdm bar over `total` `unit`s, shown only when `file` (stderr by default) is a terminal."""
    return tqdm(total=total, desc=desc, unit=unit, file=file or sys.stderr, disable=None, leave=False,
                mininterval=0.5, dynamic_ncols=True)
