import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from art_geometry.core.decision import decision_values
from art_geometry.datasets import MLP, make_classifier
from art_geometry.training import JacobianRegularizedTrainer, TrainingHistory
from tests.helpers import assert_unchanged


class TanhNet(nn.Module):
    """z = W2 tanh(W1 x + b1) + b2, float64."""

    def __init__(self, d: int = 5, h: int = 7, k: int = 4, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.fc1 = nn.Linear(d, h).double()
        self.fc2 = nn.Linear(h, k).double()
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.fc1(x)))


def _clf(model: nn.Module, shape: tuple[int, ...], k: int, lr: float = 0.05, clip=None):
    return make_classifier(model, shape, k, lr=lr, clip_values=clip)


def _hand_loss(model: TanhNet, x: torch.Tensor, y: torch.Tensor, c: float, p: float) -> torch.Tensor:
    """CE + c * mean ||dL/dx||_p with dL/dx = W1^T diag(1 - h^2) (W2[y] - W2[j]) written by hand."""
    w1, b1, w2, b2 = model.fc1.weight, model.fc1.bias, model.fc2.weight, model.fc2.bias
    h = torch.tanh(x @ w1.T + b1)
    z = h @ w2.T + b2
    ce = torch.nn.functional.cross_entropy(z, y)
    masked = z.detach().clone()
    masked[torch.arange(len(y)), y] = -math.inf
    j = masked.argmax(dim=1)
    dl_dh = w2[y] - w2[j]
    dl_dx = ((1 - h**2) * dl_dh) @ w1
    return ce + c * dl_dx.norm(p=p, dim=1).mean()


@pytest.mark.parametrize("p", [1, 2, np.inf])
def test_regulariser_gradient_matches_hand_formula(p):
    model = TanhNet()
    clf = _clf(model, (5,), 4)
    trainer = JacobianRegularizedTrainer(clf, c=0.7, norm=p)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(9, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (9,), generator=g)
    loss, _ = trainer.compute_loss(x, y)
    got = torch.autograd.grad(loss, list(model.parameters()))
    want_loss = _hand_loss(model, x, y, 0.7, float(p))
    want = torch.autograd.grad(want_loss, list(model.parameters()))
    assert torch.allclose(loss, want_loss, rtol=1e-12, atol=1e-12)
    for a, b in zip(got, want):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_regulariser_gradient_matches_finite_differences():
    model = TanhNet(seed=3)
    clf = _clf(model, (5,), 4)
    trainer = JacobianRegularizedTrainer(clf, c=1.3, norm=2)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(6, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (6,), generator=g)
    loss, _ = trainer.compute_loss(x, y)
    (grad,) = torch.autograd.grad(loss, [model.fc1.weight])
    h = 1e-6
    w = model.fc1.weight
    for idx in [(0, 0), (3, 2), (6, 4)]:
        with torch.no_grad():
            w[idx] += h
        up = trainer.compute_loss(x, y)[0].item()
        with torch.no_grad():
            w[idx] -= 2 * h
        down = trainer.compute_loss(x, y)[0].item()
        with torch.no_grad():
            w[idx] += h
        assert grad[idx].item() == pytest.approx((up - down) / (2 * h), rel=1e-6, abs=1e-8)


def test_cross_entropy_target_squared_l2():
    model = TanhNet()
    trainer = JacobianRegularizedTrainer(_clf(model, (5,), 4), c=1.0, norm=2, target="cross_entropy", squared=True)
    x = torch.randn(4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3])
    xr = x.clone().requires_grad_(True)
    per = torch.nn.functional.cross_entropy(model(xr), y, reduction="none")
    (g,) = torch.autograd.grad(per.sum(), xr)
    _, parts = trainer.compute_loss(x, y)
    assert parts["reg"].item() == pytest.approx(g.square().sum(dim=1).mean().item(), rel=1e-12)


def test_projection_estimate_is_unbiased_for_frobenius_norm():
    model = TanhNet()
    trainer = JacobianRegularizedTrainer(_clf(model, (5,), 4), c=1.0, projections=4000)
    x = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(3, dtype=torch.long)
    _, parts = trainer.compute_loss(x, y)
    jac = torch.func.vmap(torch.func.jacrev(model))(x)
    exact = jac.square().sum(dim=(1, 2)).mean().item()
    assert parts["reg"].item() == pytest.approx(exact, rel=0.05)


def _plain_loop(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, bs: int, seed: int, lr: float):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for s in range(0, len(x), bs):
            idx = perm[s : s + bs]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()


def test_c_zero_reproduces_natural_training(digits):
    x, y = digits.x_train[:300], digits.y_train[:300]
    torch.manual_seed(0)
    a = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))
    b = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))
    b.load_state_dict(a.state_dict())
    a.eval()
    clf = _clf(a, (1, 8, 8), 10, lr=1e-2)
    trainer = JacobianRegularizedTrainer(clf, c=0.0, norm=2)
    hist = trainer.fit(x, y, batch_size=50, nb_epochs=2, seed=7, verbose=False)
    _plain_loop(b, x, y, 2, 50, 7, 1e-2)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    assert not a.training, "the user's eval mode is restored"
    assert hist.nb_epochs == 2 and np.all(hist.reg > 0)


def test_regularised_model_is_flatter_and_more_robust(digits):
    from art.attacks.evasion import FastGradientMethod

    x_te, y_te = digits.x_test[:200], digits.y_test[:200]
    out = {}
    for c in (0.0, 0.03):
        torch.manual_seed(0)
        clf = make_classifier(MLP((1, 8, 8), (64,)), (1, 8, 8), 10, lr=5e-3)
        JacobianRegularizedTrainer(clf, c=c, norm=1).fit(
            digits.x_train, digits.y_train, batch_size=128, nb_epochs=8, seed=0, verbose=False
        )
        xr = torch.from_numpy(x_te).requires_grad_(True)
        dl = decision_values(clf.model(xr), torch.from_numpy(y_te))[0]
        (g,) = torch.autograd.grad(dl.sum(), xr)
        jac_l1 = g.flatten(1).abs().sum(dim=1).mean().item()
        x_adv = FastGradientMethod(clf, eps=0.1, batch_size=256).generate(x_te, y=y_te)
        out[c] = (jac_l1, float((clf.predict(x_adv).argmax(1) == y_te).mean()))
    assert out[0.03][0] < 0.6 * out[0.0][0]
    assert out[0.03][1] > out[0.0][1] + 0.1


class Recorder:
    def __init__(self, fail_at: int | None = None):
        self.events: list[str] = []
        self.fail_at = fail_at
        self.modes: list[bool] = []

    def on_train_begin(self, trainer):
        self.events.append("begin")

    def on_epoch_end(self, epoch, trainer, logs):
        self.events.append(f"epoch{epoch}")
        self.modes.append(trainer.view.module.training)
        assert set(logs) >= {"loss", "ce", "reg", "accuracy", "val_loss", "val_accuracy", "lr", "time"}
        if epoch == self.fail_at:
            raise RuntimeError("stop here")

    def on_train_end(self, trainer):
        self.events.append("end")


def test_sequential_onehot_scheduler_validation_callbacks(digits):
    x, y = digits.x_train[:256], digits.y_train[:256]
    onehot = np.eye(10, dtype=np.float32)[y]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))
    model.eval()
    clf = _clf(model, (1, 8, 8), 10, lr=1e-2, clip=(0.0, 1.0))
    sched = torch.optim.lr_scheduler.StepLR(clf.optimizer, step_size=1, gamma=0.5)
    rec = Recorder()
    trainer = JacobianRegularizedTrainer(clf, c=0.01, norm=np.inf)
    running = model[2].running_mean.clone()
    x_copy = x.copy()
    hist = trainer.fit(
        x, onehot, batch_size=64, nb_epochs=3, validation_data=(digits.x_test[:100], digits.y_test[:100]),
        callbacks=[rec], scheduler=sched, verbose=False,
    )
    assert isinstance(hist, TrainingHistory) and hist is trainer.history
    assert rec.events == ["begin", "epoch0", "epoch1", "epoch2", "end"]
    assert rec.modes == [True, True, True]
    assert np.allclose(hist.lr, [1e-2, 5e-3, 2.5e-3])
    assert np.all(np.isfinite(hist.val_loss)) and np.all((hist.val_accuracy >= 0) & (hist.val_accuracy <= 1))
    assert not torch.equal(model[2].running_mean, running), "BatchNorm statistics updated in train mode"
    assert not model.training and np.array_equal(x, x_copy)
    assert hist.to_dict()["summary"]["nb_epochs"] == 3


def test_reduce_on_plateau_and_generator(digits):
    from art.data_generators import NumpyDataGenerator

    torch.manual_seed(0)
    clf = make_classifier(MLP((1, 8, 8), (16,)), (1, 8, 8), 10, lr=1e-2)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(clf.optimizer, patience=0, factor=0.1, threshold=10.0)
    gen = NumpyDataGenerator(digits.x_train[:200], digits.y_train[:200], batch_size=50, shuffle=False)
    hist = JacobianRegularizedTrainer(clf, c=0.01, projections=1).fit_generator(
        gen, nb_epochs=3, scheduler=sched, verbose=False
    )
    assert hist.nb_epochs == 3
    assert hist.lr[0] == pytest.approx(1e-2) and hist.lr[-1] < 1e-2


def test_seed_controls_shuffling_and_global_rng_untouched(digits):
    x, y = digits.x_train[:200], digits.y_train[:200]

    def run(seed):
        torch.manual_seed(0)
        clf = make_classifier(MLP((1, 8, 8), (16,)), (1, 8, 8), 10, lr=1e-2)
        np_state, torch_state = np.random.get_state(), torch.get_rng_state()
        JacobianRegularizedTrainer(clf, c=0.05).fit(x, y, batch_size=32, nb_epochs=1, seed=seed, verbose=False)
        assert torch.equal(torch.get_rng_state(), torch_state)
        assert np.array_equal(np.random.get_state()[1], np_state[1])
        return torch.cat([p.detach().flatten() for p in clf.model.parameters()])

    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))


def test_callback_error_keeps_state_consistent(digits):
    torch.manual_seed(0)
    model = MLP((1, 8, 8), (16,))
    model.eval()
    clf = make_classifier(model, (1, 8, 8), 10)
    trainer = JacobianRegularizedTrainer(clf, c=0.01)
    with pytest.raises(RuntimeError, match="stop here"):
        trainer.fit(digits.x_train[:128], digits.y_train[:128], batch_size=64, nb_epochs=4,
                    callbacks=[Recorder(fail_at=1)], verbose=False)
    assert not any(m.training for m in model.modules())
    assert trainer.history is not None and trainer.history.nb_epochs == 2
    assert all(p.grad is not None for p in model.parameters()), "the epoch's optimizer steps completed"


def test_bad_input(digits):
    clf = make_classifier(MLP((1, 8, 8), (16,)), (1, 8, 8), 10)
    with pytest.raises(ValueError, match="c must be a finite number >= 0"):
        JacobianRegularizedTrainer(clf, c=-1.0)
    with pytest.raises(ValueError, match="norm must be one of"):
        JacobianRegularizedTrainer(clf, norm=3)
    with pytest.raises(ValueError, match="target must be one of"):
        JacobianRegularizedTrainer(clf, target="hinge")
    with pytest.raises(ValueError, match="projections"):
        JacobianRegularizedTrainer(clf, projections=0)
    trainer = JacobianRegularizedTrainer(clf)
    x, y = digits.x_train[:32], digits.y_train[:32]
    with pytest.raises(TypeError, match="LRScheduler"):
        trainer.fit(x, y, nb_epochs=1, scheduler=object(), verbose=False)
    other = torch.optim.lr_scheduler.StepLR(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0), 1)
    with pytest.raises(ValueError, match="another optimizer"):
        trainer.fit(x, y, nb_epochs=1, scheduler=other, verbose=False)
    with pytest.raises(ValueError, match="labels 31 samples"):
        trainer.fit(x, y[:31], nb_epochs=1, verbose=False)
    no_opt = make_classifier(MLP((1, 8, 8), (16,)), (1, 8, 8), 10)
    no_opt._optimizer = None
    with pytest.raises(ValueError, match="no optimizer"):
        JacobianRegularizedTrainer(no_opt)


def test_inputs_not_mutated(digits):
    x, y = digits.x_train[:64].copy(), digits.y_train[:64].copy()
    clf = make_classifier(MLP((1, 8, 8), (16,)), (1, 8, 8), 10)
    before = {n: m.training for n, m in clf.model.named_modules()}
    x_t = torch.from_numpy(x.copy())
    with assert_unchanged(nn.Identity(), x, y, x_t):
        JacobianRegularizedTrainer(clf, c=0.1).fit(x, y, batch_size=16, nb_epochs=1, verbose=False)
        JacobianRegularizedTrainer(clf, c=0.1).fit(x_t, y, batch_size=16, nb_epochs=1, verbose=False)
    assert {n: m.training for n, m in clf.model.named_modules()} == before


def test_art_preprocessing_is_applied(digits):
    from art.estimators.classification import PyTorchClassifier

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    clf = PyTorchClassifier(model, nn.CrossEntropyLoss(), (1, 8, 8), 10, clip_values=(0.0, 1.0),
                            optimizer=torch.optim.Adam(model.parameters(), 1e-2), preprocessing=(0.3, 0.4))
    x_val, y_val = digits.x_test[:100], digits.y_test[:100]
    hist = JacobianRegularizedTrainer(clf, c=0.01).fit(
        digits.x_train[:300], digits.y_train[:300], batch_size=64, nb_epochs=1, validation_data=(x_val, y_val),
        verbose=False,
    )
    assert hist.val_accuracy[0] == pytest.approx((clf.predict(x_val).argmax(1) == y_val).mean())


def _global_states() -> tuple:
    np_state = np.random.get_state()
    return random.getstate(), (np_state[0], np_state[1].copy(), *np_state[2:]), torch.random.get_rng_state()


def _assert_same_states(before: tuple, after: tuple) -> None:
    assert after[0] == before[0], "python's random state changed"
    assert after[1][0] == before[1][0] and np.array_equal(after[1][1], before[1][1]), "numpy's state changed"
    assert after[1][2:] == before[1][2:], "numpy's state changed"
    assert torch.equal(after[2], before[2]), "torch's global state changed"


def test_dropout_training_depends_on_seed_only_and_restores_global_rng():
    """Dropout masks came from the global torch RNG: the same seed gave other weights, and fit advanced it."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3))
    init = {k: v.clone() for k, v in model.state_dict().items()}
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 6)).astype(np.float32)
    y = rng.integers(0, 3, 48)

    def run(seed: int, user_state: int) -> torch.Tensor:
        model.load_state_dict(init)
        clf = _clf(model, (6,), 3, lr=1e-2)
        # the user's global generators, in a state that differs between calls
        random.seed(user_state)
        np.random.seed(user_state)
        torch.manual_seed(user_state)
        before = _global_states()
        JacobianRegularizedTrainer(clf, c=0.05).fit(x, y, batch_size=16, nb_epochs=2, seed=seed, verbose=False)
        _assert_same_states(before, _global_states())
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    first = run(3, user_state=10)
    assert torch.equal(first, run(3, user_state=11))
    assert not torch.equal(first, run(4, user_state=10))
    assert not torch.equal(first, torch.cat([v.flatten() for k, v in init.items()]))


def test_fit_generator_restores_global_rng_with_dropout(digits):
    from art.data_generators import NumpyDataGenerator

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 10))
    clf = _clf(model, (1, 8, 8), 10, lr=1e-2)
    gen = NumpyDataGenerator(digits.x_train[:96], digits.y_train[:96], batch_size=32, shuffle=True)
    before = _global_states()
    JacobianRegularizedTrainer(clf, c=0.01).fit_generator(gen, nb_epochs=2, seed=5, verbose=False)
    _assert_same_states(before, _global_states())


def test_fit_validates_inputs_and_accepts_any_stride(digits):
    x, y = digits.x_train[:96].copy(), digits.y_train[:96].copy()

    def train(xf, yf):
        torch.manual_seed(0)
        clf = make_classifier(MLP((1, 8, 8), (16,)), (1, 8, 8), 10, lr=1e-2)
        with assert_unchanged(nn.Identity(), *(a for a in (xf, yf) if isinstance(a, (np.ndarray, torch.Tensor)))):
            hist = JacobianRegularizedTrainer(clf, c=0.05).fit(xf, yf, batch_size=32, nb_epochs=1, seed=2,
                                                               verbose=False)
        return torch.cat([p.detach().flatten() for p in clf.model.parameters()]), hist

    reference, hist = train(x, y)
    reversed_x = x[::-1]
    assert reversed_x.strides[0] < 0
    for xf, yf in ((np.ascontiguousarray(reversed_x)[::-1], y), (x.astype(np.float64), y),
                   (np.asfortranarray(x), y), (x, np.eye(10, dtype=np.float32)[y])):
        assert torch.equal(train(xf, yf)[0], reference)
    assert train(reversed_x, y[::-1])[1].nb_epochs == 1
    summary = hist.summary()
    assert summary["n_samples"] == 96 and summary["params"]["norm"] == 1.0 and summary["nb_epochs"] == 1
    back = TrainingHistory.from_dict(hist.to_dict())
    assert back.to_dict() == hist.to_dict() and back.n_samples == 96

    trainer = JacobianRegularizedTrainer(make_classifier(MLP((1, 8, 8), (16,)), (1, 8, 8), 10), c=0.05)
    nan = x.copy()
    nan[1, 0, 3, 3] = np.nan
    cases = [
        ((nan, y), ValueError, "x contains NaN"),
        ((x, np.full_like(y, 10)), ValueError, "y holds labels in \\[10, 10\\]"),
        ((x, y[:-1]), ValueError, "y labels 95 samples but x holds 96"),
        ((x[:, :, :7], y), ValueError, "x has samples of shape"),
        ((x.tolist(), y), TypeError, "x must be a numpy array"),
    ]
    for (xb, yb), error, words in cases:
        with assert_unchanged(trainer.view.module), pytest.raises(error, match=words):
            trainer.fit(xb, yb, nb_epochs=1, verbose=False)
    with pytest.raises(ValueError, match="x_val contains NaN"):
        trainer.fit(x, y, nb_epochs=1, validation_data=(nan, y), verbose=False)
    with pytest.raises(ValueError, match="squared"):
        JacobianRegularizedTrainer(trainer._classifier, squared="yes")
    with pytest.raises(ValueError, match="norm must be one of"):
        JacobianRegularizedTrainer(trainer._classifier, norm="l3")


def test_fit_generator_checks_each_batch(digits):
    from art.data_generators import NumpyDataGenerator

    x = digits.x_train[:64].copy()
    x[40, 0, 0, 0] = np.inf
    gen = NumpyDataGenerator(x, digits.y_train[:64], batch_size=32, shuffle=False)
    trainer = JacobianRegularizedTrainer(make_classifier(MLP((1, 8, 8), (16,)), (1, 8, 8), 10), c=0.01)
    trainer.view.module.eval()
    with pytest.raises(ValueError, match="the generator's x contains NaN or inf"):
        trainer.fit_generator(gen, nb_epochs=1, verbose=False)
    assert not trainer.view.module.training, "the mode is restored after the error in the second batch"
