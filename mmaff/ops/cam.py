# Copyright (c) mmaff contributors. All rights reserved.
"""Class activation maps: multi-scale aggregation, normalisation, background.

The one home of the CAM formulas of AffinityNet's stage 1 (see README,
"Method"): per-pass CAMs are resized bilinearly to the image size, flips are
undone, all passes are summed, absent classes are zeroed and each class map
is divided by its own spatial maximum (+ ``eps``).
"""
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def aggregate_cams(cams: Sequence[Tensor], flips: Sequence[bool],
                   size: Tuple[int, int]) -> Tensor:
    """Sum the CAMs of several forward passes at one output size.

    Args:
        cams (Sequence[Tensor]): One CAM per pass, each (C, h, w) or
            (B, C, h, w), already rectified (ReLU).
        flips (Sequence[bool]): Whether each pass saw the horizontally
            flipped image (its CAM is flipped back).
        size (tuple[int, int]): Output (H, W), usually the original image's.

    Returns:
        Tensor: The sum, (C, H, W) or (B, C, H, W) like the inputs.
    """
    if len(cams) == 0:
        raise ValueError('aggregate_cams needs at least one CAM')
    if len(cams) != len(flips):
        raise ValueError(f'got {len(cams)} CAMs but {len(flips)} flip flags')
    batched = cams[0].dim() == 4
    total = None
    for cam, flip in zip(cams, flips):
        if cam.dim() != (4 if batched else 3):
            raise ValueError('all CAMs must have the same number of dims, '
                             f'got shapes {[tuple(c.shape) for c in cams]}')
        x = cam if batched else cam[None]
        x = F.interpolate(
            x.float(), size=tuple(size), mode='bilinear', align_corners=False)
        if flip:
            x = x.flip(-1)
        total = x if total is None else total + x
    return total if batched else total[0]


def normalize_cams(cams: Tensor,
                   present: Optional[Tensor] = None,
                   eps: float = 1e-5) -> Tensor:
    """Zero absent classes and divide each class map by its spatial maximum.

    Args:
        cams (Tensor): (C, H, W) or (B, C, H, W), non-negative.
        present (Tensor, optional): Bool/0-1 mask of present classes, (C,) or
            (B, C). None keeps every class. Defaults to None.
        eps (float): Added to each maximum. Defaults to 1e-5.

    Returns:
        Tensor: Same shape as ``cams``, values in [0, 1).
    """
    if cams.dim() not in (3, 4):
        raise ValueError(f'cams must be (C,H,W) or (B,C,H,W), got '
                         f'{tuple(cams.shape)}')
    x = cams.float()
    if present is not None:
        mask = present.to(device=x.device, dtype=x.dtype)
        if mask.shape != x.shape[:-2]:
            raise ValueError(f'present mask {tuple(mask.shape)} does not '
                             f'match the CAM classes {tuple(x.shape[:-2])}')
        x = x * mask[..., None, None]
    peak = x.flatten(-2).amax(-1)[..., None, None]
    return x / (peak + eps)


def background_score(cams: Tensor, alpha: float) -> Tensor:
    """Background score ``(1 - max_c CAM_c) ** alpha``.

    Args:
        cams (Tensor): Normalised CAMs (K, H, W) or (B, K, H, W) with values
            in [0, 1]; K may be 0 (then the score is 1 everywhere).
        alpha (float): The power; a small alpha amplifies the background.

    Returns:
        Tensor: (1, H, W) or (B, 1, H, W).
    """
    if cams.dim() not in (3, 4):
        raise ValueError(f'cams must be (K,H,W) or (B,K,H,W), got '
                         f'{tuple(cams.shape)}')
    cdim = cams.dim() - 3
    if cams.shape[cdim] == 0:
        shape = list(cams.shape)
        shape[cdim] = 1
        return cams.new_ones(shape, dtype=torch.float32)
    peak = cams.float().amax(dim=cdim, keepdim=True).clamp(0, 1)
    return (1 - peak).pow(alpha)


def pool_to_grid(scores, stride: int):
    """Average-pool a score stack to the feature grid, the reference's way.

    The stack is zero-padded right/bottom to a multiple of ``stride`` (the
    padding carries zero score) and average-pooled by ``stride x stride``
    blocks, the padding counting in the average: a grid of
    ``ceil(H / stride) x ceil(W / stride)`` cells. (In a border cell every
    channel is scaled by the same factor, so its argmax is the mean's over
    the in-image pixels.)

    Args:
        scores (Tensor | np.ndarray): (K, H, W) or (B, K, H, W) scores.
        stride (int): Block size (>= 1).

    Returns:
        Tensor | np.ndarray: The pooled stack, (..., ceil(H / stride),
        ceil(W / stride)), of the input's kind (numpy: float32).
    """
    if int(stride) != stride or stride < 1:
        raise ValueError(f'stride must be a positive integer, got {stride}')
    stride = int(stride)
    is_numpy = isinstance(scores, np.ndarray)
    x = torch.from_numpy(np.asarray(scores, np.float32)) if is_numpy \
        else scores
    height, width = x.shape[-2:]
    pad_h, pad_w = -height % stride, -width % stride
    batched = x if x.dim() == 4 else x[None]
    pooled = F.avg_pool2d(F.pad(batched, (0, pad_w, 0, pad_h)), stride)
    pooled = pooled if x.dim() == 4 else pooled[0]
    return pooled.numpy() if is_numpy else pooled


def cams_to_label(cams: Tensor, label_ids: Sequence[int],
                  bg_threshold: float) -> Tensor:
    """Segment with a constant background score: argmax of [thr, CAMs].

    Args:
        cams (Tensor): Normalised CAMs (K, H, W) of the classes
            ``label_ids``.
        label_ids (Sequence[int]): The label id of each CAM channel.
        bg_threshold (float): Constant background score (0.2 in the paper).

    Returns:
        Tensor: (H, W) int64 map of label ids, 0 for background. Ties go to
        background.
    """
    if cams.dim() != 3 or cams.shape[0] != len(label_ids):
        raise ValueError(f'cams {tuple(cams.shape)} do not match '
                         f'{len(label_ids)} label ids')
    bg = cams.new_full((1, ) + tuple(cams.shape[1:]), float(bg_threshold))
    return scores_to_label(torch.cat([bg, cams.to(bg.dtype)]), label_ids)


def scores_to_label(scores: Tensor, label_ids: Sequence[int]) -> Tensor:
    """Argmax over the channels, mapped to label ids.

    Args:
        scores (Tensor): (K + 1, H, W) scores, channel 0 the background
            (e.g. from :func:`mmaff.ops.propagate_cams`).
        label_ids (Sequence[int]): The label id of channels 1..K.

    Returns:
        Tensor: (H, W) int64 label ids: channel 0 -> 0, channel k ->
        ``label_ids[k - 1]``. Ties go to the lower channel (background
        first).
    """
    if isinstance(scores, np.ndarray):
        scores = torch.from_numpy(scores)
    label_ids = [int(i) for i in label_ids]
    if not isinstance(scores, Tensor) or scores.dim() != 3 or \
            scores.shape[0] != len(label_ids) + 1:
        shape = tuple(scores.shape) if hasattr(scores, 'shape') else \
            type(scores).__name__
        raise ValueError(f'scores_to_label: scores {shape} must be (K + 1, '
                         f'H, W) with K = {len(label_ids)} label ids')
    lut = torch.tensor([0] + label_ids, dtype=torch.long, device=scores.device)
    return lut[scores.argmax(0)]
