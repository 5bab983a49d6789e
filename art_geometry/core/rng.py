"""
Seeded randomness that leaves the user's global random state untouched.
"""

from __future__ import annotations

import contextlib
import random
from typing import Iterator

import numpy as np
import torch

from art_geometry.core.validation import check_int

__all__ = ["seeded", "generator", "resolve_seed"]


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """
    Seed Python's, numpy's and torch's global generators for the body (for third-party code such as ART's ``fit``
    that draws from them), and restore all three states on exit.

    :param seed: The seed, a non-negative integer.
    :raises ValueError: For any other seed.
    """
    seed = check_int(seed, "seed", minimum=0)
    py_state, np_state, torch_state = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        random.seed(seed)
        np.random.seed(seed % 2**32)  # numpy's legacy generator takes 32-bit seeds (a drawn seed has 63 bits)
        torch.manual_seed(seed)
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.random.set_rng_state(torch_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)


def generator(seed: int, device: "torch.device | str" = "cpu") -> torch.Generator:
    """
    :param seed: The seed.
    :param device: Where the generator draws.
    :return: A new ``torch.Generator`` seeded with ``seed``.
    """
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


def resolve_seed(seed: "int | None") -> int:
    """
    :param seed: A validated seed (:func:`art_geometry.core.validation.check_seed`), or ``None``.
    :return: ``seed``, or for ``None`` a fresh 63-bit seed from the operating system's entropy (the global random
             states are not touched); record it in the result so the run can be repeated.
    """
    if seed is not None:
        return int(seed)
    return int(np.random.SeedSequence().entropy % (2**63))
