"""
Private machinery every family uses, importing no family (docs/architecture.md): the model view and adapters, ReLU
sites and activation capture, input sources, the one preparation step, validation, batching, settings, ``Norm``,
the result protocol, RNG, mode restoring, decision values and input gradients. Names here may change without
notice: import from ``art_geometry``.
"""
