# Copyright (c) mmaff contributors. All rights reserved.
"""Random-walk propagation of class scores with a sparse transition matrix.

AffinityNet's stage 4 (see ``docs/method.md``): on the stride-8 grid of
``N = h * w`` pixels, ``W = [a_ij ** beta]`` for every pair within the radius
(both directions of each stored pair), ``W_ii = 1`` and zero beyond the
radius; ``T = D^-1 W`` with ``D`` the diagonal of the row sums; each score
channel ``v`` becomes ``T^t v``.

``T`` has at most ``2P + 1`` non-zeros per row (69 for radius 5), so it is
stored as a sparse CSR matrix (block diagonal over the batch) and applied
``t`` times: O(N x neighbours) memory and about ``2 * nnz * C * t`` FLOP,
where the authors' dense formulation (``T^t`` by repeated squaring) needs
O(N^2) memory and O(N^3 log t) time. The same code runs on CPU (MKL) and
CUDA (cuSPARSE). ``tools/analysis_tools/benchmark_random_walk.py`` compares
both formulations.

Long walks need fewer products than steps. ``T`` is similar to the
symmetric ``D^-1/2 W D^-1/2`` and is stochastic, so its eigenvalues are
real and in ``[-1, 1]``, where ``x^t`` is, to within a tolerance ``tol``,
a Chebyshev series of degree ``d ~ sqrt(2 t ln(2 / tol))``
(:func:`chebyshev_power_coefficients`). Evaluated by the three-term
recurrence ``y_k+1 = 2 T y_k - y_k-1``, it costs ``d`` products: 84
instead of 256 for the paper's ``t = 256`` in float32 (``tol`` = the
dtype's machine epsilon), with the same accuracy against the dense result.
"""
import contextlib
import functools
import math
import numbers
import warnings
from typing import Iterator, List, Tuple

import torch
from torch import Tensor

from .affinity import pair_offsets

__all__ = [
    'random_walk', 'sparse_transition', 'cpu_threads',
    'chebyshev_power_coefficients', 'walk_threads'
]

#: Below this many multiply-adds per step, a CPU walk runs on one thread:
#: each of the ``steps`` products is then too short for intra-op threads
#: to pay for their barrier, and beside a busy process every barrier waits
#: for a descheduled thread. Measured on 2 cores (VOC-size walk of 4
#: channels, ~0.8 M per step): two threads took 0.03 s on a quiet machine
#: but 0.2-1.7 s beside a busy process; one thread 0.04 s and 0.12-0.18 s.
SINGLE_THREAD_WORK = 2**24

#: A walk uses the Chebyshev series (see the module's docstring) when the
#: series needs at most this fraction of ``steps`` products; a step of the
#: series costs one product and one vector update more than a plain step.
SERIES_MAX_FRACTION = 0.75


@contextlib.contextmanager
def cpu_threads(num: int) -> Iterator[None]:
    """Run torch's CPU ops of the block on ``num`` threads, then restore.

    Args:
        num (int): Intra-op threads inside the block.
    """
    before = torch.get_num_threads()
    if num == before:
        yield
        return
    torch.set_num_threads(num)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@functools.lru_cache(maxsize=16)
def _neighbour_table(
        h: int, w: int, radius: int,
        device: torch.device) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """The sparsity pattern of ``T`` for one image, in CSR order.

    The neighbour slots of a pixel are all offsets ``o`` with
    ``|o|^2 < radius^2`` (itself included), sorted by ``(dy, dx)`` so that
    the columns of each row come out ascending. The weight of slot ``o``
    comes from the stored pair ``+o`` anchored at the pixel, or from the
    pair ``-o`` anchored at the neighbour, or is the constant 1 of the
    diagonal.

    The table depends only on the grid, the radius and the device, and a
    dataset has few grid sizes (VOC: mostly 500 x 375 and 375 x 500): the
    last 16 are cached (building one costs about as much as 130 walk steps
    of a VOC image). Callers must not modify the returned tensors.

    Returns:
        tuple[Tensor]: ``crow`` (N + 1,), ``col`` (nnz,), ``row`` (nnz,) and
        ``src`` (nnz,): for each non-zero, the index into the flattened
        ``(P * N + 1)`` vector of pair weights followed by the constant 1.
    """
    pairs = pair_offsets(radius)
    num_pairs, n = len(pairs), h * w
    slots = [(0, 0, 0, -1)]
    for p, (dy, dx) in enumerate(pairs):
        slots.append((dy, dx, 1, p))  # pair anchored at the pixel itself
        slots.append((-dy, -dx, -1, p))  # pair anchored at the neighbour
    slots.sort()

    idx = torch.arange(n, device=device)
    ys, xs = idx // w, idx % w
    valid, col, src = [], [], []
    for oy, ox, kind, p in slots:
        valid.append((ys + oy >= 0) & (ys + oy < h) & (xs + ox >= 0)
                     & (xs + ox < w))
        partner = idx + (oy * w + ox)
        col.append(partner)
        if kind == 0:
            src.append(torch.full_like(idx, num_pairs * n))
        else:
            src.append(p * n + (idx if kind > 0 else partner))
    valid = torch.stack(valid, 1)  # (N, K), row-major = CSR order
    col = torch.stack(col, 1)[valid]
    src = torch.stack(src, 1)[valid]
    counts = valid.sum(1)
    row = torch.repeat_interleave(idx, counts)
    crow = torch.zeros(n + 1, dtype=torch.long, device=device)
    crow[1:] = counts.cumsum(0)
    return crow, col, row, src


def chebyshev_power_coefficients(steps: int, tol: float) -> List[float]:
    """The shortest Chebyshev series of ``x ** steps`` within ``tol``.

    ``x^t = sum_k c_k T_k(x)`` exactly, where ``T_k`` is the Chebyshev
    polynomial of degree ``k`` and, for ``k`` of the parity of ``t``,
    ``c_k = 2^(1-t) C(t, (t-k)/2)`` (``c_0 = 2^-t C(t, t/2)``; the others
    are 0): ``x^t`` is the expected ``T_|S|(x)`` for ``S`` the end of a
    ``t``-step +-1 walk. The coefficients are non-negative and sum to 1, so
    dropping the terms above a degree ``d`` changes the value at any
    ``x`` in ``[-1, 1]`` (where ``|T_k| <= 1``) by at most the sum of the
    dropped coefficients. This returns ``c_0, ..., c_d`` for the smallest
    ``d`` whose dropped coefficients sum to at most ``tol``; ``d`` grows
    like ``sqrt(2 t ln(2 / tol))``.

    Args:
        steps (int): The power ``t >= 0``.
        tol (float): The largest error allowed on ``[-1, 1]``, >= 0.

    Returns:
        list[float]: ``d + 1`` coefficients (exact binomials, rounded once
        to float64).
    """
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) \
            or steps < 0:
        raise ValueError('chebyshev_power_coefficients: steps must be an '
                         f'int >= 0, got {steps!r}')
    if not isinstance(tol, numbers.Real) or not 0 <= tol < float('inf'):
        raise ValueError('chebyshev_power_coefficients: tol must be a '
                         f'finite number >= 0, got {tol!r}')
    t = int(steps)
    coeffs = [0.0] * (t + 1)
    for k in range(t % 2, t + 1, 2):
        # int / int divides exactly and rounds once, for any t
        coeffs[k] = (1 if k == 0 else 2) * math.comb(t, (t - k) // 2) / 2**t
    dropped, degree = 0.0, t
    while degree > 0 and dropped + coeffs[degree] <= tol:
        dropped += coeffs[degree]
        degree -= 1
    return coeffs[:degree + 1]


@functools.lru_cache(maxsize=32)
def _walk_series(steps: int, dtype: torch.dtype) -> Tuple[float, ...]:
    """The walk's series for ``steps`` in ``dtype`` (computed once: an
    export walks every image with the same ``steps``)."""
    return tuple(
        chebyshev_power_coefficients(steps, torch.finfo(dtype).eps))


def _walk_steps(trans: Tensor, x: Tensor, steps: int) -> Tensor:
    """``T^steps x`` with the fewest sparse products (plain or series)."""
    coeffs = _walk_series(steps, x.dtype)
    degree = len(coeffs) - 1
    if degree > SERIES_MAX_FRACTION * steps:
        for _ in range(steps):
            x = trans @ x
        return x
    # y_0 = x, y_1 = T x, y_k+1 = 2 T y_k - y_k-1; out = sum_k c_k y_k
    prev, cur = x, trans @ x
    out = x * coeffs[0]
    if coeffs[1]:
        out.add_(cur, alpha=coeffs[1])
    for k in range(2, degree + 1):
        prev, cur = cur, torch.addmm(prev, trans, cur, beta=-1, alpha=2)
        if coeffs[k]:
            out.add_(cur, alpha=coeffs[k])
    return out


def _walked_channels(scores: Tensor) -> Tensor:
    """Indices of the channels that are non-zero in some image: a channel
    that is zero everywhere stays zero (T 0 = 0), so absent classes, when a
    caller passes all of them, cost nothing."""
    active = (scores.detach().flatten(2) != 0).any(2).any(0)
    return active.nonzero().flatten()


def _walk_threads(values: int, radius: int, device: torch.device) -> int:
    """Intra-op threads for a walk of ``values`` pixel-channel values."""
    work = values * len(pair_offsets(radius)) * 2
    if device.type == 'cpu' and work < SINGLE_THREAD_WORK:
        return 1
    return torch.get_num_threads()


def walk_threads(scores: Tensor, radius: int = 5) -> int:
    """The intra-op threads :func:`random_walk` runs ``scores`` on.

    Args:
        scores (Tensor): (B, C, h, w) scores as passed to the walk.
        radius (int): Pair radius. Defaults to 5.

    Returns:
        int: 1 for a short CPU walk (fewer than :data:`SINGLE_THREAD_WORK`
        multiply-adds per product over the walked channels), else torch's
        current number of threads.
    """
    b, _, h, w = scores.shape
    k = int(_walked_channels(scores).numel())
    return _walk_threads(b * h * w * k, radius, scores.device)


def _check_tensor(x: Tensor, name: str) -> None:
    if not isinstance(x, Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f'random_walk: {name} must be a 4-D tensor, got '
                         f'{shape}')
    if not x.is_floating_point():
        raise TypeError(f'random_walk: {name} must be floating point, got '
                        f'{x.dtype}')
    if x.numel() and not bool(torch.isfinite(x).all()):
        raise ValueError(f'random_walk: {name} has NaN or inf values')


def _check_affinity(affinity: Tensor, beta: float, radius: int) -> None:
    """Check the walk's parameters and the (B, P, h, w) affinity."""
    if isinstance(radius, bool) or not isinstance(radius, int) or radius < 1:
        raise ValueError(f'random_walk: radius must be an int >= 1, got '
                         f'{radius!r}')
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or \
            not 0 < beta < float('inf'):
        raise ValueError(f'random_walk: beta must be a finite number > 0, '
                         f'got {beta!r}')
    _check_tensor(affinity, 'affinity')
    b, num_pairs, h, w = affinity.shape
    expected = len(pair_offsets(radius))
    if b < 1 or h < 1 or w < 1:
        raise ValueError('random_walk: affinity must be a non-empty '
                         f'(B, P, h, w) tensor, got {tuple(affinity.shape)}')
    if num_pairs != expected:
        raise ValueError(
            f'random_walk: affinity {tuple(affinity.shape)} has P = '
            f'{num_pairs} pair channels but radius {radius} has {expected} '
            'pair offsets')
    if bool((affinity < 0).any()):
        raise ValueError('random_walk: affinity must be non-negative, got a '
                         f'minimum of {affinity.min().item():.4g}')


def _check_scores(scores: Tensor, affinity: Tensor, steps: int) -> None:
    """Check ``scores`` against an already checked ``affinity``."""
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) \
            or steps < 1:
        raise ValueError(f'random_walk: steps must be an int >= 1, got '
                         f'{steps!r}')
    _check_tensor(scores, 'scores')
    b, c, h, w = scores.shape
    if c < 1:
        raise ValueError('random_walk: scores have no channel, got '
                         f'{tuple(scores.shape)}')
    if (b, h, w) != (affinity.shape[0], ) + tuple(affinity.shape[2:]):
        raise ValueError(
            f'random_walk: scores {tuple(scores.shape)} (B, C, h, w) and '
            f'affinity {tuple(affinity.shape)} (B, P, h, w) disagree on '
            'B, h or w')
    if scores.device != affinity.device:
        raise ValueError(f'random_walk: scores are on {scores.device} but '
                         f'affinity is on {affinity.device}')


def _work_dtype(*tensors: Tensor) -> torch.dtype:
    if any(t.dtype == torch.float64 for t in tensors):
        return torch.float64
    return torch.float32


def _sparse_transition(affinity: Tensor, beta: float, radius: int,
                       dtype: torch.dtype) -> Tensor:
    b, _, h, w = affinity.shape
    n = h * w
    crow, col, row, src = _neighbour_table(h, w, radius, affinity.device)
    nnz = col.numel()
    weights = affinity.detach().to(dtype).reshape(b, -1).pow(beta)
    weights = torch.cat([weights, weights.new_ones(b, 1)], 1)
    values = weights[:, src]  # (B, nnz)
    degree = values.new_zeros(b, n).index_add_(1, row, values)
    values = values / degree[:, row]

    # Block-diagonal (B N x B N) matrix: one block per image.
    shift = torch.arange(b, device=affinity.device)[:, None]
    crow = torch.cat([(crow[:-1] + shift * nnz).reshape(-1), crow[-1:] * b])
    col = (col + shift * n).reshape(-1)
    index_dtype = torch.int32 if b * max(nnz, n) < 2**31 else torch.int64
    with warnings.catch_warnings():
        # "Sparse CSR tensor support is in beta": expected, once per process.
        warnings.filterwarnings('ignore', message='.*Sparse CSR tensor')
        return torch.sparse_csr_tensor(
            crow.to(index_dtype),
            col.to(index_dtype),
            values.reshape(-1), (b * n, b * n),
            check_invariants=False)


def sparse_transition(affinity: Tensor,
                      beta: float = 8,
                      radius: int = 5) -> Tensor:
    """The random-walk transition matrix ``T = D^-1 W`` as sparse CSR.

    Args:
        affinity (Tensor): (B, P, h, w) pair affinities, as returned by
            :func:`mmaff.ops.affinity_from_features`.
        beta (float): Power applied to the affinities. Defaults to 8.
        radius (int): Pair radius the affinities were computed with.
            Defaults to 5.

    Returns:
        Tensor: Sparse CSR (B * h * w, B * h * w), block diagonal with one
        (h * w, h * w) block per image (row-major pixel order); float64 if
        ``affinity`` is, else float32. Rows sum to 1.
    """
    _check_affinity(affinity, beta, radius)
    return _sparse_transition(affinity, beta, radius, _work_dtype(affinity))


def random_walk(scores: Tensor,
                affinity: Tensor,
                beta: float = 8,
                steps: int = 256,
                radius: int = 5) -> Tensor:
    """Propagate class scores by ``steps`` random-walk steps: ``T^t v``.

    Each product is one sparse matrix product with ``T`` for all channels
    and images at once; no dense ``N x N`` matrix is ever built. The walk is
    not differentiable (inputs are detached).

    Note:
        Only the channels that are non-zero in some image are walked (a
        zero channel stays zero), so passing all classes with the absent
        ones zero costs what the present ones cost. A long walk is
        evaluated as a Chebyshev series of ``T`` (module docstring), exact
        to the working dtype's machine epsilon: 84 sparse products
        instead of 256 in float32. On CPU a walk whose
        steps are short (fewer than :data:`SINGLE_THREAD_WORK`
        multiply-adds) runs on one thread: intra-op threads would only add
        a barrier per step. See ``docs/benchmarks.md``, "Random walk".

    Args:
        scores (Tensor): (B, C, h, w) class scores on the grid (e.g. the
            background score and the CAMs, average-pooled to stride 8).
        affinity (Tensor): (B, P, h, w) non-negative pair affinities from
            :func:`mmaff.ops.affinity_from_features` with the same
            ``radius``.
        beta (float): Power applied to the affinities. Defaults to 8.
        steps (int): Number of steps ``t``. Defaults to 256 (the authors'
            ``logt = 8``).
        radius (int): Pair radius. Defaults to 5.

    Returns:
        Tensor: (B, C, h, w) propagated scores; float64 if either input is,
        else float32. Channels that are zero in every image are not walked
        (they stay zero).
    """
    _check_affinity(affinity, beta, radius)
    _check_scores(scores, affinity, steps)
    b, c, h, w = scores.shape
    dtype = _work_dtype(scores, affinity)
    out = scores.detach().new_zeros((b, c, h, w), dtype=dtype)
    index = _walked_channels(scores)
    k = int(index.numel())
    if k == 0:
        return out
    threads = _walk_threads(b * h * w * k, radius, scores.device)
    with torch.no_grad(), cpu_threads(threads):
        trans = _sparse_transition(affinity, beta, radius, dtype)
        x = scores.detach()[:, index].to(dtype).reshape(b, k, h * w)
        x = x.transpose(1, 2).reshape(b * h * w, k).contiguous()
        x = _walk_steps(trans, x, int(steps))
        out[:, index] = x.reshape(b, h * w, k).transpose(1, 2).reshape(
            b, k, h, w)
        return out
