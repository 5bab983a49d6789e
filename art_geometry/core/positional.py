"""
The public shape's transition: the old positional call forms keep working for one release, with a
``DeprecationWarning`` that says what to write instead (listed in CHANGELOG.md).
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, Callable, TypeVar

__all__ = ["legacy_positional"]

F = TypeVar("F", bound=Callable[..., Any])


def legacy_positional(*names: str, after: int, when: "Callable[[Any], bool] | None" = None) -> Callable[[F], F]:
    """
    Accept the old call form where ``names`` were passed positionally after the first ``after`` arguments.

    :param names: The keyword-only parameters that used to be positional, in their old order.
    :param after: How many positional parameters the new signature has before them (the old ones follow).
    :param when: A test on the first extra positional argument telling the old form from the new one (for a
                 position whose meaning changed, e.g. a layer name where ``y`` now stands); default: any extra.
    :return: The decorator.
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if len(args) > after and (when is None or when(args[after])):
                extra = args[after:]
                if len(extra) > len(names):
                    raise TypeError(f"{fn.__name__}() takes at most {after + len(names)} positional arguments")
                moved = names[: len(extra)]
                for name, value in zip(moved, extra):
                    if name in kwargs:
                        raise TypeError(f"{fn.__name__}() got multiple values for argument {name!r}")
                    kwargs[name] = value
                warnings.warn(
                    f"{fn.__name__}: passing {', '.join(moved)} positionally is deprecated and will stop working "
                    f"in the next release; write {', '.join(f'{n}=...' for n in moved)}",
                    DeprecationWarning,
                    stacklevel=2,
                )
                args = args[:after]
            return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
