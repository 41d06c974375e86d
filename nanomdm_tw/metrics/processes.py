"""
Metrics of several server processes (``--workers``) reported as one.

prometheus_client's multi-process mode: every process writes its values
to files in one folder (``PROMETHEUS_MULTIPROC_DIR``), and whichever
process answers ``/metrics`` adds up all the files.  The mode is chosen
when prometheus_client is first imported, so the first process sets the
variable before it creates any metric (ours are created on first use), and
the workers inherit it with the rest of its environment.

The folder is a fresh private one per start (``mkdtemp``: mode 0700,
empty, so no stale files of an earlier run are summed) and removed at
shut-down.  A worker that dies and is restarted leaves its files: its
counts stay in the sums, as Prometheus counters must never go down.
The process and garbage-collector metrics of a single process are not
reported in this mode (they are per process).
"""

import os
import shutil
import sys
import tempfile

from . import metrics_created

MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def share_between_processes() -> str:
    """Create the private folder and switch this process (and its children) to it."""
    if metrics_created() or "prometheus_client" in sys.modules:
        raise RuntimeError("metrics must be shared between processes before any exists")
    folder = tempfile.mkdtemp(prefix="nanomdm-metrics-")
    os.environ[MULTIPROC_VARIABLE] = folder
    return folder


def stop_sharing(folder: str) -> None:
    """Remove the folder at shut-down (the workers have stopped)."""
    shutil.rmtree(folder, ignore_errors=True)
    if os.environ.get(MULTIPROC_VARIABLE) == folder:
        del os.environ[MULTIPROC_VARIABLE]


def multiprocess_folder() -> str | None:
    return os.environ.get(MULTIPROC_VARIABLE) or None


def collecting_registry():
    """
    The registry ``/metrics`` reads: this process's, or, with ``--workers``,
    one that adds up every process's files when collected (reading them:
    collect off the reactor thread then).
    """
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    folder = multiprocess_folder()
    if folder is None:
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=folder)
    return registry


def exposition() -> tuple[bytes, str]:
    """(body, content type) of the Prometheus text format, as collecting_registry() counts."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return generate_latest(collecting_registry()), CONTENT_TYPE_LATEST


def counter_samples() -> dict[str, list[tuple[dict[str, str], float]]]:
    """
    Every counter's ``_total`` samples by name, (labels, value) each, as
    ``/metrics`` would show them; a counter not created yet is absent.
    """
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in collecting_registry().collect():
        if family.type != "counter":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples
