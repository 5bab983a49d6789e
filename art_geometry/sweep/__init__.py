"""
Private: the one loop over chunks of samples behind every per-sample family (:mod:`~art_geometry.sweep.loop`), its
checkpoints (:mod:`~art_geometry.sweep.checkpoint`) and the ``torch.distributed`` helpers
(:mod:`~art_geometry.sweep.distributed`); imports ``core`` only (docs/architecture.md).
"""
