"""
The activations a network computes at its layers and ReLU sites (:mod:`art_geometry.core.sites`), read during the
model's own forward pass.

**Layers.** A layer is a module name (``features.3``: its output; ``fc:input``: what it receives), a module's k-th
call (``name#k``, any module) or a site name; ``:input`` reads the pre-activation of a site, whose sign pattern
equals the output's (``relu(h) > 0`` iff ``h > 0``).

**Capture.** The user's module runs its ordinary forward: same parameters, same code, nothing copied or changed.
Modules are read by temporary forward hooks; functional sites by a ``TorchFunctionMode`` that counts the ReLU
calls made outside every leaf module of the trace (a call inside an ``nn.ReLU`` module belongs to the module's
site) and matches the j-th call to the j-th functional site of the graph; a forward that makes a different number
of calls than the trace raises ``RuntimeError``. Functional sites are recorded as copies, so a later in-place
operation on the tensor cannot change them.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.fx
from torch import nn
from torch.overrides import TorchFunctionMode

from art_geometry.core.model import LayerRef, ModelView
from art_geometry.core.sites import RELU_CALLS, Site, Sites, find_sites

__all__ = ["Activations", "Recorder"]


def _split_call(name: str) -> tuple[str, int] | None:
    """:return: ``(module, k)`` for ``"module#k"``, else ``None``."""
    module, sep, k = name.rpartition("#")
    return (module, int(k)) if sep and k.isdigit() else None


class Activations:
    """
    The layers and ReLU sites of one model view; the model is traced on first need (once per instance).

    :param view: The model view.
    :raises TypeError: For a TorchScript module: it has no forward hooks, so its layers cannot be read.
    """

    def __init__(self, view: ModelView):
        if isinstance(view.module, torch.jit.ScriptModule):
            raise TypeError(
                "the model is a TorchScript module, which has no forward hooks, so its layers' activations cannot "
                "be read: pass the Python nn.Module (on the command line: --model module:factory --weights file)"
            )
        self.view = view
        self._sites: Sites | None = None

    @property
    def sites(self) -> Sites:
        """The model's sites (traced in eval mode, as the metrics run it; hook fallback with a warning)."""
        if self._sites is None:
            self._sites = find_sites(self.view.module, self.view.layers, self.view.eval_mode)
        return self._sites

    def resolve(self, spec: "str | LayerRef") -> LayerRef:
        """
        :param spec: A module name, ``"module#k"`` (its k-th call), a site name, each optionally with ``:input``,
                     or a :class:`LayerRef`.
        :return: The reference.
        :raises ValueError: For a name that matches nothing (the message lists the modules and the ReLU sites), or
                            a call number past the calls the trace shows.
        """
        ref = LayerRef.parse(spec)
        layers = self.view.layers
        if ref.name in layers:
            return ref
        split = _split_call(ref.name)
        if split is not None and split[0] in layers:
            module, k = split
            runs = self.sites.calls.get(module)
            if runs is not None and k >= runs:
                raise ValueError(
                    f"layer {ref.name!r}: module {module!r} runs {runs} time(s) per forward (#0 to #{runs - 1})"
                )
            return ref
        if any(s.name == ref.name for s in self.sites.relu):
            return ref
        modules = ", ".join(n for n in layers if n) or "(none)"
        sites = ", ".join(s.name for s in self.sites.relu) or "(none)"
        raise ValueError(f"unknown layer {ref.name!r}; available layers: {modules}; ReLU sites: {sites}")

    def relu_refs(self) -> list[LayerRef]:
        """
        :return: A reference to every ReLU site, in execution order (the default layers of the region family).
        :raises ValueError: When the model has no ReLU site: naming its other activations (GELU, SiLU, ...) and
                            saying that the regions of the PRS paper are defined for ReLU networks.
        """
        sites = self.sites
        if sites.relu:
            return [LayerRef(s.name) for s in sites.relu]
        if sites.others:
            raise ValueError(
                f"the model applies {', '.join(sites.others)} and no ReLU: the decision regions of the PRS paper "
                "are sign patterns of ReLU pre-activations (within one, a ReLU network is affine), a definition "
                "for ReLU networks; name the layers to read sign patterns elsewhere (layers=[...])"
            )
        raise ValueError(
            "the model has no ReLU activation (no nn.ReLU module, no call of torch.relu, F.relu or Tensor.relu); "
            "name the layers to use"
        )

    def _site(self, name: str) -> Site | None:
        return next((s for s in self.sites.relu if s.name == name), None)

    @contextlib.contextmanager
    def recording(self, refs: Sequence[LayerRef]) -> Iterator["Recorder"]:
        """
        Record the activations at ``refs`` during forward passes of the view (run them inside
        ``view.evaluating()``); hooks and the function mode are removed on exit, even on error.

        :param refs: References from :meth:`resolve` or :meth:`relu_refs`.
        :return: The recorder; read it after each forward, then clear it.
        """
        layers = self.view.layers
        reads: dict[LayerRef, tuple[str, Any]] = {}
        for ref in refs:
            if ref.name in layers:
                reads[ref] = ("module", (LayerRef(ref.name, ref.where), None))
                continue
            split = _split_call(ref.name)
            if split is not None and split[0] in layers:
                reads[ref] = ("module", (LayerRef(split[0], ref.where), split[1]))
                continue
            site = self._site(ref.name)
            if site is None:
                raise ValueError(f"unknown layer {ref.name!r}")
            if site.module is not None:
                reads[ref] = ("module", (LayerRef(site.module, ref.where), site.call))
            else:
                reads[ref] = ("function", (site.index, ref.where))
        hooked = list(dict.fromkeys(target for kind, (target, _) in reads.values() if kind == "module"))
        wanted = {key for kind, key in reads.values() if kind == "function"}
        with self.view.capture(hooked) as store, self._functional(wanted) as calls:
            yield Recorder(reads, store, calls, len(self.sites.functional))

    @contextlib.contextmanager
    def _functional(self, wanted: set[tuple[int, str]]) -> Iterator["_Calls"]:
        """Count and record the functional ReLU calls of the root module's forward (when any is wanted)."""
        calls = _Calls(wanted)
        if not wanted:
            yield calls
            return
        root = self.view.module
        leaves = [self.view.layers[n] for n in self.sites.calls if n in self.view.layers and n]
        handles = [
            root.register_forward_pre_hook(calls.enter_root),
            root.register_forward_hook(calls.exit_root, always_call=True),
        ]
        try:
            for leaf in leaves:
                handles.append(leaf.register_forward_pre_hook(calls.enter_leaf))
                handles.append(leaf.register_forward_hook(calls.exit_leaf, always_call=True))
            with _ReluMode(calls):
                yield calls
        finally:
            for h in handles:
                h.remove()


class _Calls:
    """The state of one recording of functional ReLU calls."""

    def __init__(self, wanted: set[tuple[int, str]]):
        self.wanted = wanted
        self.store: dict[tuple[int, str], list[torch.Tensor]] = {key: [] for key in wanted}
        self.inside = False
        self.depth = 0
        self.count = 0
        self.last_count: int | None = None

    def enter_root(self, _module: nn.Module, _args: Any) -> None:
        self.inside, self.depth, self.count = True, 0, 0

    def exit_root(self, _module: nn.Module, _args: Any, _out: Any) -> None:
        self.inside, self.last_count = False, self.count

    def enter_leaf(self, _module: nn.Module, _args: Any) -> None:
        self.depth += 1

    def exit_leaf(self, _module: nn.Module, _args: Any, _out: Any) -> None:
        self.depth -= 1

    def call(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Run one ReLU call, recording its input and/or output when its position is wanted."""
        if not self.inside or self.depth:
            return func(*args, **kwargs)
        j = self.count
        self.count += 1
        if (j, "input") in self.wanted:
            pre = args[0] if args else kwargs["input"]
            self.store[(j, "input")].append(pre.detach().clone())
        out = func(*args, **kwargs)
        if (j, "output") in self.wanted:
            self.store[(j, "output")].append(out.detach().clone())
        return out


class _ReluMode(TorchFunctionMode):
    """Routes every ReLU call to :meth:`_Calls.call`; every other torch function runs untouched."""

    def __init__(self, calls: _Calls):
        super().__init__()
        self.calls = calls

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func in RELU_CALLS:
            return self.calls.call(func, args, kwargs)
        return func(*args, **kwargs)


class Recorder:
    """The activations recorded at each reference since the last :meth:`clear`."""

    def __init__(
        self,
        reads: dict[LayerRef, tuple[str, Any]],
        store: dict[LayerRef, list[torch.Tensor]],
        calls: _Calls,
        n_functional: int,
    ):
        self._reads = reads
        self._store = store
        self._calls = calls
        self._n_functional = n_functional

    def calls(self, ref: LayerRef) -> list[torch.Tensor]:
        """
        :param ref: One of the recorded references.
        :return: Its tensors from the last forward: every call of a module (in call order), or the one call of a
                 module call or site.
        :raises RuntimeError: When the layer did not run, or the forward made a different number of functional
                              ReLU calls than the trace (control flow the trace did not see).
        """
        kind, (target, which) = self._reads[ref]
        if kind == "module":
            got = self._store[target]
            if which is None:
                if not got:
                    raise RuntimeError(f"layer {ref} did not run in the model's forward pass")
                return list(got)
            if which >= len(got):
                raise RuntimeError(f"layer {ref}: module {target.name!r} ran {len(got)} time(s) in the forward pass")
            return [got[which]]
        seen = self._calls.last_count
        if seen != self._n_functional:
            raise RuntimeError(
                f"the model's forward made {seen} functional ReLU call(s) where its torch.fx trace has "
                f"{self._n_functional}: its control flow depends on the data; name module layers instead"
            )
        return list(self._calls.store[(target, which)])

    def clear(self) -> None:
        """Forget the recorded tensors (between batches)."""
        for got in self._store.values():
            got.clear()
        for got in self._calls.store.values():
            got.clear()
