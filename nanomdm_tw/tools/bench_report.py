"""
What nanomdm-bench prints: one Figure per measured phase, and its tables.
"""

from dataclasses import dataclass


@dataclass
class Figure:
    target: str
    phase: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    server_cpu: float  # share of one core
    client_cpu: float  # share of one core, all load generators together
    workers: int = 0  # server processes (0: not a nanomdm server)
    database_cpu: float = 0.0  # share of one core: the database server, on our connections

    @property
    def label(self) -> str:
        return f"{self.target} x{self.workers}" if self.workers else self.target

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def server_cpu_ms(self) -> float:
        """Server CPU (all its processes and threads) per request, in milliseconds."""
        return self.server_cpu / self.rate * 1000

    @property
    def database_cpu_ms(self) -> float:
        """Database server CPU per request, in milliseconds."""
        return self.database_cpu / self.rate * 1000


def scaling_table(figures: list[Figure]) -> str:
    """Per backend and phase: req/s, p99 and CPU ms/req per process count ('' if one each)."""
    runs: dict[tuple[str, str], list[Figure]] = {}
    for f in figures:
        if f.workers:
            runs.setdefault((f.target, f.phase), []).append(f)
    rows = [("target", "phase", "workers", "req/s", "p99 ms", "CPU ms/req", "vs fewest")]
    for (target, phase), run in runs.items():
        if len(run) < 2:
            continue
        base = min(run, key=lambda f: f.workers)
        rows += [
            (target, phase, str(f.workers), f"{f.rate:,.0f}", f"{f.p99_ms:.2f}",
             f"{f.server_cpu_ms:.3f}", f"{f.rate / base.rate:.2f}x")
            for f in sorted(run, key=lambda f: f.workers)
        ]  # fmt: skip
    return columns(rows) if len(rows) > 1 else ""
# --seed-rows: the same phases on a store with a history, against the empty one.


def seeded_table(figures: list[Figure]) -> str:
    """Per backend and phase: empty and seeded store side by side, with seeded/empty ratios."""
    empty = {(f.target, f.phase, f.workers): f for f in figures}
    rows = [("target", "phase", "req/s", "seeded", "ratio", "p50 ms", "seeded", "ratio",
             "CPU ms/req", "seeded", "ratio", "DB ms/req", "seeded", "ratio")]
    for seeded in figures:
        if not seeded.target.endswith(" seeded"):
            continue
        base = empty[(seeded.target.removesuffix(" seeded"), seeded.phase, seeded.workers)]
        row = [base.target, seeded.phase]
        for a, b, digits in (
            (base.rate, seeded.rate, 0),
            (base.p50_ms, seeded.p50_ms, 2),
            (base.server_cpu_ms, seeded.server_cpu_ms, 3),
            (base.database_cpu_ms, seeded.database_cpu_ms, 3),
        ):
            ratio = f"{b / a:.2f}" if a else "-"
            row += [f"{a:,.{digits}f}", f"{b:,.{digits}f}", ratio]
        rows.append(tuple(row))
    return columns(rows)


def table(figures: list[Figure], ceiling: float) -> str:
    header = (
        "target",
        "phase",
        "requests",
        "req/s",
        "p50 ms",
        "p99 ms",
        "vs bare",
        "errors",
        "server CPU",
        "CPU ms/req",
        "client CPU",
    )
    rows = [header] + [
        (
            f.label,
            f.phase,
            str(f.requests),
            f"{f.rate:,.0f}",
            f"{f.p50_ms:.2f}",
            f"{f.p99_ms:.2f}",
            f"{f.rate / ceiling:.0%}",
            str(f.errors),
            f"{f.server_cpu:.0%}",
            f"{f.server_cpu_ms:.3f}",
            f"{f.client_cpu:.0%}",
        )
        for f in figures
    ]
    return columns(rows)


def columns(rows: list[tuple[str, ...]]) -> str:
    """Rows as aligned text: the first two columns to the left, the others to the right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i < 2 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths))
        )
        for row in rows
    )
