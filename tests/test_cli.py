"""
The ``art-geometry`` command's handling of user mistakes: each ends in one line ``art-geometry report: error: ...``
on stderr and exit status 2, before any report is computed, never in a traceback.
"""

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from art_geometry.cli import load_data, load_model, main

PREFIX = "art-geometry report: error: "


def make_net() -> nn.Module:
    """A factory (``tests.test_cli:make_net``): linear logits for 1 x 8 x 8 inputs, 10 classes."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))


def make_net28() -> nn.Module:
    """A factory for 1 x 28 x 28 inputs."""
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))


def make_three_classes() -> nn.Module:
    """A factory with 3 logits."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 3))


def make_list() -> list:
    """A factory that returns no module."""
    return [nn.Linear(64, 10)]


def make_failing() -> nn.Module:
    """A factory that raises."""
    raise RuntimeError("no GPU here")


class Boom(nn.Module):
    """A model whose forward raises."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise KeyError("boom in forward")


class Pair(nn.Module):
    """A model that returns a tuple, not a logits tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.fc(x.flatten(1))
        return out, out


def make_boom() -> nn.Module:
    """A factory for :class:`Boom`."""
    return Boom()


def make_pair() -> nn.Module:
    """A factory for :class:`Pair`."""
    return Pair()


@pytest.fixture
def npz(tmp_path):
    """An .npz writer: ``npz(name, **arrays)`` returns the file's path as a string."""

    def write(name: str = "d.npz", **arrays: np.ndarray) -> str:
        path = tmp_path / name
        np.savez(path, **arrays)
        return str(path)

    return write


@pytest.fixture
def good_npz(npz):
    """40 samples 1 x 8 x 8 with labels 0..9."""
    rng = np.random.default_rng(0)
    return npz("good.npz", x=rng.random((40, 1, 8, 8), dtype=np.float32), y=np.arange(40) % 10)


def run_error(capsys, tmp_path, *argv: str) -> str:
    """
    :return: The error message of ``art-geometry report <argv>``, after checking it is one line on stderr, exit
             status 2, no traceback and no report written.
    """
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        main(["report", "--quiet", "--out", str(out), *argv])
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(PREFIX), captured.err
    assert not out.exists()
    return lines[0][len(PREFIX):]


def argparse_error(capsys, *argv: str) -> str:
    """
    :return: The error line of an argparse-level mistake (after the usage lines), with exit status 2.
    """
    with pytest.raises(SystemExit) as exc:
        main(["report", "--quiet", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("usage: ")
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0] == err.strip().splitlines()[-1] and errors[0].startswith(PREFIX)
    return errors[0][len(PREFIX):]


def test_factory_returning_no_module(capsys, tmp_path, good_npz):
    msg = run_error(capsys, tmp_path, "--model", "tests.test_cli:make_list", "--data", good_npz)
    assert "'tests.test_cli:make_list'" in msg and "the factory returned list, expected torch.nn.Module" in msg


def test_factory_that_raises_or_cannot_be_imported(capsys, tmp_path, good_npz):
    msg = run_error(capsys, tmp_path, "--model", "tests.test_cli:make_failing", "--data", good_npz)
    assert "make_failing() failed" in msg and "RuntimeError: no GPU here" in msg
    msg = run_error(capsys, tmp_path, "--model", "no_such_pkg.models:net", "--data", good_npz)
    assert "cannot load factory 'net' from 'no_such_pkg.models'" in msg and "PYTHONPATH" in msg


@pytest.mark.parametrize("kind", ["state_dict", "text"])
def test_model_file_that_is_not_torchscript(capsys, tmp_path, good_npz, kind):
    path = tmp_path / "model.pt"
    if kind == "state_dict":
        torch.save(make_net().state_dict(), path)
    else:
        path.write_text("not a model\n")
    msg = run_error(capsys, tmp_path, "--model", str(path), "--data", good_npz)
    assert f"'{path}' is not a TorchScript file" in msg and "module:factory --weights" in msg


def test_missing_model_file(capsys, tmp_path, good_npz):
    msg = run_error(capsys, tmp_path, "--model", str(tmp_path / "nope.pt"), "--data", good_npz)
    assert "no such file" in msg


def test_weights_that_do_not_fit(capsys, tmp_path, good_npz):
    weights = tmp_path / "w.pt"
    torch.save({"fc.weight": torch.zeros(10, 64), "fc.bias": torch.zeros(10)}, weights)
    msg = run_error(capsys, tmp_path, "--model", "tests.test_cli:make_net", "--weights", str(weights),
                    "--data", good_npz)
    assert "does not fit --model 'tests.test_cli:make_net'" in msg
    assert "missing keys 1.weight, 1.bias" in msg and "unexpected keys fc.weight, fc.bias" in msg
    torch.save(make_three_classes().state_dict(), weights)
    msg = run_error(capsys, tmp_path, "--model", "tests.test_cli:make_net", "--weights", str(weights),
                    "--data", good_npz)
    assert "does not fit" in msg and "size mismatch for 1.weight" in msg


def test_weights_that_cannot_be_read(capsys, tmp_path, good_npz):
    weights = tmp_path / "w.pt"
    weights.write_text("hello\n")
    msg = run_error(capsys, tmp_path, "--model", "tests.test_cli:make_net", "--weights", str(weights),
                    "--data", good_npz)
    assert f"--weights '{weights}' cannot be read as a state_dict" in msg
    torch.jit.script(make_net()).save(str(weights))  # torch.load warns, then fails: the warning must not show
    msg = run_error(capsys, tmp_path, "--model", "tests.test_cli:make_net", "--weights", str(weights),
                    "--data", good_npz)
    assert "cannot be read as a state_dict" in msg
    torch.save([torch.zeros(3)], weights)
    msg = run_error(capsys, tmp_path, "--model", "tests.test_cli:make_net", "--weights", str(weights),
                    "--data", good_npz)
    assert "holds a list, not a state_dict" in msg


def test_more_weights_than_factory_models(capsys, tmp_path, good_npz):
    weights = tmp_path / "w.pt"
    torch.save(make_net().state_dict(), weights)
    script = tmp_path / "m.pt"
    torch.jit.script(make_net()).save(str(script))
    msg = run_error(capsys, tmp_path, "--model", str(script), "--model", "tests.test_cli:make_net",
                    "--weights", str(weights), "--weights", str(weights), "--data", good_npz)
    assert "2 --weights but 1 module:factory --model" in msg
    with pytest.raises(ValueError, match="only a module:factory model takes weights"):
        load_model(str(script), str(weights))


def test_two_models_with_the_same_name(capsys, tmp_path, good_npz):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        torch.jit.script(make_net()).save(str(tmp_path / folder / "m.pt"))
    msg = run_error(capsys, tmp_path, "--model", str(tmp_path / "a" / "m.pt"), "--model",
                    str(tmp_path / "b" / "m.pt"), "--data", good_npz)
    assert "same report name 'm'" in msg


def test_model_and_data_shapes_differ(capsys, tmp_path):
    msg = run_error(capsys, tmp_path, "--model", "tests.test_cli:make_net28", "--data", "digits")
    assert "--model 'tests.test_cli:make_net28' fails on one sample of --data 'digits'" in msg
    assert "sample shape (1, 8, 8)" in msg and "mat1 and mat2 shapes cannot be multiplied" in msg


def test_torchscript_model_and_data_shapes_differ(capsys, tmp_path, good_npz):
    script = tmp_path / "m28.pt"
    torch.jit.script(make_net28()).save(str(script))
    msg = run_error(capsys, tmp_path, "--model", str(script), "--data", good_npz)
    assert f"--model '{script}' fails on one sample" in msg and "RuntimeError: mat1 and mat2" in msg
    assert "RuntimeError: RuntimeError" not in msg


def test_model_whose_forward_raises(capsys, tmp_path, good_npz):
    msg = run_error(capsys, tmp_path, "--model", "tests.test_cli:make_boom", "--data", good_npz)
    assert "--model 'tests.test_cli:make_boom' fails on one sample" in msg and "KeyError: 'boom in forward'" in msg


def test_model_outputs_that_are_not_logits(capsys, tmp_path, good_npz):
    msg = run_error(capsys, tmp_path, "--model", "tests.test_cli:make_pair", "--data", good_npz)
    assert "must return a logits tensor, it returned tuple" in msg
    msg = run_error(capsys, tmp_path, "--model", "tests.test_cli:make_three_classes", "--data", good_npz)
    assert "returns 3 logits per sample" in msg and "has 10 classes" in msg


@pytest.mark.parametrize("content", ["random", "truncated", "empty"])
def test_corrupt_npz(capsys, tmp_path, good_npz, content):
    path = tmp_path / "bad.npz"
    raw = (tmp_path / "good.npz").read_bytes()
    path.write_bytes({"random": np.random.default_rng(0).bytes(300), "truncated": raw[: len(raw) // 2],
                      "empty": b""}[content])
    msg = run_error(capsys, tmp_path, "--model", "tests.test_cli:make_net", "--data", str(path))
    assert f"--data '{path}' is not a readable .npz file" in msg


@pytest.mark.parametrize("arrays, problem", [
    (dict(x=np.zeros((40, 1, 8, 8)), y=np.arange(37) % 10), "x holds 40 samples but y holds 37 labels"),
    (dict(x=np.zeros((10, 1, 8, 8)), y=np.linspace(0, 9, 10) + 0.5), "y must hold integer class labels"),
    (dict(x=np.zeros((10, 1, 8, 8)), y=np.array(list("abcdefghij"))), "y must hold integer class labels"),
    (dict(x=np.full((10, 1, 8, 8), np.nan), y=np.arange(10)), "x holds NaN or infinite values"),
    (dict(x=np.zeros((10, 1, 8, 8)), y=np.eye(10)), "y must be integer class labels of shape (N,)"),
    (dict(x=np.zeros((10, 1, 8, 8)), y=-np.arange(10)), "y holds negative labels"),
    (dict(x=np.zeros((10, 1, 8, 8)), y=np.zeros(10, dtype=int)), "at least two classes"),
    (dict(x=np.zeros((0, 1, 8, 8)), y=np.zeros(0, dtype=int)), "x must hold at least one sample"),
    (dict(x_train=np.zeros((4, 1, 8, 8)), y_train=np.arange(4), x_test=np.zeros((4, 1, 7, 7)),
          y_test=np.arange(4)), "train samples have shape (1, 8, 8) but test samples (1, 7, 7)"),
])
def test_npz_arrays_that_make_no_data_set(capsys, tmp_path, npz, arrays, problem):
    path = npz("d.npz", **arrays)
    msg = run_error(capsys, tmp_path, "--model", "tests.test_cli:make_net", "--data", path)
    assert msg.startswith(path) and problem in msg
    with pytest.raises(ValueError, match="^" + path):  # the public helper raises the same ValueError
        load_data(path)


def test_integral_float_labels_are_accepted(npz):
    data = load_data(npz("d.npz", x=np.zeros((10, 1, 8, 8)), y=np.arange(10.0)))
    assert data.y_train.dtype == np.int64 and data.nb_classes == 10


@pytest.mark.parametrize("option, value, problem", [
    ("--samples", "-35", "argument --samples: expected an integer >= 1, got -35"),
    ("--samples", "0", "argument --samples: expected an integer >= 1, got 0"),
    ("--samples", "many", "argument --samples: expected an integer, got 'many'"),
    ("--epochs", "0", "argument --epochs: expected an integer >= 1, got 0"),
    ("--batch-size", "0", "argument --batch-size: expected an integer >= 1, got 0"),
    ("--batch-size", "-4", "argument --batch-size: expected an integer >= 1, got -4"),
    ("--seed", "-1", "argument --seed: expected an integer >= 0, got -1"),
])
def test_nonsensical_numbers(capsys, option, value, problem):
    assert argparse_error(capsys, "--demo", option, value) == problem


def test_unknown_section(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["report", "--demo", "--quiet", "--out", str(tmp_path / "out"), "--sections", "regions,nope"])
    assert exc.value.code == 2
    line = capsys.readouterr().err.strip()
    assert line == PREFIX + "unknown section(s) ['nope'] in --sections; available: regions, margins, surface, training"
    assert exc.value.__notes__ == [line]  # for callers of main() in-process


def test_argument_combinations(capsys, tmp_path, good_npz):
    assert run_error(capsys, tmp_path) == "give --demo, or --model and --data"
    msg = run_error(capsys, tmp_path, "--demo", "--model", "tests.test_cli:make_net")
    assert "give --demo, or --model (and --weights), not both" in msg
    (tmp_path / "out").write_text("a file")
    with pytest.raises(SystemExit) as exc:
        main(["report", "--quiet", "--out", str(tmp_path / "out"), "--model", "tests.test_cli:make_net",
              "--data", good_npz])
    assert exc.value.code == 2 and "exists and is not a folder" in capsys.readouterr().err


def test_demo_needs_images(capsys, tmp_path, npz):
    path = npz("flat.npz", x=np.zeros((10, 64)), y=np.arange(10))
    msg = run_error(capsys, tmp_path, "--demo", "--data", path)
    assert "--demo trains CNNs on images of shape (C, H, W)" in msg and "(64,)" in msg


def test_error_exit_of_the_real_process(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 broken")
    proc = subprocess.run([sys.executable, "-m", "art_geometry.cli", "report", "--model", "tests.test_cli:make_net",
                           "--data", str(tmp_path / "bad.npz"), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [PREFIX + f"--data '{tmp_path / 'bad.npz'}' is not a readable .npz "
                                                "file (BadZipFile: File is not a zip file)"]
