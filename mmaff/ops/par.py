# Copyright (c) mmaff contributors. All rights reserved.
"""Pixel-adaptive refinement (PAR; Ru et al., AFA, CVPR 2022).

A GPU-friendly alternative to the dense CRF for refining class scores
(``docs/method.md``, "Label refiners"). Every pixel ``i`` looks at the 8
pixels of the 3 x 3 ring around it at each dilation ``d`` of ``dilations``
(``8 |D|`` neighbours ``j``, the pixel itself not among them; outside the
image the border pixel is repeated). Its affinity to each neighbour is

* colour: ``k_rgb(i, j) = -mean_c (|I_c(i) - I_c(j)| / (w1 s_c(i))) ** 2``
  with ``s_c(i)`` the standard deviation of channel ``c`` over the
  neighbours of ``i`` (+ ``eps``);
* position: ``k_pos(j) = -(dist_j / (w1 s_pos)) ** 2``, ``dist_j`` = ``d``
  on the axes and ``d sqrt(2)`` on the diagonals, ``s_pos`` the standard
  deviation of those distances;
* ``a(i, j) = softmax_j k_rgb(i, j) + w2 softmax_j k_pos(j)``;

and the scores are propagated ``M(i) <- sum_j a(i, j) M(j)``, ``iterations``
times with the same ``a``. Every row of ``a`` sums to ``1 + w2``, so each
step scales the scores by that factor (:func:`par_refine` does not undo it;
:class:`mmaff.models.PAR` does). Both standard deviations are the
unbiased (n - 1) estimates.
"""
import math
import numbers
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ['par_offsets', 'par_affinity', 'par_refine']

#: The dilations of AFA / ToCo.
PAR_DILATIONS = (1, 2, 4, 8, 12, 24)


def _check_dilations(dilations: Sequence[int]) -> Tuple[int, ...]:
    dils = tuple(dilations) if isinstance(dilations,
                                          (list, tuple)) else None
    if not dils or any(
            isinstance(d, bool) or not isinstance(d, numbers.Integral)
            or d < 1 for d in dils):
        raise ValueError('par: dilations must be a non-empty sequence of '
                         f'integers >= 1, got {dilations!r}')
    if len(set(dils)) != len(dils):
        raise ValueError(f'par: dilations must be distinct, got {dils}')
    return tuple(int(d) for d in dils)


def par_offsets(
    dilations: Sequence[int] = PAR_DILATIONS
) -> Tuple[List[Tuple[int, int]], Tensor]:
    """The neighbour offsets of PAR and their spatial distances.

    Args:
        dilations (Sequence[int]): Ring dilations. Defaults to
            ``(1, 2, 4, 8, 12, 24)``.

    Returns:
        tuple: ``offsets``, a list of ``8 * len(dilations)`` ``(dy, dx)``
        (for each dilation the 3 x 3 ring without its centre, row by row),
        and ``dist``, a float64 tensor of their lengths (``d`` or
        ``d * sqrt(2)``).
    """
    offsets = []
    for d in _check_dilations(dilations):
        for dy in (-d, 0, d):
            for dx in (-d, 0, d):
                if dy or dx:
                    offsets.append((dy, dx))
    dist = torch.tensor([math.hypot(dy, dx) for dy, dx in offsets],
                        dtype=torch.float64)
    return offsets, dist


def _shifted(padded: Tensor, pad: int, dy: int, dx: int, height: int,
             width: int) -> Tensor:
    """``x[..., y + dy, x + dx]`` of the replicate-padded tensor."""
    return padded[..., pad + dy:pad + dy + height, pad + dx:pad + dx + width]


def _check_number(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
            not math.isfinite(value) or value <= 0:
        raise ValueError(f'par: {name} must be a finite number > 0, got '
                         f'{value!r}')
    return float(value)


def par_affinity(image: Tensor,
                 dilations: Sequence[int] = PAR_DILATIONS,
                 w1: float = 0.3,
                 w2: float = 0.01,
                 eps: float = 1e-8) -> Tensor:
    """PAR's affinity of every pixel to each of its neighbours.

    Args:
        image (Tensor): (B, C, H, W) floating-point image (AFA: normalised
            by the per-channel mean / std; any per-channel affine map gives
            the same affinities up to ``eps``).
        dilations (Sequence[int]): Ring dilations. Defaults to
            ``(1, 2, 4, 8, 12, 24)``.
        w1 (float): Temperature of both kernels. Defaults to 0.3.
        w2 (float): Weight of the position kernel. Defaults to 0.01.
        eps (float): Added to each colour standard deviation. Defaults to
            1e-8.

    Returns:
        Tensor: (B, N, H, W) affinities ``a(i, j)``, ``N = 8 *
        len(dilations)`` in the order of :func:`par_offsets`; every
        pixel's N values sum to ``1 + w2``.
    """
    if not isinstance(image, Tensor) or image.dim() != 4 or \
            not image.is_floating_point():
        raise ValueError('par: image must be a (B, C, H, W) floating-point '
                         f'tensor, got {getattr(image, "shape", image)!r} '
                         f'{getattr(image, "dtype", "")}')
    _, _, height, width = image.shape
    if height < 1 or width < 1:
        raise ValueError(f'par: empty image of size {height}x{width}')
    if not bool(torch.isfinite(image).all()):
        raise ValueError('par: image has NaN or inf values')
    w1 = _check_number(w1, 'w1')
    if isinstance(w2, bool) or not isinstance(w2, numbers.Real) or \
            not math.isfinite(w2) or w2 < 0:
        raise ValueError(f'par: w2 must be a finite number >= 0, got {w2!r}')
    eps = _check_number(eps, 'eps')
    offsets, dist = par_offsets(dilations)
    num = len(offsets)
    pad = max(abs(dy) for dy, _ in offsets)
    padded = F.pad(image, (pad, pad, pad, pad), mode='replicate')

    # the neighbours' per-channel standard deviation (unbiased), from sums
    total = torch.zeros_like(image)
    for dy, dx in offsets:
        total += _shifted(padded, pad, dy, dx, height, width)
    mean = total / num
    sq_dev = torch.zeros_like(image)
    for dy, dx in offsets:
        sq_dev += (_shifted(padded, pad, dy, dx, height, width) - mean)**2
    inv_scale = ((sq_dev / (num - 1)).sqrt_() + eps).mul_(w1).reciprocal_()

    # k_rgb, computed as sum_c ((I_c(i) - I_c(j)) / (w1 s_c(i))) ** 2
    # (negated and divided by C below; |.| ** 2 = (.) ** 2)
    k_rgb = image.new_empty((image.shape[0], num, height, width))
    for n, (dy, dx) in enumerate(offsets):
        diff = _shifted(padded, pad, dy, dx, height, width) - image
        k_rgb[:, n] = diff.mul_(inv_scale).square_().sum(1)
    aff = k_rgb.mul_(-1.0 / image.shape[1]).softmax(1)
    k_pos = -(dist / (w1 * dist.std()))**2
    pos = k_pos.softmax(0).to(aff)
    return aff + w2 * pos.view(1, num, 1, 1)


def par_refine(image: Tensor,
               scores: Tensor,
               dilations: Sequence[int] = PAR_DILATIONS,
               iterations: int = 10,
               w1: float = 0.3,
               w2: float = 0.01,
               eps: float = 1e-8) -> Tensor:
    """Refine class scores by PAR (see the module docstring).

    The work runs on the device of ``image`` in the dtype of ``scores``
    (the image is cast to it).

    Args:
        image (Tensor): (B, 3, H, W) floating-point image.
        scores (Tensor): (B, K, h, w) floating-point class scores; resized
            bilinearly (``align_corners=False``) to (H, W) when smaller or
            larger.
        dilations (Sequence[int]): Ring dilations. Defaults to
            ``(1, 2, 4, 8, 12, 24)`` (AFA).
        iterations (int): Propagation steps (>= 0). Defaults to 10 (AFA,
            VOC; 15 for COCO).
        w1 (float): Temperature of both kernels. Defaults to 0.3.
        w2 (float): Weight of the position kernel. Defaults to 0.01.
        eps (float): Added to each colour standard deviation. Defaults to
            1e-8.

    Returns:
        Tensor: (B, K, H, W) refined scores, ``(1 + w2) ** iterations``
        times larger in total than the input (argmax unaffected).
    """
    if not isinstance(scores, Tensor) or scores.dim() != 4 or \
            not scores.is_floating_point():
        raise ValueError('par: scores must be a (B, K, h, w) floating-point '
                         f'tensor, got {getattr(scores, "shape", scores)!r} '
                         f'{getattr(scores, "dtype", "")}')
    if not isinstance(image, Tensor) or image.dim() != 4:
        raise ValueError('par: image must be a (B, C, H, W) tensor, got '
                         f'{getattr(image, "shape", image)!r}')
    if scores.shape[0] != image.shape[0]:
        raise ValueError(f'par: {image.shape[0]} images but '
                         f'{scores.shape[0]} score maps')
    if isinstance(iterations, bool) or not isinstance(
            iterations, numbers.Integral) or iterations < 0:
        raise ValueError('par: iterations must be an integer >= 0, got '
                         f'{iterations!r}')
    if scores.numel() and not bool(torch.isfinite(scores).all()):
        raise ValueError('par: scores have NaN or inf values')
    height, width = image.shape[-2:]
    scores = scores.to(image.device)
    if tuple(scores.shape[-2:]) != (height, width):
        scores = F.interpolate(
            scores, size=(height, width), mode='bilinear',
            align_corners=False)
    aff = par_affinity(image.to(scores.dtype), dilations, w1, w2, eps)
    offsets, _ = par_offsets(dilations)
    pad = max(abs(dy) for dy, _ in offsets)
    for _ in range(int(iterations)):
        padded = F.pad(scores, (pad, pad, pad, pad), mode='replicate')
        out = torch.zeros_like(scores)
        for n, (dy, dx) in enumerate(offsets):
            out.addcmul_(aff[:, n:n + 1],
                         _shifted(padded, pad, dy, dx, height, width))
        scores = out
    return scores
