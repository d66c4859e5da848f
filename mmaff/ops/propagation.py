# Copyright (c) mmaff contributors. All rights reserved.
"""One image's CAMs -> random-walk class scores -> pseudo label.

AffinityNet's stage 4 (see ``docs/method.md``) for a single image, run by
:meth:`mmaff.models.AffinityNet.predict` (test runs and single-image
inference alike):

1. background score ``bg = (1 - max_c CAM_c) ** alpha`` at full resolution
   (:func:`mmaff.ops.background_score`), stacked before the CAMs;
2. zero padding right/bottom to ``(h * stride, w * stride)`` (the padded
   region carries zero for every channel, background included);
3. ``stride x stride`` average pooling to the affinity grid;
4. ``T^t v`` (:func:`mmaff.ops.random_walk`);
5. bilinear upsampling by ``stride`` (``align_corners=False``) to the padded
   size, then cropping to the image.

The argmax and the mapping of channels to label ids is
:func:`scores_to_label`.
"""
import numbers
from typing import Callable, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .cam import background_score, pool_to_grid, scores_to_label
from .random_walk import random_walk

__all__ = ['propagate_cams', 'scores_to_label', 'refine_label', 'crf_label']


def _as_tensor(x: Union[Tensor, np.ndarray], name: str) -> Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, Tensor):
        raise TypeError(f'propagate_cams: {name} must be a tensor or a numpy '
                        f'array, got {type(x).__name__}')
    if not x.is_floating_point():
        raise TypeError(f'propagate_cams: {name} must be floating point, '
                        f'got {x.dtype}')
    return x


def _check_number(value, name: str, positive: bool = True) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
            not np.isfinite(value) or (positive and value <= 0):
        raise ValueError(f'propagate_cams: {name} must be a finite number '
                         f'{"> 0" if positive else ""}, got {value!r}')


def propagate_cams(cams: Union[Tensor, np.ndarray],
                   affinity: Union[Tensor, np.ndarray],
                   alpha: float = 16,
                   beta: float = 8,
                   steps: int = 256,
                   radius: int = 5,
                   stride: int = 8) -> Tensor:
    """Random-walk class scores of one image from its CAMs and affinities.

    The work runs on the device of ``affinity`` (the CAMs are moved there),
    in float64 if either input is float64, else in float32.

    Args:
        cams (Tensor | np.ndarray): (K, H, W) normalised CAMs (values in
            [0, 1]) of the image's present classes at full image
            resolution; K may be 0 (the result is then the background
            channel alone).
        affinity (Tensor | np.ndarray): (P, h, w) pair affinities of the
            image's own grid, ``h = ceil(H / stride)``,
            ``w = ceil(W / stride)`` (e.g. ``pred_affinity`` of
            :class:`mmaff.models.AffinityNet`).
        alpha (float): Power of the background score. Defaults to 16.
        beta (float): Power applied to the affinities. Defaults to 8.
        steps (int): Random-walk steps ``t``. Defaults to 256.
        radius (int): Pair radius of ``affinity``. Defaults to 5.
        stride (int): Feature stride of the grid. Defaults to 8.

    Returns:
        Tensor: (K + 1, H, W) propagated scores, channel 0 the background,
        channel ``k`` the class of ``cams[k - 1]``.
    """
    cams = _as_tensor(cams, 'cams')
    affinity = _as_tensor(affinity, 'affinity')
    if cams.dim() != 3:
        raise ValueError('propagate_cams: cams must be (K, H, W), got shape '
                         f'{tuple(cams.shape)}')
    if affinity.dim() != 3:
        raise ValueError('propagate_cams: affinity must be (P, h, w), got '
                         f'shape {tuple(affinity.shape)}')
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f'propagate_cams: stride must be an int >= 1, got '
                         f'{stride!r}')
    _check_number(alpha, 'alpha')
    num_classes, height, width = cams.shape
    if height < 1 or width < 1:
        raise ValueError(f'propagate_cams: empty image of size {height}x'
                         f'{width}')
    grid_h, grid_w = -(-height // stride), -(-width // stride)
    if tuple(affinity.shape[1:]) != (grid_h, grid_w):
        raise ValueError(
            f'propagate_cams: affinity grid {tuple(affinity.shape[1:])} does '
            f'not match the {height}x{width} image at stride {stride}: '
            f'expected ({grid_h}, {grid_w}) = ceil(size / stride)')
    if num_classes and not bool(torch.isfinite(cams).all()):
        raise ValueError('propagate_cams: cams have NaN or inf values')

    dtype = torch.float64 if torch.float64 in (cams.dtype, affinity.dtype) \
        else torch.float32
    affinity = affinity.to(dtype)
    cams = cams.to(device=affinity.device, dtype=dtype)
    bg = background_score(cams, alpha).to(dtype)
    scores = torch.cat([bg, cams])[None]  # (1, K + 1, H, W)
    pooled = pool_to_grid(scores, stride)
    walked = random_walk(pooled, affinity[None], beta, steps, radius)
    up = F.interpolate(
        walked,
        size=(grid_h * stride, grid_w * stride),
        mode='bilinear',
        align_corners=False)
    return up[0, :, :height, :width]


def refine_label(image: np.ndarray, scores: Tensor,
                 label_ids: Sequence[int], refiner: Callable) -> Tensor:
    """Refine propagated scores into a label (the paper's RW + dCRF step).

    The scores are normalised to sum 1 per pixel, refined by ``refiner`` on
    the image and turned into label ids by their argmax.

    Args:
        image (np.ndarray): (H, W, 3) uint8 RGB.
        scores (Tensor): (K + 1, H, W) non-negative scores, background first.
        label_ids (Sequence[int]): The label id of channels 1..K.
        refiner (Callable): ``refiner(image, probs)`` with ``probs`` a
            (K + 1, H, W) float32 CPU tensor, returning refined (K + 1, H, W)
            scores (array or tensor), e.g. :class:`mmaff.models.DenseCRF`
            or :class:`mmaff.models.PAR`.

    Returns:
        Tensor: (H, W) int64 label ids.
    """
    probs = torch.as_tensor(scores).detach().float().cpu()
    probs = probs / probs.sum(0, keepdim=True).clamp_min(1e-30)
    refined = torch.as_tensor(refiner(image, probs)).detach().cpu()
    if tuple(refined.shape) != tuple(probs.shape):
        raise ValueError(f'refine_label: the refiner returned shape '
                         f'{tuple(refined.shape)} for scores of shape '
                         f'{tuple(probs.shape)}')
    return scores_to_label(refined, label_ids)


def crf_label(image: np.ndarray, scores: Tensor, label_ids: Sequence[int],
              **crf) -> Tensor:
    """:func:`refine_label` with the dense CRF (:func:`mmaff.ops.dense_crf`).

    Args:
        image (np.ndarray): (H, W, 3) uint8 RGB.
        scores (Tensor): (K + 1, H, W) non-negative scores, background first.
        label_ids (Sequence[int]): The label id of channels 1..K.
        **crf: Keyword arguments of :func:`mmaff.ops.dense_crf`.

    Returns:
        Tensor: (H, W) int64 label ids.
    """
    from . import crf as crf_module  # looked up at call time (tests patch)

    def refiner(img, probs):
        return torch.from_numpy(crf_module.dense_crf(img, probs, **crf))

    return refine_label(image, scores, label_ids, refiner)
