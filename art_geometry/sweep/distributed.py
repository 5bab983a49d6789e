"""
Sharding over ``torch.distributed`` ranks: which rank computes what, and the collectives that bring the results
together.

No process group initialised (the default): one process, rank 0 of 1, and every function here is a no-op. With a
group (the user's ``torch.distributed.init_process_group``, or the CLI's under ``torchrun``; gloo on CPU, NCCL on
GPU) the chunks of a sweep are dealt round-robin (chunk ``c`` to rank ``c % world_size``), every rank computes its
own, and :func:`gather` hands every rank all of them, so every rank returns the same result object.

A rank whose computation raises does not leave the others waiting: :func:`gather` first exchanges each rank's
outcome, and if any rank failed every rank raises a ``RuntimeError`` naming it and its error. (A rank that dies
without raising, e.g. killed, stalls the collectives until the process group's ``timeout``.)
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

import torch.distributed as dist

__all__ = ["world", "is_sharded", "agree", "gather", "barrier", "guarded"]

T = TypeVar("T")


def world() -> tuple[int, int]:
    """:return: ``(rank, world_size)`` of the default process group, ``(0, 1)`` when there is none."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_sharded() -> bool:
    """:return: Whether a process group with more than one rank is running."""
    return world()[1] > 1


def agree(value: T) -> T:
    """
    :param value: A picklable value computed on every rank (e.g. a freshly drawn seed).
    :return: Rank 0's value, on every rank.
    """
    if not is_sharded():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    """Wait for every rank (no-op without a group)."""
    if is_sharded():
        dist.barrier()


def guarded(compute: Callable[[], T]) -> T:
    """
    Run ``compute`` on every rank, then check that every rank succeeded (see the module docstring).

    :param compute: This rank's share of the work.
    :return: Its value.
    :raises RuntimeError: On every rank, when any rank raised (its own exception is chained on that rank).
    """
    if not is_sharded():
        return compute()
    value: Any = None
    error: "BaseException | None" = None
    try:
        value = compute()
    except Exception as err:  # reported to every rank below, then re-raised
        error = err
    outcomes: list[Any] = [None] * world()[1]
    dist.all_gather_object(outcomes, None if error is None else f"{type(error).__name__}: {error}")
    failed = [(rank, msg) for rank, msg in enumerate(outcomes) if msg is not None]
    if failed:
        detail = "; ".join(f"rank {rank}: {msg}" for rank, msg in failed)
        raise RuntimeError(f"the sharded computation failed on {len(failed)} rank(s): {detail}") from error
    return value


def gather(local: dict[int, T]) -> dict[int, T]:
    """
    :param local: This rank's results, keyed by chunk index.
    :return: Every rank's results merged, keyed by chunk index (the same dict on every rank).
    """
    if not is_sharded():
        return dict(local)
    parts: list[Any] = [None] * world()[1]
    dist.all_gather_object(parts, local)
    merged: dict[int, T] = {}
    for part in parts:
        merged.update(part)
    return merged
