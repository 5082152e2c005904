"""A writer process for the concurrent-writers test: imports only ``bench.csv_files`` (fast to spawn)."""
from bench.csv_files import merge_rows


def write(path: str, who: int, n: int) -> None:
    """Merge ``n`` rows, one call each, as an evaluator does after every attack."""
    for i in range(n):
        merge_rows(path, [{"writer": who, "i": i, "value": who * 1000 + i}],
                   key=lambda r: (str(r["writer"]), str(r["i"])), fields=["writer", "i", "value"])
