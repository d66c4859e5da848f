# Copyright (c) mmaff contributors. All rights reserved.
import logging
from typing import Dict, List, Optional, Sequence

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from mmaff.registry import METRICS
from ..functional import iou_from_areas, label_areas, print_iou_table


def subset_metrics(metric: str, num_images: int,
                   dataset_meta: Optional[dict]) -> Dict[str, int]:
    """Say so when the scored images are only part of the split.

    A resumed export (``skip_done`` of
    :class:`mmaff.datasets.VOCImageLabelDataset`) runs on the images left
    to do, so the figure is not the whole set's. The dataset records what
    it left out in ``metainfo['skip_done']`` (``split_size``, ``skipped``,
    ``dir``); when fewer than ``split_size`` images were scored, this logs a
    warning "N of M images" and returns the keys to add to the metrics.

    Args:
        metric (str): The metric's name, for the warning.
        num_images (int): Images scored.
        dataset_meta (dict, optional): The metric's ``dataset_meta``.

    Returns:
        dict[str, int]: ``num_images`` (N) and ``subset_of`` (M) for a
        subset, else empty.
    """
    info = (dataset_meta or {}).get('skip_done')
    if not info or num_images >= info['split_size']:
        return {}
    total = info['split_size']
    print_log(
        f'{metric}: these figures cover {num_images} of {total} images of '
        f"the split, not the whole set: skip_done left out {info['skipped']} "
        f"images whose outputs exist in {info['dir']}. Evaluate without "
        'skip_done for the whole-set figures.',
        logger='current',
        level=logging.WARNING)
    return dict(num_images=num_images, subset_of=total)


@METRICS.register_module()
class CAMMetric(BaseMetric):
    """CAMs scored as segmentation, with a background-threshold sweep.

    For each threshold t, a pixel takes the class of its largest normalised
    CAM if that exceeds t, else background (the paper uses t = 0.2, IRN 0.15).
    Class areas (mmseg's IoU arithmetic) are accumulated per threshold
    (constant memory).

    Held-out images (samples with ``holdout=True``, see
    ``holdout_file`` of :class:`mmaff.datasets.VOCImageLabelDataset`) are
    labelled images for choosing: when some were evaluated, the threshold
    is the best of *their* sweep, and every reported figure is that of the
    other images (no figure comes from a threshold chosen on its own
    masks). Without held-out images, the best threshold of the sweep on the
    scored images is reported, and the log says so.

    Args:
        bg_thresholds (Sequence[float], optional): Thresholds to sweep.
            Defaults to 0.05, 0.10, ..., 0.95.
        ignore_index (int): Ground-truth id to ignore. Defaults to 255.
        collect_device (str): Defaults to 'cpu'.
        prefix (str, optional): Prefix of the metric names.

    Returns (of ``evaluate``): ``mIoU`` (%, at the chosen threshold),
    ``bg_threshold`` (the chosen t) and ``mIoU@t`` for every t (of the
    scored images); with held-out images also ``holdout/mIoU`` (their
    best) and ``num_holdout``. The figures are those of the images
    evaluated: when the dataset left finished images out (``skip_done``, a
    resumed CAM export), a warning says "N of M images" and the metrics
    gain ``num_images`` (N) and ``subset_of`` (M), see
    :func:`subset_metrics`.
    """

    def __init__(self,
                 bg_thresholds: Optional[Sequence[float]] = None,
                 ignore_index: int = 255,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if bg_thresholds is None:
            bg_thresholds = np.round(np.arange(0.05, 0.951, 0.05), 2)
        self.bg_thresholds = np.asarray(sorted(bg_thresholds), dtype=float)
        if self.bg_thresholds.size == 0:
            raise ValueError('bg_thresholds must not be empty')
        self.ignore_index = ignore_index

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Accumulate the per-threshold class areas of a batch."""
        num_classes = len(self.dataset_meta['classes'])
        if not self.results:
            self.results.append(
                dict(
                    areas=np.zeros((len(self.bg_thresholds), 4, num_classes),
                                   dtype=np.int64),
                    holdout_areas=np.zeros(
                        (len(self.bg_thresholds), 4, num_classes),
                        dtype=np.int64),
                    num_images=0,
                    num_holdout=0))
        for sample in data_samples:
            held = bool(sample.get('holdout', False))
            total = self.results[0]['holdout_areas' if held else 'areas']
            if 'pred_cams' not in sample:
                raise KeyError('CAMMetric needs predictions with pred_cams '
                               '(a CAMClassifier model)')
            cams = sample['pred_cams']['data'].float().cpu().numpy()
            gt = sample['gt_sem_seg']['data'].squeeze(0).cpu().numpy()
            if cams.shape[0] != num_classes - 1:
                raise ValueError(f'{cams.shape[0]} CAM channels but the '
                                 f'dataset has {num_classes - 1} classes')
            peak = cams.max(0)
            cls = cams.argmax(0) + 1
            name = sample.get('seg_map_path')
            for k, t in enumerate(self.bg_thresholds):
                pred = np.where(peak > t, cls, 0)
                total[k] += label_areas(pred, gt, num_classes,
                                        self.ignore_index, name)
            self.results[0]['num_holdout' if held else 'num_images'] += 1

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Sweep table, chosen threshold and its per-class IoU."""
        areas = np.sum([r['areas'] for r in results], axis=0)
        mious = np.array([np.nanmean(iou_from_areas(a)) for a in areas])
        num_holdout = sum(r['num_holdout'] for r in results)
        lines = ['bg_threshold  mIoU'] + [
            f'{t:12.2f}  {m * 100:5.2f}'
            for t, m in zip(self.bg_thresholds, mious)
        ]
        holdout = {}
        if num_holdout:
            held = np.sum([r['holdout_areas'] for r in results], axis=0)
            held_mious = np.array(
                [np.nanmean(iou_from_areas(a)) for a in held])
            best = int(np.nanargmax(held_mious))
            lines[0] += '  (holdout mIoU)'
            lines[1:] = [
                f'{line}  {m * 100:5.2f}'
                for line, m in zip(lines[1:], held_mious)
            ]
            holdout = {
                'holdout/mIoU': round(float(held_mious[best]) * 100, 2),
                'num_holdout': num_holdout
            }
            choice = (f'chosen on the {num_holdout} held-out images, '
                      'scored on the other images')
        else:
            best = int(np.nanargmax(mious))
            choice = ('the best of the sweep on the scored images (no '
                      'held-out image: chosen on the masks it is scored on)')
        print_log(
            'CAM mIoU per background threshold:\n' + '\n'.join(lines) +
            f'\nthreshold {self.bg_thresholds[best]:.2f}: {choice}',
            logger='current')
        print_iou_table({f'IoU@{self.bg_thresholds[best]:.2f}':
                         iou_from_areas(areas[best])},
                        self.dataset_meta['classes'])
        metrics = {
            'mIoU': round(float(mious[best]) * 100, 2),
            'bg_threshold': float(self.bg_thresholds[best]),
        }
        for t, m in zip(self.bg_thresholds, mious):
            metrics[f'mIoU@{t:.2f}'] = round(float(m) * 100, 2)
        metrics.update(holdout)
        metrics.update(
            subset_metrics('CAMMetric', num_holdout + sum(
                r['num_images'] for r in results), self.dataset_meta))
        return metrics
