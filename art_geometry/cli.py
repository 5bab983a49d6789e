"""
The ``art-geometry`` command.

``art-geometry report --demo`` trains four small CNNs on the embedded digits data from the same initial weights
(natural with batch 512 and 32, the PRS paper's network A/B contrast; Jacobian-regularised; PGD adversarial
training; see :mod:`art_geometry.report.demo`), tracks their geometry over training and writes the benchmark
report. ``art-geometry report --model ... --data ...`` does the same for the user's models.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from art_geometry.datasets import Dataset, load_digits, load_fashion_mnist
from art_geometry.report import SECTIONS, ReportContext, write_report
from art_geometry.report.demo import demo_models

__all__ = ["main", "load_data", "load_model"]


def load_data(spec: str) -> Dataset:
    """
    :param spec: ``digits``, ``fashion-mnist``, or an ``.npz`` file with ``x_train, y_train, x_test, y_test`` (or
                 ``x, y``, used as both splits).
    :return: The data set.
    :raises ValueError: For an unknown name or a file missing the arrays.
    """
    if spec == "digits":
        return load_digits()
    if spec == "fashion-mnist":
        return load_fashion_mnist()
    path = Path(spec)
    if path.suffix != ".npz" or not path.exists():
        raise ValueError(f"--data must be 'digits', 'fashion-mnist' or an existing .npz file, got {spec!r}")
    with np.load(path) as f:
        keys = set(f.files)
        if {"x_train", "y_train", "x_test", "y_test"} <= keys:
            arrays = [f[k] for k in ("x_train", "y_train", "x_test", "y_test")]
        elif {"x", "y"} <= keys:
            arrays = [f["x"], f["y"], f["x"], f["y"]]
        else:
            raise ValueError(f"{path} must hold arrays x_train, y_train, x_test, y_test (or x, y); it has {sorted(keys)}")
    x_tr, y_tr, x_te, y_te = arrays
    return Dataset(x_tr.astype(np.float32), y_tr.astype(np.int64), x_te.astype(np.float32), y_te.astype(np.int64),
                   path.stem)


def load_model(spec: str, weights: "str | None" = None) -> torch.nn.Module:
    """
    :param spec: A TorchScript file (``model.pt``), or ``package.module:factory`` (a callable returning an
                 ``nn.Module``).
    :param weights: A ``state_dict`` file for a factory model.
    :return: The model in eval mode, on the CPU.
    :raises ValueError: When the spec names nothing loadable.
    """
    if ":" in spec and not Path(spec).exists():
        module_name, _, factory = spec.partition(":")
        try:
            model = getattr(importlib.import_module(module_name), factory)()
        except (ImportError, AttributeError) as err:
            raise ValueError(f"--model {spec!r}: cannot load factory {factory!r} from {module_name!r}: {err}") from err
        if weights is not None:
            model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    else:
        if not Path(spec).exists():
            raise ValueError(f"--model {spec!r}: no such file, and not of the form module:factory")
        model = torch.jit.load(spec, map_location="cpu")
    return model.eval()


def _print_summary(rows: Sequence[tuple[str, str, str]]) -> None:
    w0 = max([len("model")] + [len(r[0]) for r in rows])
    w1 = max([len("metric")] + [len(r[1]) for r in rows])
    print(f"{'model':<{w0}}  {'metric':<{w1}}  value")
    for model, metric, value in rows:
        print(f"{model:<{w0}}  {metric:<{w1}}  {value}")


def _report(args: argparse.Namespace) -> int:
    wanted = args.sections.split(",") if args.sections else [s.key for s in SECTIONS]
    known = {s.key: s for s in SECTIONS}
    unknown = [k for k in wanted if k not in known]
    if unknown:
        raise SystemExit(f"art-geometry report: unknown section(s) {unknown}; available: {sorted(known)}")
    extras: dict[str, Any] = {}
    if args.demo:
        data = load_data(args.data or "digits")
        demo = demo_models(data, epochs=args.epochs, seed=args.seed, track="training" in wanted,
                           verbose=not args.quiet)
        models = demo.models
        if demo.histories:
            extras["training"] = demo.histories
    else:
        if not args.model or not args.data:
            raise SystemExit("art-geometry report: give --demo, or --model and --data")
        data = load_data(args.data)
        weights = list(args.weights or [])
        models = {}
        for spec in args.model:
            w = weights.pop(0) if ":" in spec and weights else None
            models[Path(spec).stem if ":" not in spec else spec] = load_model(spec, w)
    ctx = ReportContext(models=models, data=data, seed=args.seed, n_samples=args.samples,
                        batch_size=args.batch_size, verbose=not args.quiet, extras=extras)
    json_path, html_path, rows = write_report(ctx, [known[k]() for k in wanted], args.out)
    _print_summary(rows)
    print(f"\nreport written to {html_path.resolve()}\n           data in {json_path.resolve()}")
    return 0


def main(argv: "Sequence[str] | None" = None) -> int:
    """
    Entry point of the ``art-geometry`` command.

    :param argv: Arguments (default ``sys.argv[1:]``).
    :return: Exit status.
    """
    parser = argparse.ArgumentParser(prog="art-geometry", description=__doc__.strip().splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help="compute the geometry metrics and write report.json + report.html")
    rep.add_argument("--demo", action="store_true", help="train four small CNNs on digits (natural batch 512 and 32, "
                     "Jacobian-regularised, PGD adversarial) and report")
    rep.add_argument("--model", action="append", help="TorchScript file or module:factory (repeatable)")
    rep.add_argument("--weights", action="append", help="state_dict for the n-th module:factory model (repeatable)")
    rep.add_argument("--data", help="digits, fashion-mnist, or an .npz file (default for --demo: digits)")
    rep.add_argument("--out", default="report_out", help="output folder (default: report_out)")
    rep.add_argument("--sections", help=f"comma-separated subset of: {', '.join(s.key for s in SECTIONS)}")
    rep.add_argument("--epochs", type=int, default=15, help="--demo: training epochs per model (default 15)")
    rep.add_argument("--samples", type=int, default=500, help="test samples for per-sample metrics (default 500)")
    rep.add_argument("--batch-size", type=int, default=256)
    rep.add_argument("--seed", type=int, default=0)
    rep.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    return _report(args)


if __name__ == "__main__":
    raise SystemExit(main())
