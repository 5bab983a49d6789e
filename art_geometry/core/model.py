"""
The one model adapter: every public function turns the user's classifier into a :class:`ModelView`.

A :class:`ModelView` is a differentiable function from the user's input space to logits, with the facts the
metrics need (number of classes, input shape, clip values, device, dtype, named layers) and two context managers:
:meth:`ModelView.evaluating` (eval mode and frozen parameters, the user's state restored on exit, even on error)
and :meth:`ModelView.capture` (forward hooks on named submodules, removed on exit).

Accepted classifiers: ART's ``PyTorchClassifier`` (its framework preprocessing is applied inside the forward, so
gradients are taken with respect to the user's unnormalised inputs), foolbox 3's ``PyTorchModel`` (mean/std/flip
preprocessing and bounds) and a plain ``torch.nn.Module``.

ART's own ``predict``/``get_activations`` are not used: ART runs an ``nn.Sequential`` child by child (ignoring a
subclass's ``forward``), addresses only top-level children and never restores the train/eval mode.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from art_geometry.core.modes import restoring
from art_geometry.core.sites import find_sites
from art_geometry.core.validation import check_array

__all__ = ["ModelView", "LayerRef", "adapt", "probe", "model_view", "module_of", "warn_if_probabilities"]

Preprocess = Callable[[torch.Tensor], torch.Tensor]

_NUMPY_DTYPES = (torch.float16, torch.float32, torch.float64)


@dataclass(frozen=True)
class LayerRef:
    """
    A point in the network to read activations from: the output of a named submodule, or its input.

    Written ``"name"`` (output) or ``"name:input"`` (the tensor the module receives).
    """

    name: str
    where: str = "output"

    @classmethod
    def parse(cls, spec: "str | LayerRef") -> "LayerRef":
        """
        :param spec: ``"name"``, ``"name:input"``, ``"name:output"`` or a :class:`LayerRef`.
        :return: The parsed reference.
        """
        if isinstance(spec, LayerRef):
            return spec
        if not isinstance(spec, str):
            raise TypeError(f"a layer is named by a string such as 'features.3' or 'fc:input', got {type(spec)!r}")
        name, _, where = spec.partition(":")
        where = where or "output"
        if where not in ("input", "output"):
            raise ValueError(f"layer {spec!r}: the part after ':' must be 'input' or 'output', got {where!r}")
        return cls(name, where)

    def __str__(self) -> str:
        return self.name if self.where == "output" else f"{self.name}:input"


@dataclass(frozen=True)
class ModelView:
    """
    The model as the metrics see it: ``view(x)`` returns logits for inputs ``x`` in the user's input space.

    :param module: The user's ``torch.nn.Module`` (never modified; mode and parameters restored after use).
    :param nb_classes: Number of classes (length of the logit vector).
    :param input_shape: Shape of one input sample, or ``None`` where the classifier does not declare it.
    :param clip_values: ``(min, max)`` of valid inputs, or ``None``.
    :param device: The device of the model's parameters; inputs are moved there.
    :param dtype: The floating dtype of the model's parameters; inputs are cast to it.
    :param preprocess: Differentiable preprocessing applied before ``module`` (ART's or foolbox's).
    :param source: Which kind of classifier was adapted: ``"art"``, ``"foolbox"`` or ``"torch"``.
    :param eval_mode: :meth:`evaluating` puts every submodule in eval mode (``False``: the modes are left as the
                      caller set them, e.g. by torchattacks' ``set_model_training_mode``).
    :param affine_preprocess: ``preprocess`` is an affine map (ART's mean/std standardisation, foolbox's
                              mean/std/flip), so bound propagation may fold it into a linear layer.
    """

    module: nn.Module
    nb_classes: int
    input_shape: tuple[int, ...] | None
    clip_values: tuple[float, float] | None
    device: torch.device
    dtype: torch.dtype
    preprocess: Preprocess | None = None
    source: str = "torch"
    eval_mode: bool = True
    affine_preprocess: bool = False
    _layers: dict[str, nn.Module] = field(default_factory=dict, repr=False, compare=False)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """
        :param x: A batch of inputs on ``self.device``.
        :return: Logits of shape ``(batch, nb_classes)``.
        """
        if self.preprocess is not None:
            x = self.preprocess(x)
        out = self.module(x)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"the model must return a logits tensor, it returned {type(out).__name__}")
        return out.reshape(out.shape[0], -1)

    @property
    def layers(self) -> dict[str, nn.Module]:
        """Every named submodule, by its dotted name (``features.3``)."""
        return self._layers

    def to_tensor(self, x: "np.ndarray | torch.Tensor") -> torch.Tensor:
        """
        :param x: An array (any stride, contiguity, writability or real dtype) or a tensor of inputs.
        :return: A new tensor on the model's device and dtype; never a view that writes back into ``x``.
        """
        if isinstance(x, torch.Tensor):
            return x.detach().to(
                device=self.device, dtype=self.dtype, copy=True, memory_format=torch.contiguous_format
            )
        # copied into a tensor torch allocated (aligned as torch aligns; CPU conv kernels round differently on
        # differently aligned memory), cast as numpy casts, whatever the strides
        host = torch.empty(tuple(x.shape), dtype=self.dtype if self.dtype in _NUMPY_DTYPES else torch.float32)
        np.copyto(host.numpy(), x, casting="unsafe")
        return host.to(device=self.device, dtype=self.dtype)

    @contextlib.contextmanager
    def evaluating(self, grad_params: bool = False) -> Iterator["ModelView"]:
        """
        Put every submodule in eval mode (unless the view was built with ``eval_mode=False``) and (unless
        ``grad_params``) stop gradients to the parameters; on exit, restore each submodule's ``training`` flag and
        each parameter's ``requires_grad`` exactly as they were.

        :param grad_params: Keep the parameters' ``requires_grad`` flags (for code that trains or differentiates
                            with respect to the weights).
        """
        with restoring(self.module, eval_mode=self.eval_mode, freeze=not grad_params):
            yield self

    def resolve_layer(self, spec: "str | LayerRef") -> LayerRef:
        """
        :param spec: A layer name (``"features.3"``, ``"fc:input"``) or :class:`LayerRef`.
        :return: The reference, checked against the model's named submodules.
        :raises ValueError: When no submodule has that name; the message lists the available names.
        """
        ref = LayerRef.parse(spec)
        if ref.name not in self._layers:
            names = ", ".join(n for n in self._layers if n) or "(none)"
            raise ValueError(f"unknown layer {ref.name!r}; available layers: {names}")
        return ref

    def relu_layers(self) -> list[str]:
        """
        :return: Names of the ReLU sites (``nn.ReLU`` modules, each call of a reused one, functional calls), in
                 execution order, found by ``torch.fx`` tracing (:mod:`art_geometry.core.sites`).
        """
        return [s.name for s in find_sites(self.module, self._layers, self.eval_mode).relu]

    def last_linear(self) -> str:
        """
        :return: Name of the last ``nn.Linear`` submodule (in registration order).
        :raises ValueError: When the model has none.
        """
        linear = [n for n, m in self._layers.items() if isinstance(m, nn.Linear)]
        if not linear:
            raise ValueError("the model has no nn.Linear layer, so there is no default feature layer; name one")
        return linear[-1]

    @contextlib.contextmanager
    def capture(self, refs: "list[LayerRef]") -> Iterator[dict[LayerRef, list[torch.Tensor]]]:
        """
        Record activations at ``refs`` during forward passes; hooks are removed on exit, even on error.

        The returned dict maps each reference to the list of tensors it produced in call order (a module used
        several times in one forward yields several tensors). Clear the lists between batches.

        :param refs: Resolved layer references.
        :raises TypeError: For a TorchScript module (it has no hooks).
        """
        if isinstance(self.module, torch.jit.ScriptModule):
            raise TypeError(
                "TorchScript modules do not support forward hooks, so layer activations cannot be read; "
                "pass the Python nn.Module (e.g. module:factory plus a state_dict on the command line)"
            )
        store: dict[LayerRef, list[torch.Tensor]] = {r: [] for r in refs}
        handles = []
        try:
            for ref in refs:
                module = self._layers[ref.name]
                if ref.where == "input":
                    handles.append(module.register_forward_pre_hook(_pre_hook(store[ref])))
                else:
                    handles.append(module.register_forward_hook(_post_hook(store[ref])))
            yield store
        finally:
            for h in handles:
                h.remove()


def _pre_hook(sink: list[torch.Tensor]) -> Callable[..., None]:
    def hook(_module: nn.Module, args: tuple[Any, ...]) -> None:
        sink.append(args[0])

    return hook


def _post_hook(sink: list[torch.Tensor]) -> Callable[..., None]:
    def hook(_module: nn.Module, _args: tuple[Any, ...], out: torch.Tensor) -> None:
        sink.append(out)

    return hook


def _param_facts(module: nn.Module) -> tuple[torch.device, torch.dtype]:
    for t in list(module.parameters()) + list(module.buffers()):
        if t.is_floating_point():
            return t.device, t.dtype
    return torch.device("cpu"), torch.float32


def _art_preprocess(classifier: Any) -> Preprocess | None:
    ops = [op for op in classifier.preprocessing_operations if op.apply_predict]
    if not ops:
        return None
    if not classifier.all_framework_preprocessing:
        names = ", ".join(type(op).__name__ for op in ops)
        raise ValueError(
            f"the classifier's preprocessing ({names}) is not differentiable PyTorch code; "
            "art-geometry needs gradients through it: use ART's PyTorch preprocessors"
        )

    def preprocess(x: torch.Tensor) -> torch.Tensor:
        for op in ops:
            x, _ = op.forward(x, None)
        return x

    return preprocess


def _art_affine(classifier: Any) -> bool:
    """:return: Whether every prediction-time preprocessing operation of an ART classifier is a standardisation."""
    from art.preprocessing.standardisation_mean_std.pytorch import StandardisationMeanStdPyTorch

    ops = [op for op in classifier.preprocessing_operations if op.apply_predict]
    return all(isinstance(op, StandardisationMeanStdPyTorch) for op in ops)


def _foolbox_internals(fmodel: Any) -> tuple[nn.Module, Any, Any, Any]:
    """
    The one place that reads foolbox internals (foolbox 3 has no public accessor for them): the wrapped
    ``nn.Module`` (from the closure of ``PyTorchModel._model``) and the ``(mean, std, flip_axis)`` preprocessing.

    :param fmodel: A foolbox 3 ``PyTorchModel``.
    :return: ``(module, mean, std, flip_axis)``.
    :raises TypeError: For a foolbox version other than 3.x, or a model whose internals are not as expected.
    """
    import foolbox

    version = str(getattr(foolbox, "__version__", "?"))
    closure = getattr(getattr(fmodel, "_model", None), "__closure__", None) or ()
    modules = [c.cell_contents for c in closure if isinstance(c.cell_contents, nn.Module)]
    args = getattr(fmodel, "_preprocess_args", None)
    if not version.startswith("3.") or not modules or not (isinstance(args, tuple) and len(args) == 3):
        raise TypeError(
            f"cannot read the torch.nn.Module inside this foolbox {version} PyTorchModel (foolbox 3.x supported); "
            "pass the nn.Module itself"
        )
    mean, std, flip_axis = args
    return modules[0], mean, std, flip_axis


def _foolbox_preprocess(fmodel: Any, device: torch.device, dtype: torch.dtype) -> Preprocess | None:
    _, mean, std, flip_axis = _foolbox_internals(fmodel)
    if mean is None and std is None and flip_axis is None:
        return None
    mean_t = None if mean is None else torch.as_tensor(getattr(mean, "raw", mean), device=device, dtype=dtype)
    std_t = None if std is None else torch.as_tensor(getattr(std, "raw", std), device=device, dtype=dtype)

    def preprocess(x: torch.Tensor) -> torch.Tensor:
        if flip_axis is not None:
            x = x.flip(flip_axis)
        if mean_t is not None:
            x = x - mean_t
        if std_t is not None:
            x = x / std_t
        return x

    return preprocess


def module_of(classifier: Any) -> nn.Module:
    """
    :param classifier: ART ``PyTorchClassifier``, foolbox ``PyTorchModel``, ``torch.nn.Module`` or
                       :class:`ModelView`.
    :return: The user's ``torch.nn.Module`` inside it, without running it.
    :raises TypeError: For any other kind of classifier.
    """
    if isinstance(classifier, ModelView):
        return classifier.module
    if isinstance(classifier, nn.Module):
        return classifier
    module_path = type(classifier).__module__
    if module_path.startswith("art.") and isinstance(getattr(classifier, "model", None), nn.Module):
        return classifier.model
    if module_path.startswith("foolbox.") and type(classifier).__name__ == "PyTorchModel":
        return _foolbox_internals(classifier)[0]
    raise TypeError(
        f"unsupported classifier {module_path}.{type(classifier).__name__}: pass an ART PyTorchClassifier, "
        "a foolbox PyTorchModel or a torch.nn.Module"
    )


def adapt(classifier: Any) -> ModelView:
    """
    Build the model view without running the model; for a plain module or a foolbox model the number of classes
    is still unknown (``nb_classes == 0``) until :func:`probe` has run it.

    :param classifier: ART ``PyTorchClassifier``, foolbox ``PyTorchModel``, ``torch.nn.Module`` or
                       :class:`ModelView` (returned as is).
    :return: The view.
    :raises TypeError: For any other kind of classifier.
    :raises ValueError: For ART preprocessing that is not differentiable PyTorch code.
    """
    if isinstance(classifier, ModelView):
        return classifier
    module = module_of(classifier)
    device, dtype = _param_facts(module)
    view = ModelView(
        module=module, nb_classes=0, input_shape=None, clip_values=None, device=device, dtype=dtype,
        _layers=dict(module.named_modules()),
    )
    if module is classifier:
        return view
    if type(classifier).__module__.startswith("foolbox."):
        lo, hi = classifier.bounds
        return replace(
            view,
            clip_values=(float(lo), float(hi)),
            preprocess=_foolbox_preprocess(classifier, device, dtype),
            affine_preprocess=True,
            source="foolbox",
        )
    clip = classifier.clip_values
    return replace(
        view,
        nb_classes=int(classifier.nb_classes),
        input_shape=tuple(int(s) for s in classifier.input_shape),
        clip_values=None if clip is None else (float(np.min(clip[0])), float(np.max(clip[1]))),
        preprocess=_art_preprocess(classifier),
        affine_preprocess=_art_affine(classifier),
        source="art",
    )


#: Samples the probe forward runs on.
_PROBE = 4


def probe(view: ModelView, x: "np.ndarray | torch.Tensor", name: str = "x") -> tuple[ModelView, torch.Tensor]:
    """
    Run the model once on the first few samples of ``x`` (eval mode, no gradients) so that a shape mismatch or a
    raising model becomes one message naming the argument, before any algorithm starts; fill in the number of
    classes of a plain module or foolbox model, and check it against the one an ART classifier declares.

    :param view: The view (from :func:`adapt`).
    :param x: Validated inputs (:func:`art_geometry.core.validation.check_array`).
    :param name: The argument's name, for messages.
    :return: The view with ``nb_classes`` set, and the probe's logits.
    :raises ValueError: When the model cannot run on ``x``, returns no logits matrix, or fewer than two classes.
    """
    shape = tuple(int(s) for s in x.shape[1:])
    try:
        with view.evaluating(), torch.no_grad():
            logits = view(view.to_tensor(x[:_PROBE]))
    except Exception as err:  # the user's model may raise anything: report it against the argument
        expected = f" (input_shape {view.input_shape})" if view.input_shape is not None else ""
        raise ValueError(
            f"the classifier cannot run on {name} with samples of shape {shape}{expected}: "
            f"{type(err).__name__}: {err}"
        ) from err
    width = int(logits.shape[1]) if logits.ndim == 2 else 0
    if view.nb_classes and width != view.nb_classes:
        raise ValueError(f"the classifier declares nb_classes={view.nb_classes} but returns {width} logits")
    if width < 2:
        raise ValueError(f"the model has {width} class(es); decision geometry needs at least 2")
    return replace(view, nb_classes=width), logits


def model_view(classifier: Any, x: "np.ndarray | torch.Tensor | None" = None) -> ModelView:
    """
    Adapt a classifier to a :class:`ModelView`.

    :param classifier: ART ``PyTorchClassifier``, foolbox ``PyTorchModel``, plain ``torch.nn.Module``, or a
                       :class:`ModelView` (returned as is).
    :param x: Example inputs; needed for a plain module or foolbox model to find the number of classes.
    :return: The model view.
    :raises TypeError: For any other kind of classifier.
    :raises ValueError: When the classes cannot be found (no ``x``), or the model does not run on ``x``.
    """
    view = adapt(classifier)
    if x is None:
        if view.nb_classes == 0:
            raise ValueError(
                "the number of classes of a plain torch model or foolbox model is found from one forward pass: "
                "pass x"
            )
        return view
    view, logits = probe(view, check_array(x, "x", view.input_shape))
    warn_if_probabilities(logits)
    return view


def warn_if_probabilities(logits: torch.Tensor) -> None:
    """
    Warn when a batch of model outputs looks like probabilities (non-negative rows summing to one): the geometry
    metrics are defined on logits.

    :param logits: A batch of model outputs.
    """
    if logits.shape[0] == 0:
        return
    rows = logits.detach().sum(dim=1)
    if bool((logits >= 0).all()) and bool(torch.allclose(rows, torch.ones_like(rows), atol=1e-4)):
        warnings.warn(
            "the model's outputs are non-negative and sum to 1: it seems to return probabilities; "
            "art-geometry expects logits (remove the final softmax)",
            UserWarning,
            stacklevel=3,
        )
