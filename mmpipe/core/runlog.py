"""Logging for workflow jobs: everything to the job's log file, errors also to the console."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Iterator

from mmpipe.core.errors import MmpipeError


@contextlib.contextmanager
def job_log(path: str | Path | None) -> Iterator[logging.Logger]:
    """Send logging and stderr (progress bars) to ``path``; a failure is also shown on the console."""
    console = sys.stderr
    if path is None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
        yield logging.getLogger("mmpipe")
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        sys.stderr = fh
        try:
            yield logging.getLogger("mmpipe")
        except MmpipeError as exc:
            logging.getLogger("mmpipe").error("%s", exc)
            print(f"mmpipe error: {exc}", file=console)
            raise
        except Exception:
            logging.getLogger("mmpipe").exception("job failed")
            raise
        finally:
            sys.stderr = console
            root.removeHandler(handler)
