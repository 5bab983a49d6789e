"""
Subspaces of the input space (:mod:`~art_geometry.subspaces.subspace`: DCT blocks, random, the span of vectors, a
direction, a complement) and the 2-D DCT they are built on, with the paper's frequency transforms
(:mod:`~art_geometry.subspaces.spectral`), from "Hold me tight!" (Ortiz-Jimenez et al., NeurIPS 2020).
"""

from art_geometry.subspaces.subspace import (
    BasisSubspace,
    ComplementSubspace,
    DCTBlockSubspace,
    Subspace,
    SubspaceStack,
    dct_subspaces,
    direction,
    orthogonal_complement,
    random_subspace,
    span,
)

__all__ = [
    "Subspace",
    "DCTBlockSubspace",
    "BasisSubspace",
    "ComplementSubspace",
    "SubspaceStack",
    "dct_subspaces",
    "random_subspace",
    "span",
    "orthogonal_complement",
    "direction",
]
