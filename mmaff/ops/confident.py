# Copyright (c) mmaff contributors. All rights reserved.
"""Confident regions (AffinityNet stage 2): the labels AffinityNet learns.

From the normalised CAMs of an image's present classes two background
scores are formed, ``(1 - max_c CAM_c) ** alpha`` with a small
``alpha_low`` (4: a large background score, foreground survives only where
the CAM is confident) and a large ``alpha_high`` (24: a small background
score, background survives only where it is confident). Each
``[bg, CAMs]`` stack is refined by the dense CRF (or another label
refiner: any callable ``(image, scores) -> refined scores``, such as
:class:`mmaff.models.DenseCRF` or :class:`mmaff.models.PAR`), both refined
stacks are average-pooled to the feature stride (8) and fused:

* start from the low-alpha argmax (channel -> label id);
* where the low-alpha argmax is background, write ``ignore_index`` (255,
  unsure);
* where the high-alpha argmax is background, write 0 (confident
  background).

A pixel is thus confident foreground of class c when even the amplified
background loses to c and the weak background does not win either.
"""
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from .cam import background_score, pool_to_grid, scores_to_label
from .crf import dense_crf

ArrayLike = Union[np.ndarray, torch.Tensor]

#: Keys of the per-image count dict of :func:`confident_region_stats`.
STAT_KEYS = ('pixels', 'conf_fg', 'conf_fg_correct', 'conf_bg',
             'conf_bg_correct', 'unsure', 'gt_fg', 'gt_bg')


def _to_numpy(x: ArrayLike, name: str) -> np.ndarray:
    """Return a float32 numpy copy/view of a numpy array or tensor."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if not x.is_floating_point():
            raise TypeError(f'{name} must be floating point, got dtype '
                            f'{x.dtype}')
        return x.float().numpy()
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f'{name} must be floating point, got dtype '
                        f'{x.dtype}')
    return x.astype(np.float32, copy=False)


def _check_label_ids(label_ids: Sequence[int], ignore_index: int) -> List:
    """Validate the label id of each foreground channel."""
    ids = [int(i) for i in label_ids]
    if len(set(ids)) != len(ids):
        raise ValueError(f'label_ids must be distinct, got {ids}')
    bad = [i for i in ids if not 0 < i < 256 or i == ignore_index]
    if bad:
        raise ValueError(f'label_ids {bad} are not valid foreground ids '
                         f'(1..255, not the ignore index {ignore_index})')
    return ids


def _check_stride(stride: int) -> int:
    if int(stride) != stride or stride < 1:
        raise ValueError(f'stride must be a positive integer, got {stride}')
    return int(stride)


def fuse_confident_regions(low_scores: ArrayLike,
                           high_scores: ArrayLike,
                           label_ids: Sequence[int],
                           stride: int = 8,
                           ignore_index: int = 255) -> np.ndarray:
    """Fuse the low- and high-alpha CRF score stacks at the feature stride.

    Both stacks are average-pooled to the grid with :func:`pool_to_grid`
    (zero-padded right/bottom to a multiple of the stride; padding is left
    out of each cell's mean, so a partly padded cell is decided by its
    image pixels alone; no cell lies entirely in the padding, the case the
    reference marks 255). Then, per cell: the low-alpha argmax mapped to
    its label id; ``ignore_index`` where that argmax is background; 0 where
    the high-alpha argmax is background. Ties go to the lower channel
    (background first).

    Args:
        low_scores (np.ndarray | torch.Tensor): (K+1, H, W) CRF
            probabilities with the amplified (low-alpha) background,
            channel 0 background, channel k the class ``label_ids[k-1]``.
        high_scores (np.ndarray | torch.Tensor): (K+1, H, W) likewise with
            the weak (high-alpha) background.
        label_ids (Sequence[int]): The K foreground label ids.
        stride (int): Pooling stride (the feature stride). Defaults to 8.
        ignore_index (int): Value of unsure cells. Defaults to 255.

    Returns:
        np.ndarray: (ceil(H / stride), ceil(W / stride)) uint8 map of 0
        (confident background), label ids (confident foreground) and
        ``ignore_index`` (unsure).
    """
    low = _to_numpy(low_scores, 'low_scores')
    high = _to_numpy(high_scores, 'high_scores')
    if not 0 < int(ignore_index) < 256:
        raise ValueError(f'ignore_index must lie in 1..255, got '
                         f'{ignore_index}')
    ids = _check_label_ids(label_ids, ignore_index)
    if low.ndim != 3:
        raise ValueError('low_scores must be (K+1, H, W), got shape '
                         f'{low.shape}')
    if high.shape != low.shape:
        raise ValueError(f'high_scores {high.shape} and low_scores '
                         f'{low.shape} differ in shape')
    if low.shape[0] != len(ids) + 1:
        raise ValueError(f'score stacks have {low.shape[0]} channels but '
                         f'{len(ids)} label ids need {len(ids) + 1} '
                         '(background first)')
    if low.shape[1] == 0 or low.shape[2] == 0:
        raise ValueError(f'empty score stacks of shape {low.shape}')
    if not (np.isfinite(low).all() and np.isfinite(high).all()):
        raise ValueError('score stacks contain non-finite values')

    low_label = scores_to_label(pool_to_grid(low, stride), ids).numpy()
    high_label = scores_to_label(pool_to_grid(high, stride), ids).numpy()
    fused = low_label.astype(np.uint8)
    fused[low_label == 0] = ignore_index
    fused[high_label == 0] = 0
    return fused


def confident_region_map(image: np.ndarray,
                         cams: ArrayLike,
                         label_ids: Sequence[int],
                         alpha_low: float = 4,
                         alpha_high: float = 24,
                         stride: int = 8,
                         crf: Optional[dict] = None,
                         refiner: Optional[Callable] = None) -> np.ndarray:
    """Confident-region map of one image from its normalised CAMs.

    ``bg = (1 - max_c CAM_c) ** alpha`` for both alphas
    (:func:`mmaff.ops.cam.background_score`), ``[bg, CAMs]`` refined by
    ``refiner`` (default: :func:`mmaff.ops.crf.dense_crf`), fused on the
    stride grid by :func:`fuse_confident_regions` and brought back to the
    image size by nearest upsampling (each grid cell fills its stride x
    stride block) and cropping.

    Args:
        image (np.ndarray): (H, W, 3) uint8 RGB image.
        cams (np.ndarray | torch.Tensor): (K, H, W) normalised CAMs of the
            image's present classes, values in [0, 1]. K may be 0.
        label_ids (Sequence[int]): Label id of each CAM channel (K,).
        alpha_low (float): Power of the amplified background. Defaults
            to 4.
        alpha_high (float): Power of the weak background. Defaults to 24
            (the CVPR paper; the authors' released models use 32).
        stride (int): Feature stride of the fusion grid. Defaults to 8.
        crf (dict, optional): Keyword arguments for
            :func:`mmaff.ops.crf.dense_crf` (None: its reference defaults).
            Only without ``refiner``.
        refiner (Callable, optional): ``refiner(image, scores)`` with
            ``scores`` the (K+1, H, W) float32 ``[bg, CAMs]`` stack, returning
            (K+1, H, W) refined scores (e.g. a :class:`mmaff.models.PAR`).
            None: the dense CRF with ``crf``.

    Returns:
        np.ndarray: (H, W) uint8: 0 confident background, a label id
        confident foreground, 255 unsure. With K = 0 all background.
    """
    if not isinstance(image, np.ndarray) or image.ndim != 3 \
            or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError('image must be a (H, W, 3) uint8 RGB array, got '
                         f'{getattr(image, "shape", type(image))} '
                         f'{getattr(image, "dtype", "")}')
    cams = _to_numpy(cams, 'cams')
    ids = _check_label_ids(label_ids, 255)
    if cams.ndim != 3 or cams.shape[0] != len(ids):
        raise ValueError(f'cams {cams.shape} do not match {len(ids)} label '
                         'ids (expected (K, H, W))')
    if cams.shape[1:] != image.shape[:2]:
        raise ValueError(f'CAM size {cams.shape[1:]} does not match the '
                         f'image size {image.shape[:2]}')
    if not np.isfinite(cams).all():
        raise ValueError('cams contain non-finite values')
    if cams.size and (cams.min() < -1e-3 or cams.max() > 1 + 1e-3):
        raise ValueError('cams must be normalised to [0, 1], got values in '
                         f'[{cams.min():.4g}, {cams.max():.4g}]')
    for name, alpha in (('alpha_low', alpha_low), ('alpha_high', alpha_high)):
        if not alpha > 0:
            raise ValueError(f'{name} must be positive, got {alpha}')
    stride = _check_stride(stride)
    if refiner is not None and crf:
        raise ValueError('confident_region_map: give either crf (dense CRF '
                         'options) or a refiner, not both')
    if refiner is not None and not callable(refiner):
        raise TypeError('confident_region_map: refiner must be callable '
                        f'(image, scores), got {type(refiner).__name__}')
    height, width = image.shape[:2]
    if len(ids) == 0:
        return np.zeros((height, width), dtype=np.uint8)

    if refiner is None:
        crf_cfg = dict(crf or {})

        def refiner(img, stack):
            return dense_crf(img, stack, **crf_cfg)

    cams_t = torch.from_numpy(np.ascontiguousarray(cams))
    refined = []
    for alpha in (alpha_low, alpha_high):
        bg = background_score(cams_t, alpha)
        stack = torch.cat([bg, cams_t.clamp(0, 1)]).numpy()
        out = refiner(image, stack)
        if tuple(out.shape) != stack.shape:
            raise ValueError(f'confident_region_map: the refiner returned '
                             f'shape {tuple(out.shape)} for scores of shape '
                             f'{stack.shape}')
        refined.append(out)
    grid = fuse_confident_regions(refined[0], refined[1], ids, stride=stride)
    full = np.repeat(np.repeat(grid, stride, axis=0), stride, axis=1)
    return np.ascontiguousarray(full[:height, :width])


def confident_region_stats(conf: np.ndarray,
                           gt: np.ndarray,
                           ignore_index: int = 255) -> Dict[str, int]:
    """Pixel counts of one confident-region map against its ground truth.

    Only pixels where ``gt != ignore_index`` are counted. The counts are
    plain ints, to be summed over a dataset by
    :func:`summarize_confident_stats`.

    Args:
        conf (np.ndarray): (H, W) confident-region map (0 / ids /
            ``ignore_index``).
        gt (np.ndarray): (H, W) ground-truth label ids.
        ignore_index (int): Unsure value in ``conf`` and ignore value in
            ``gt``. Defaults to 255.

    Returns:
        dict[str, int]: ``pixels`` (counted pixels), ``conf_fg``
        (confident foreground), ``conf_fg_correct`` (of those, equal to
        gt), ``conf_bg`` (confident background), ``conf_bg_correct`` (of
        those, gt background), ``unsure``, ``gt_fg`` and ``gt_bg``
        (ground-truth foreground / background pixels).
    """
    conf = np.asarray(conf)
    gt = np.asarray(gt)
    if conf.ndim != 2 or conf.shape != gt.shape:
        raise ValueError(f'confident map {conf.shape} and ground truth '
                         f'{gt.shape} must be 2-D of the same shape')
    valid = gt != ignore_index
    c = conf[valid]
    g = gt[valid]
    fg = (c != 0) & (c != ignore_index)
    bg = c == 0
    return dict(
        pixels=int(valid.sum()),
        conf_fg=int(fg.sum()),
        conf_fg_correct=int((fg & (c == g)).sum()),
        conf_bg=int(bg.sum()),
        conf_bg_correct=int((bg & (g == 0)).sum()),
        unsure=int((c == ignore_index).sum()),
        gt_fg=int((g != 0).sum()),
        gt_bg=int((g == 0).sum()))


def _ratio(num: int, den: int) -> float:
    return float(num) / den if den else float('nan')


def summarize_confident_stats(
        stats: Sequence[Dict[str, int]]) -> Dict[str, float]:
    """Sum per-image counts and derive dataset-level quality measures.

    Args:
        stats (Sequence[dict]): Outputs of :func:`confident_region_stats`.

    Returns:
        dict: ``fg_precision`` (confident fg pixels with the right class /
        confident fg), ``bg_precision`` (confident bg that is gt bg /
        confident bg), ``fg_recall`` (correct confident fg / gt fg),
        ``bg_recall`` (correct confident bg / gt bg), ``fg_fraction``,
        ``bg_fraction``, ``unsure_fraction`` (of counted pixels),
        ``num_images`` and the summed counts. A ratio with a zero
        denominator is NaN.
    """
    totals = {key: 0 for key in STAT_KEYS}
    for i, item in enumerate(stats):
        missing = [key for key in STAT_KEYS if key not in item]
        if missing:
            raise KeyError(f'stats entry {i} lacks the counts {missing}')
        for key in STAT_KEYS:
            totals[key] += int(item[key])
    summary = dict(
        fg_precision=_ratio(totals['conf_fg_correct'], totals['conf_fg']),
        bg_precision=_ratio(totals['conf_bg_correct'], totals['conf_bg']),
        fg_recall=_ratio(totals['conf_fg_correct'], totals['gt_fg']),
        bg_recall=_ratio(totals['conf_bg_correct'], totals['gt_bg']),
        fg_fraction=_ratio(totals['conf_fg'], totals['pixels']),
        bg_fraction=_ratio(totals['conf_bg'], totals['pixels']),
        unsure_fraction=_ratio(totals['unsure'], totals['pixels']),
        num_images=len(stats))
    summary.update(totals)
    return summary
