"""Compiled kernels bound to the arrays they work on, called without numba's per-call dispatch.

A numba dispatcher types every argument on every call (a few microseconds for a long argument
list, more for tuples of arrays); in a closed loop of ~20 kernel calls per 10 ms tick that is a
large part of the Python overhead. :func:`bind` resolves the compiled overload once, for the
types of the given arrays, and returns it with those arrays bound. The compiled entry point does
not check its arguments: the bound arrays must be changed in place only, never replaced (rebind
then), and the free arguments must be of the declared types.
"""

from __future__ import annotations

import functools

import numba as nb


def bind(kernel, *fixed, free: tuple = ()):
    """``f(*rest)`` = ``kernel(*fixed, *rest)`` through the overload compiled (or loaded from
    numba's cache) for the types of ``fixed`` followed by the numba types ``free``."""
    sig = tuple(nb.typeof(a) for a in fixed) + tuple(free)
    return functools.partial(kernel.compile(sig), *fixed)
