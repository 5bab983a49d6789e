"""
The ``art-geometry`` command.

``art-geometry report --demo`` trains four small CNNs on the embedded digits data from the same initial weights
(natural with batch 512 and 32, the PRS paper's network A/B contrast; Jacobian-regularised; PGD adversarial
training; see :mod:`art_geometry.report.demo`), tracks their geometry over training and writes the benchmark
report. ``art-geometry report --model ... --data ...`` does the same for the user's models; with
``--checkpoint DIR`` an interrupted report resumes, training and computing only what had not finished.

``art-geometry sweep --family margins|subspace|prs|robust --model ... --data ... [--checkpoint DIR]`` runs one
per-sample family over a data split and writes its result as JSON; under ``torchrun --nproc_per_node=N`` (or
``python -m art_geometry``) the samples are sharded over the ranks (gloo on CPU, NCCL with ``--device cuda``),
rank 0 shows the one progress bar and writes the result, and ``--checkpoint`` makes the sweep resumable.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import warnings
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Iterator, NoReturn, Sequence

import numpy as np
import torch

from art_geometry.core.model import adapt, probe
from art_geometry.datasets import Dataset, load_digits, load_fashion_mnist
from art_geometry.report import SECTIONS, ReportContext, write_report
from art_geometry.report.demo import demo_models
from art_geometry.report.resume import ReportCheckpoint, report_settings

__all__ = ["main", "load_data", "load_model"]

#: What ``np.load`` and reading its arrays raise for a file that is not a readable ``.npz``.
_NPZ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


def _brief(err: BaseException, limit: int = 200) -> str:
    """
    :param err: An exception raised by the user's file or code.
    :param limit: Most characters kept.
    :return: ``Type: message`` on one line; of a TorchScript interpreter trace, only its last line (the error,
             ``Type: message`` itself).
    """
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if any(line.startswith("Traceback") for line in lines):
        text = lines[-1]
    else:
        text = f"{type(err).__name__}: {' '.join(lines)}" if lines else type(err).__name__
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _listed(names: Sequence[str], most: int = 3) -> str:
    """
    :param names: Names to list.
    :param most: How many to spell out.
    :return: The first ``most`` names, comma-separated, and how many more there are.
    """
    more = f" (+{len(names) - most} more)" if len(names) > most else ""
    return ", ".join(names[:most]) + more


def _checked_split(path: Path, x_key: str, x: np.ndarray, y_key: str, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """
    :param path: The ``.npz`` file (for messages).
    :param x_key: Name of the inputs array in the file.
    :param x: Inputs, ``(N, ...)``.
    :param y_key: Name of the labels array in the file.
    :param y: Labels, ``(N,)``.
    :return: ``(x, y)`` as float32 and int64.
    :raises ValueError: For no samples, non-numeric or non-finite inputs, labels that are not non-negative integers
                        of shape ``(N,)``, or differing numbers of inputs and labels.
    """
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"{path}: {x_key} must hold at least one sample, shape (N, ...); it has shape {x.shape}")
    if x.dtype.kind not in "biuf":
        raise ValueError(f"{path}: {x_key} must hold numbers, it has dtype {x.dtype}")
    if not np.isfinite(x).all():
        raise ValueError(f"{path}: {x_key} holds NaN or infinite values")
    if y.ndim != 1:
        raise ValueError(f"{path}: {y_key} must be integer class labels of shape (N,), it has shape {y.shape} "
                         "(for one-hot labels, save y.argmax(1))")
    if len(x) != len(y):
        raise ValueError(f"{path}: {x_key} holds {len(x)} samples but {y_key} holds {len(y)} labels")
    if y.dtype.kind not in "biuf" or (y.dtype.kind == "f" and not (np.isfinite(y).all() and (y == np.round(y)).all())):
        raise ValueError(f"{path}: {y_key} must hold integer class labels, it has dtype {y.dtype}")
    if (y < 0).any():
        raise ValueError(f"{path}: {y_key} holds negative labels; class labels are 0, 1, 2, ...")
    return x.astype(np.float32), y.astype(np.int64)


def load_data(spec: str) -> Dataset:
    """
    :param spec: ``digits``, ``fashion-mnist``, or an ``.npz`` file with ``x_train, y_train, x_test, y_test`` (or
                 ``x, y``, used as both splits).
    :return: The data set.
    :raises ValueError: For an unknown name, Fashion-MNIST not installed, a file that is not a readable ``.npz``, a
                        file missing the arrays, or arrays that do not make a labelled data set (see the message).
    """
    if spec == "digits":
        return load_digits()
    if spec == "fashion-mnist":
        try:
            return load_fashion_mnist()
        except FileNotFoundError as err:
            raise ValueError(f"--data fashion-mnist: {err}") from err
    path = Path(spec)
    if path.suffix != ".npz" or not path.exists():
        raise ValueError(f"--data must be 'digits', 'fashion-mnist' or an existing .npz file, got {spec!r}")
    try:
        # the file opened here, not by np.load: numpy leaves its own handle open when the zip is truncated
        with open(path, "rb") as handle, np.load(handle) as f:
            arrays = {k: f[k] for k in f.files}
    except _NPZ_ERRORS as err:
        raise ValueError(f"--data {spec!r} is not a readable .npz file ({_brief(err)})") from err
    if {"x_train", "y_train", "x_test", "y_test"} <= set(arrays):
        names = ["x_train", "y_train", "x_test", "y_test"]
    elif {"x", "y"} <= set(arrays):
        names = ["x", "y", "x", "y"]
    else:
        raise ValueError(f"{path} must hold arrays x_train, y_train, x_test, y_test (or x, y); it has {sorted(arrays)}")
    x_tr, y_tr = _checked_split(path, names[0], arrays[names[0]], names[1], arrays[names[1]])
    x_te, y_te = _checked_split(path, names[2], arrays[names[2]], names[3], arrays[names[3]])
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise ValueError(f"{path}: train samples have shape {x_tr.shape[1:]} but test samples {x_te.shape[1:]}")
    if max(y_tr.max(), y_te.max()) < 1:
        raise ValueError(f"{path}: every label is 0; decision geometry needs at least two classes")
    return Dataset(x_tr, y_tr, x_te, y_te, path.stem)


def _is_factory(spec: str) -> bool:
    """
    :param spec: A ``--model`` value.
    :return: Whether it is ``module:factory`` (rather than a file).
    """
    return ":" in spec and not Path(spec).exists()


def _load_weights(model: torch.nn.Module, spec: str, weights: str) -> None:
    """
    Load a ``state_dict`` file into a factory model, strictly.

    :param model: The model.
    :param spec: Its ``--model`` value (for messages).
    :param weights: The ``state_dict`` file.
    :raises ValueError: When the file cannot be read as a ``state_dict``, or does not fit the model (missing or
                        unexpected keys, other shapes).
    """
    try:
        with warnings.catch_warnings():  # torch.load warns (then fails) on a TorchScript archive
            warnings.simplefilter("ignore")
            state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"--weights {weights!r} cannot be read as a state_dict: {_brief(err)}") from err
    if not isinstance(state, Mapping):
        raise ValueError(f"--weights {weights!r} holds a {type(state).__name__}, not a state_dict "
                         "(save it with torch.save(model.state_dict(), path))")
    expected = model.state_dict()
    problems = []
    missing = [str(k) for k in expected if k not in state]
    unexpected = [str(k) for k in state if k not in expected]
    if missing:
        problems.append(f"missing keys {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_listed(unexpected)}")
    if problems:
        raise ValueError(f"--weights {weights!r} does not fit --model {spec!r}: {'; '.join(problems)}")
    try:
        model.load_state_dict(state)
    except Exception as err:
        raise ValueError(f"--weights {weights!r} does not fit --model {spec!r}: {_brief(err, 300)}") from err


def _import_from_here(module_name: str) -> Any:
    """:return: The module, imported with the current folder first on the path (as ``python -m`` imports)."""
    here = os.getcwd()
    added = here not in sys.path
    if added:
        sys.path.insert(0, here)
    try:
        return importlib.import_module(module_name)
    finally:
        if added:
            sys.path.remove(here)


def load_model(spec: str, weights: "str | None" = None) -> torch.nn.Module:
    """
    :param spec: A TorchScript file (``model.pt``), or ``package.module:factory`` (a callable returning an
                 ``nn.Module``), imported with the current folder on the path.
    :param weights: A ``state_dict`` file for a factory model.
    :return: The model in eval mode.
    :raises ValueError: When the spec names nothing loadable (no such file, not a TorchScript file, a factory that
                        cannot be imported, fails or returns something other than a ``torch.nn.Module``), or the
                        weights cannot be read or do not fit the model.
    """
    if _is_factory(spec):
        module_name, _, factory = spec.partition(":")
        try:
            make = getattr(_import_from_here(module_name), factory)
        except Exception as err:
            hint = " (is its folder on PYTHONPATH?)" if isinstance(err, ModuleNotFoundError) else ""
            raise ValueError(
                f"--model {spec!r}: cannot load factory {factory!r} from {module_name!r}: {_brief(err)}{hint}"
            ) from err
        try:
            model = make()
        except Exception as err:
            raise ValueError(f"--model {spec!r}: calling {factory}() failed: {_brief(err)}") from err
        if not isinstance(model, torch.nn.Module):
            raise ValueError(f"--model {spec!r}: the factory returned {type(model).__name__}, expected torch.nn.Module")
        if weights is not None:
            _load_weights(model, spec, weights)
    else:
        if not Path(spec).exists():
            raise ValueError(f"--model {spec!r}: no such file, and not of the form module:factory")
        if weights is not None:
            raise ValueError(f"--weights {weights!r}: only a module:factory model takes weights, {spec!r} is a file")
        try:
            with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript: the user's file, not their call
                warnings.filterwarnings("ignore", message="`torch.jit.load` is deprecated", category=DeprecationWarning)
                model = torch.jit.load(spec, map_location="cpu")
        except (RuntimeError, ValueError, OSError) as err:
            raise ValueError(
                f"--model {spec!r} is not a TorchScript file; for a state_dict saved with torch.save, "
                f"give --model package.module:factory --weights {spec}"
            ) from err
    return model.eval()


def _probe(spec: str, model: torch.nn.Module, data: Dataset) -> None:
    """
    Run the model once on the first test sample, so that a model that does not fit the data fails here, with a
    message, rather than deep inside the report.

    :param spec: The model's ``--model`` value (for messages).
    :param model: The model, in eval mode.
    :param data: The data set.
    :raises ValueError: When the forward pass raises (the adapter's probe), or does not return logits of shape
                        ``(1, K)`` with ``K`` at least the number of classes of the data (and at least 2).
    """
    try:
        view, _ = probe(adapt(model), data.x_test[:1], "--data")
    except ValueError as err:
        detail = str(err) if err.__cause__ is None else _brief(err.__cause__)
        raise ValueError(f"--model {spec!r} fails on one sample of --data {data.name!r} (sample shape "
                         f"{data.input_shape}): {detail}") from err
    if view.nb_classes < data.nb_classes:
        raise ValueError(f"--model {spec!r} returns {view.nb_classes} logits per sample but --data {data.name!r} "
                         f"has {data.nb_classes} classes")


def _load_models(specs: Sequence[str], weights: Sequence[str], data: Dataset) -> dict[str, torch.nn.Module]:
    """
    :param specs: The ``--model`` values.
    :param weights: The ``--weights`` values, one for each of the first ``module:factory`` models.
    :param data: The data set, for the probe (:func:`_probe`) of each model.
    :return: The models by report name: a file's stem, or the ``module:factory`` spec.
    :raises ValueError: For more weights than factory models, two models of the same name, or a model that does
                        not load or does not fit the data.
    """
    n_factories = sum(_is_factory(spec) for spec in specs)
    if len(weights) > n_factories:
        raise ValueError(f"{len(weights)} --weights but {n_factories} module:factory --model; each --weights is "
                         "for the next module:factory model")
    pending = list(weights)
    models: dict[str, torch.nn.Module] = {}
    for spec in specs:
        factory = _is_factory(spec)
        name = spec if factory else Path(spec).stem
        if name in models:
            raise ValueError(f"--model {spec!r}: another --model has the same report name {name!r}")
        models[name] = load_model(spec, pending.pop(0) if factory and pending else None)
        _probe(spec, models[name], data)
    return models


def _sections(spec: "str | None") -> list[str]:
    """
    :param spec: The ``--sections`` value: comma-separated section keys, or ``None`` for all.
    :return: The keys, in the given order, without repeats.
    :raises ValueError: For an unknown key.
    """
    known = [s.key for s in SECTIONS]
    wanted = list(dict.fromkeys(k.strip() for k in spec.split(","))) if spec else known
    unknown = [k for k in wanted if k not in known]
    if unknown:
        raise ValueError(f"unknown section(s) {unknown} in --sections; available: {', '.join(known)}")
    return wanted


def _inputs(args: argparse.Namespace) -> tuple[list[str], Dataset, dict[str, torch.nn.Module]]:
    """
    Check the arguments and load what the report needs, before any long computation.

    :param args: The parsed ``report`` arguments.
    :return: The section keys, the data set and the user's models (none for ``--demo``).
    :raises ValueError: For any mistake in the arguments, the data or the models; the message names it.
    """
    wanted = _sections(args.sections)
    if args.demo:
        if args.model or args.weights:
            raise ValueError("--demo trains its own models: give --demo, or --model (and --weights), not both")
        data = load_data(args.data or "digits")
        if len(data.input_shape) != 3 or min(data.input_shape[1:]) < 2:
            raise ValueError(f"--demo trains CNNs on images of shape (C, H, W), H and W at least 2; "
                             f"--data {data.name!r} has samples of shape {data.input_shape}")
        models = {}
    else:
        if not args.model or not args.data:
            raise ValueError("give --demo, or --model and --data")
        data = load_data(args.data)
        models = _load_models(args.model, args.weights or [], data)
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise ValueError(f"--out {args.out!r} exists and is not a folder")
    return wanted, data, models


def _fail(prog: str, message: str) -> NoReturn:
    """
    End the command as ``argparse`` does for a usage error: one line ``<prog>: error: <message>`` on stderr and
    exit status 2. The line is also a note on the ``SystemExit`` (for callers of :func:`main` in-process).

    :param prog: The (sub)command's name.
    :param message: What is wrong (put on one line).
    """
    line = f"{prog}: error: {' '.join(message.split())}"
    print(line, file=sys.stderr)
    exit_ = SystemExit(2)
    exit_.add_note(line)
    raise exit_


def _int_at_least(text: str, low: int) -> int:
    """
    :param text: A command-line value.
    :param low: The smallest value allowed.
    :return: The value as an integer.
    :raises argparse.ArgumentTypeError: When it is not an integer, or below ``low`` (argparse names the option).
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
    return value


def _positive_int(text: str) -> int:
    """
    :param text: A command-line value.
    :return: It as an integer of at least 1.
    """
    return _int_at_least(text, 1)


def _non_negative_int(text: str) -> int:
    """
    :param text: A command-line value.
    :return: It as an integer of at least 0.
    """
    return _int_at_least(text, 0)


def _print_summary(rows: Sequence[tuple[str, str, str]]) -> None:
    w0 = max([len("model")] + [len(r[0]) for r in rows])
    w1 = max([len("metric")] + [len(r[1]) for r in rows])
    print(f"{'model':<{w0}}  {'metric':<{w1}}  value")
    for model, metric, value in rows:
        print(f"{model:<{w0}}  {metric:<{w1}}  {value}")


def _report(args: argparse.Namespace, wanted: list[str], data: Dataset, models: dict[str, torch.nn.Module]) -> int:
    """
    Train the demo models (for ``--demo``), compute the sections and write the report. Under ``torchrun`` every
    rank trains the same seeded demo models and computes the sections, the per-sample families sharded over the
    ranks (gloo); rank 0 shows the progress bars and writes the report.

    :param args: The parsed ``report`` arguments.
    :param wanted: Section keys.
    :param data: The data set.
    :param models: The user's models (ignored for ``--demo``).
    :return: Exit status 0.
    """
    from art_geometry.sweep.distributed import world

    known = {s.key: s for s in SECTIONS}
    extras: dict[str, Any] = {}
    track = "training" in wanted
    with _process_group("cpu"):
        rank = world()[0]
        verbose = not args.quiet and rank == 0
        checkpoint = None
        if args.checkpoint is not None:
            settings = report_settings(data, seed=args.seed, n_samples=args.samples, batch_size=args.batch_size,
                                       demo={"epochs": args.epochs, "track": track} if args.demo else None)
            try:
                checkpoint = ReportCheckpoint(args.checkpoint, settings)
            except ValueError as err:
                _fail("art-geometry report", f"--checkpoint: {err}")
        if args.demo:
            demo = demo_models(data, epochs=args.epochs, seed=args.seed, track=track, verbose=verbose,
                               checkpoint=checkpoint)
            models = demo.models
            if demo.histories:
                extras["training"] = demo.histories
        ctx = ReportContext(models=models, data=data, seed=args.seed, n_samples=args.samples,
                            batch_size=args.batch_size, verbose=verbose, extras=extras)
        json_path, html_path, rows = write_report(ctx, [known[k]() for k in wanted], args.out, checkpoint)
        if checkpoint is not None and checkpoint.loaded and verbose:
            print(f"resumed from {args.checkpoint}: {', '.join(checkpoint.loaded)} loaded", file=sys.stderr)
    if rank != 0:
        return 0
    _print_summary(rows)
    print(f"\nreport written to {html_path.resolve()}\n           data in {json_path.resolve()}")
    return 0


#: The families ``art-geometry sweep`` runs.
FAMILIES = ("margins", "subspace", "prs", "robust")


def _sweep_inputs(args: argparse.Namespace) -> tuple[Dataset, torch.nn.Module]:
    """
    :param args: The parsed ``sweep`` arguments.
    :return: The data set and the model.
    :raises ValueError: For any mistake in the arguments, the data or the model.
    """
    data = load_data(args.data)
    model = _load_models([args.model], [args.weights] if args.weights else [], data)
    if Path(args.out).exists() and Path(args.out).is_dir():
        raise ValueError(f"--out {args.out!r} is a folder: give the path of the JSON file to write")
    return data, next(iter(model.values()))


@contextlib.contextmanager
def _process_group(device: str) -> Iterator[torch.device]:
    """
    Join the ``torchrun`` process group when the environment describes one (``WORLD_SIZE > 1``) and none is
    initialised yet; leave it on exit.

    :param device: ``"cpu"`` or ``"cuda"`` (one GPU per rank, ``cuda:LOCAL_RANK``, NCCL).
    :return: The device this rank computes on.
    """
    import os

    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    where = torch.device(f"cuda:{local}") if device == "cuda" else torch.device("cpu")
    if device == "cuda":
        torch.cuda.set_device(where)
    started = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized()
    if started:
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    try:
        yield where
    finally:
        if started:
            dist.destroy_process_group()


def _sweep(args: argparse.Namespace, data: Dataset, model: torch.nn.Module) -> int:
    """
    Run one family over the chosen split; rank 0 writes the result.

    :param args: The parsed ``sweep`` arguments.
    :param data: The data set.
    :param model: The model.
    :return: Exit status 0.
    """
    from art_geometry.margins import deepfool_margins, subspace_margins
    from art_geometry.regions import populated_region_set
    from art_geometry.robustness import robust_accuracy
    from art_geometry.subspaces import dct_subspaces
    from art_geometry.sweep.distributed import world

    x, y = (data.x_test, data.y_test) if args.split == "test" else (data.x_train, data.y_train)
    x, y = x[: args.samples], y[: args.samples]
    with _process_group(args.device) as device:
        model = model.to(device)
        common: dict[str, Any] = {"batch_size": args.batch_size, "verbose": not args.quiet,
                                  "checkpoint": args.checkpoint}
        norm = {} if args.norm is None else {"norm": args.norm}
        if args.family == "margins":
            result = deepfool_margins(model, x, y, seed=args.seed, **norm, **common)
        elif args.family == "subspace":
            subspaces = dct_subspaces(data.input_shape, block_size=args.block_size, stride=args.block_size)
            result = subspace_margins(model, x, y, subspaces=subspaces, seed=args.seed, **norm, **common)
        elif args.family == "prs":
            result = populated_region_set(model, x, y, layer=args.layer, **common)
        else:
            result = robust_accuracy(model, x, y, attack=args.attack, eps=args.eps, seed=args.seed, **norm,
                                     **common)
        rank, size = world()
    if rank == 0:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(result.to_json())
        print(f"{result}\n{args.family} of {len(x)} {args.split} samples on {size} rank(s) written to "
              f"{Path(args.out).resolve()}")
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
    rep.add_argument("--epochs", type=_positive_int, default=15, help="--demo: training epochs per model (default 15)")
    rep.add_argument("--samples", type=_positive_int, default=500,
                     help="test samples for per-sample metrics (default 500)")
    rep.add_argument("--batch-size", type=_positive_int, default=256)
    rep.add_argument("--seed", type=_non_negative_int, default=0)
    rep.add_argument("--quiet", action="store_true", help="no progress bars")
    rep.add_argument("--checkpoint", help="directory keeping each trained --demo model and each finished section; "
                     "a rerun resumes from it")
    swp = sub.add_parser("sweep", help="one per-sample family over a data split, sharded under torchrun, resumable")
    swp.add_argument("--family", required=True, choices=FAMILIES)
    swp.add_argument("--model", required=True, help="TorchScript file or module:factory")
    swp.add_argument("--weights", help="state_dict for a module:factory model")
    swp.add_argument("--data", required=True, help="digits, fashion-mnist, or an .npz file")
    swp.add_argument("--split", choices=("test", "train"), default="test")
    swp.add_argument("--samples", type=_positive_int, default=None, help="first N samples of the split (default all)")
    swp.add_argument("--out", default="sweep.json", help="result JSON file (default: sweep.json)")
    swp.add_argument("--checkpoint", help="directory for finished chunks; a rerun resumes from it")
    swp.add_argument("--norm", help="margins/subspace/robust: 2 or inf (default: the family's, 2 for margins, "
                     "inf for robust)")
    swp.add_argument("--block-size", type=_positive_int, default=8, help="subspace: DCT block size (default 8)")
    swp.add_argument("--layer", help="prs: layer name (default: the input of the last nn.Linear)")
    swp.add_argument("--attack", default="pgd", help="robust: fgsm, bim, pgd or autoattack (default pgd)")
    swp.add_argument("--eps", type=float, default=0.3, help="robust: budget (default 0.3)")
    swp.add_argument("--batch-size", type=_positive_int, default=128)
    swp.add_argument("--seed", type=_non_negative_int, default=0)
    swp.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    swp.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.command == "sweep":
        try:
            data, model = _sweep_inputs(args)
            return _sweep(args, data, model)
        except ValueError as err:
            _fail(swp.prog, str(err))
    try:
        wanted, data, models = _inputs(args)
    except ValueError as err:
        _fail(rep.prog, str(err))
    return _report(args, wanted, data, models)


if __name__ == "__main__":
    raise SystemExit(main())
