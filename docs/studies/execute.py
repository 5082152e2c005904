"""Execute the study notebooks (nbclient) against the committed results; ``--write`` stores
them executed, outputs included, so GitHub shows the numbers.

    python docs/studies/execute.py --write      # after the results changed on purpose (make notebooks)
    python docs/studies/execute.py              # check: exit 1 when a stored output differs

``tests/test_study_notebooks.py`` runs the check. Only text outputs are compared (Markdown,
plain text, stdout; not stderr warnings); the kernel runs from the repository root's ``docs/studies`` with
``$GREAT_BENCH_ROOT`` (bench.report.writeup.ROOT_ENV) naming where ``results/`` lives.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
NOTEBOOKS = sorted(HERE.glob("*.ipynb"))
TEXT = ("text/markdown", "text/plain")


def execute(path: Path, root: Path = REPO, timeout: int = 120) -> nbformat.NotebookNode:
    """The notebook at ``path`` executed afresh with results read from ``root``."""
    nb = nbformat.read(path, as_version=4)
    env = dict(os.environ, GREAT_BENCH_ROOT=str(root), PYTHONPATH=os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]), MPLBACKEND="Agg")
    old = dict(os.environ)
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
    return nb


def text_outputs(nb: nbformat.NotebookNode) -> list[str]:
    """Every code cell's text output, in order: what a reader reads."""
    out = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream":
                if o["name"] == "stdout":  # warnings on stderr differ between machines; not prose
                    out.append(f"[{i}] stdout: {o['text']}")
            elif o.get("output_type") == "error":
                out.append(f"[{i}] error: {o['ename']}: {o['evalue']}")
            else:
                data = o.get("data", {})
                kind = next((k for k in TEXT if k in data), None)
                if kind:
                    text = data[kind]
                    out.append(f"[{i}] {kind}: {''.join(text) if isinstance(text, list) else text}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="store the notebooks executed")
    ap.add_argument("notebooks", nargs="*", type=Path, default=NOTEBOOKS)
    args = ap.parse_args(argv)
    bad = 0
    for path in args.notebooks:
        fresh = execute(path)
        if args.write:
            nbformat.write(fresh, path)
            print(f"wrote {path}")
        elif text_outputs(fresh) != text_outputs(nbformat.read(path, as_version=4)):
            print(f"{path}: stored outputs differ from a fresh execution; rerun with --write if the results "
                  "changed on purpose", file=sys.stderr)
            bad = 1
    return bad


if __name__ == "__main__":
    sys.exit(main())
