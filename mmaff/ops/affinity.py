# Copyright (c) mmaff contributors. All rights reserved.
"""Pixel-pair affinities on the stride-8 grid: the one home of pair logic.

AffinityNet (stage 3, see ``docs/method.md``) relates every grid pixel ``i``
to every pixel ``j`` within Euclidean radius ``gamma`` (5 by default) of it.
Each *unordered* pair is stored once.

Representation (offset-major dense tensors):

* :func:`pair_offsets` lists the offsets ``(dy, dx)`` that enumerate every
  unordered in-radius pair exactly once: ``(0, dx)`` for
  ``1 <= dx < radius`` and ``(dy, dx)`` for ``1 <= dy < radius``,
  ``|dx| < radius`` with ``dy**2 + dx**2 < radius**2``. Radius 5 gives 34
  offsets, radius 1 gives none.
* A pair tensor has shape ``(B, P, h, w)`` with ``P = len(pair_offsets(r))``:
  entry ``[b, p, y, x]`` belongs to the pair of grid pixel ``(y, x)`` (the
  *anchor*) and its partner ``(y + dy_p, x + dx_p)``.
* Entries whose partner lies outside the grid are meaningless; they are 0
  (affinities) or False (labels), and :func:`pair_valid_mask` flags them
  False. Every pixel keeps its full in-image neighbourhood, borders
  included: the pair of pixels ``i`` and ``j`` is stored at the anchor that
  precedes the other in raster order, whatever the position in the grid.
"""
from typing import List, Optional, Tuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = [
    'pair_offsets', 'pair_valid_mask', 'pair_slices', 'affinity_from_features',
    'affinity_labels'
]

_Slices = Tuple[slice, slice]


def _check_radius(radius: int, where: str) -> int:
    if isinstance(radius, bool) or not isinstance(radius, int) or radius < 1:
        raise ValueError(f'{where}: radius must be an int >= 1, got '
                         f'{radius!r}')
    return radius


def pair_offsets(radius: int = 5) -> List[Tuple[int, int]]:
    """Offsets enumerating every unordered in-radius pixel pair once.

    Args:
        radius (int): Pairs with ``dy**2 + dx**2 < radius**2`` are related.
            Defaults to 5.

    Returns:
        list[tuple[int, int]]: ``(dy, dx)`` offsets in a fixed order: first
        ``(0, 1) .. (0, radius - 1)``, then rows ``dy = 1 .. radius - 1``
        with ``dx`` ascending. ``-offset`` is never in the list.
    """
    _check_radius(radius, 'pair_offsets')
    offsets = [(0, dx) for dx in range(1, radius)]
    for dy in range(1, radius):
        for dx in range(-radius + 1, radius):
            if dy * dy + dx * dx < radius * radius:
                offsets.append((dy, dx))
    return offsets


def pair_slices(offset: Tuple[int, int], h: int,
                w: int) -> Optional[Tuple[_Slices, _Slices]]:
    """Grid slices of the anchors and partners of one offset.

    Args:
        offset (tuple[int, int]): ``(dy, dx)`` with ``dy >= 0``.
        h (int): Grid height.
        w (int): Grid width.

    Returns:
        tuple | None: ``((ys, xs), (yt, xt))`` such that ``grid[..., ys, xs]``
        are the anchors with an in-grid partner and ``grid[..., yt, xt]``
        those partners, element by element; None when no anchor has one.
    """
    dy, dx = offset
    if dy < 0:
        raise ValueError(f'pair_slices: offsets must have dy >= 0, got '
                         f'{offset}')
    if dy >= h or abs(dx) >= w:
        return None
    x0 = max(0, -dx)
    x1 = w - max(0, dx)
    src = (slice(0, h - dy), slice(x0, x1))
    dst = (slice(dy, h), slice(x0 + dx, x1 + dx))
    return src, dst


def pair_valid_mask(h: int,
                    w: int,
                    radius: int = 5,
                    device: Optional[torch.device] = None) -> Tensor:
    """Which entries of a ``(P, h, w)`` pair tensor have an in-grid partner.

    Args:
        h (int): Grid height.
        w (int): Grid width.
        radius (int): Pair radius. Defaults to 5.
        device (torch.device, optional): Device of the result.

    Returns:
        Tensor: (P, h, w) bool.
    """
    _check_grid(h, w, 'pair_valid_mask')
    offsets = pair_offsets(radius)
    mask = torch.zeros((len(offsets), h, w), dtype=torch.bool, device=device)
    for p, offset in enumerate(offsets):
        sl = pair_slices(offset, h, w)
        if sl is not None:
            mask[(p, ) + sl[0]] = True
    return mask


def _check_grid(h: int, w: int, where: str) -> None:
    if h < 1 or w < 1:
        raise ValueError(f'{where}: the grid must be non-empty, got '
                         f'{h}x{w}')


def _affinity_forward(feats: Tensor, offsets: List[Tuple[int, int]]) -> Tensor:
    b, _, h, w = feats.shape
    aff = feats.new_zeros((b, len(offsets), h, w))
    for p, offset in enumerate(offsets):
        sl = pair_slices(offset, h, w)
        if sl is None:
            continue
        src, dst = sl
        dist = (feats[(..., ) + src] - feats[(..., ) + dst]).abs_().mean(1)
        aff[(slice(None), p) + src] = torch.exp(-dist)
    return aff


class _AffinityFromFeatures(torch.autograd.Function):
    """``a_ij = exp(-mean_k |f_k(i) - f_k(j)|)`` with a lean backward.

    Autograd through the plain forward would keep one ``(B, K, h, w)``
    difference per offset alive until backward (P times the features). Here
    only the features and the affinities are saved, and the backward
    recomputes one difference at a time:
    ``d a_ij / d f_k(i) = -a_ij * sign(f_k(i) - f_k(j)) / K`` and the opposite
    for ``f_k(j)``.
    """

    @staticmethod
    def forward(ctx, feats: Tensor, radius: int) -> Tensor:
        offsets = pair_offsets(radius)
        aff = _affinity_forward(feats, offsets)
        ctx.offsets = offsets
        ctx.save_for_backward(feats, aff)
        return aff

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_aff: Tensor):
        feats, aff = ctx.saved_tensors
        h, w = feats.shape[-2:]
        # d loss / d mean-distance, per pair; the 1/K of the mean included.
        coef = grad_aff * aff * (-1.0 / feats.shape[1])
        grad = torch.zeros_like(feats)
        for p, offset in enumerate(ctx.offsets):
            sl = pair_slices(offset, h, w)
            if sl is None:
                continue
            src, dst = sl
            term = (feats[(..., ) + src] - feats[(..., ) + dst]).sign_()
            term.mul_(coef[(slice(None), slice(p, p + 1)) + src])
            grad[(..., ) + src] += term
            grad[(..., ) + dst] -= term
        return grad, None


def affinity_from_features(feats: Tensor, radius: int = 5) -> Tensor:
    """Affinities ``a_ij = exp(-mean_k |f_k(i) - f_k(j)|)`` of all pairs.

    Memory is O(B x P x h x w) for the result plus one ``(B, K, h, w)``
    difference at a time, in the forward and in the backward pass
    (differentiable w.r.t. ``feats``).

    Args:
        feats (Tensor): Affinity features (B, K, h, w), floating point.
        radius (int): Pair radius (see :func:`pair_offsets`). Defaults to 5.

    Returns:
        Tensor: (B, P, h, w) affinities in (0, 1]; entries without an
        in-grid partner are 0.
    """
    _check_radius(radius, 'affinity_from_features')
    if not isinstance(feats, Tensor) or feats.dim() != 4:
        shape = tuple(feats.shape) if isinstance(
            feats, Tensor) else type(feats).__name__
        raise ValueError('affinity_from_features: feats must be a '
                         f'(B, K, h, w) tensor, got {shape}')
    if not feats.is_floating_point():
        raise TypeError('affinity_from_features: feats must be floating '
                        f'point, got {feats.dtype}')
    b, k, h, w = feats.shape
    if b < 1 or k < 1:
        raise ValueError('affinity_from_features: need at least one image '
                         f'and one channel, got feats {tuple(feats.shape)}')
    _check_grid(h, w, 'affinity_from_features')
    return _AffinityFromFeatures.apply(feats, radius)


def affinity_labels(label_map: Tensor,
                    radius: int = 5,
                    ignore_index: int = 255) -> Tuple[Tensor, Tensor, Tensor]:
    """Pair labels from a confident-region label map on the grid.

    Args:
        label_map (Tensor): (B, h, w) integer label ids; 0 is background,
            ``ignore_index`` is unsure.
        radius (int): Pair radius. Defaults to 5.
        ignore_index (int): The "no label" id. Defaults to 255.

    Returns:
        tuple[Tensor, Tensor, Tensor]: ``(bg_pos, fg_pos, neg)``, each
        (B, P, h, w) bool. ``bg_pos``: both labels 0; ``fg_pos``: both
        labels equal and > 0; ``neg``: labels differ. Pairs touching
        ``ignore_index`` and entries without an in-grid partner are False in
        all three.
    """
    _check_radius(radius, 'affinity_labels')
    if not isinstance(label_map, Tensor) or label_map.dim() != 3:
        shape = tuple(label_map.shape) if isinstance(
            label_map, Tensor) else type(label_map).__name__
        raise ValueError('affinity_labels: label_map must be a (B, h, w) '
                         f'tensor, got {shape}')
    if label_map.is_floating_point() or label_map.is_complex() or \
            label_map.dtype == torch.bool:
        raise TypeError('affinity_labels: label_map must hold integer label '
                        f'ids, got {label_map.dtype}')
    b, h, w = label_map.shape
    if b < 1:
        raise ValueError('affinity_labels: empty batch')
    _check_grid(h, w, 'affinity_labels')
    offsets = pair_offsets(radius)
    shape = (b, len(offsets), h, w)
    bg_pos = torch.zeros(shape, dtype=torch.bool, device=label_map.device)
    fg_pos = torch.zeros_like(bg_pos)
    neg = torch.zeros_like(bg_pos)
    for p, offset in enumerate(offsets):
        sl = pair_slices(offset, h, w)
        if sl is None:
            continue
        src, dst = sl
        a = label_map[(slice(None), ) + src]
        c = label_map[(slice(None), ) + dst]
        known = (a != ignore_index) & (c != ignore_index)
        same = (a == c) & known
        index = (slice(None), p) + src
        bg_pos[index] = same & (a == 0)
        fg_pos[index] = same & (a > 0)
        neg[index] = (a != c) & known
    return bg_pos, fg_pos, neg
