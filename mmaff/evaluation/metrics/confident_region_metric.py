# Copyright (c) mmaff contributors. All rights reserved.
import math
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from mmaff.ops.confident import (confident_region_stats,
                                 summarize_confident_stats)
from mmaff.registry import METRICS
from mmaff.utils.io import load_label_png
from ..functional import sample_id


def score_confident_maps(pairs: Sequence[Tuple[str, str]],
                         num_classes: int) -> Dict[str, Optional[float]]:
    """Precision, recall and unsure fraction of confident-region map files.

    Args:
        pairs (Sequence[tuple[str, str]]): (map PNG, ground-truth PNG).
        num_classes (int): Classes of the ground truth, background included:
            its ids must lie in ``0..num_classes - 1`` or be 255 (an error
            names the file).

    Returns:
        dict: ``fg_precision``, ``bg_precision``, ``fg_recall``,
        ``bg_recall``, ``unsure_fraction`` (rounded to 4 digits; None where
        a denominator is 0) and ``num_images``.
    """
    stats = []
    for conf_path, gt_path in pairs:
        if not osp.isfile(conf_path):
            raise FileNotFoundError(
                f'confident-region map not found: {conf_path} (a '
                'ConfidentRegionHook in the same test run writes the maps)')
        conf = load_label_png(conf_path)
        gt = load_label_png(
            gt_path, expected_shape=conf.shape, num_classes=num_classes)
        stats.append(confident_region_stats(conf, gt))
    summary = summarize_confident_stats(stats)
    keys = ('fg_precision', 'bg_precision', 'fg_recall', 'bg_recall',
            'unsure_fraction')
    scores = {
        k: None if math.isnan(summary[k]) else round(summary[k], 4)
        for k in keys
    }
    scores['num_images'] = summary['num_images']
    return scores


@METRICS.register_module()
class ConfidentRegionMetric(BaseMetric):
    """Score the confident-region maps of the test images (stage 2).

    The maps are written by :class:`mmaff.engine.hooks.ConfidentRegionHook`
    after the evaluator's ``process`` of the same batch, so ``process``
    records each image (id, ground-truth mask) and ``compute_metrics``
    (after the last iteration's hooks) reads ``<conf_dir>/<id>.png`` and
    counts, over the pixels the ground truth does not ignore, the confident
    foreground / background that is right and the unsure pixels
    (:func:`mmaff.ops.confident_region_stats`). A ground-truth id outside
    the dataset's classes is an error naming the file. Held-out images
    (samples with ``holdout=True``, see :class:`CAMMetric`) are left out.

    Args:
        conf_dir (str): Folder of the maps (``handovers.conf``).
        collect_device (str): Defaults to 'cpu'.
        prefix (str, optional): Prefix of the metric names.

    Returns (of ``evaluate``): ``fg_precision``, ``bg_precision``,
    ``fg_recall``, ``bg_recall``, ``unsure_fraction`` (fractions in [0, 1];
    None where a denominator is 0).
    """

    def __init__(self,
                 conf_dir: str,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if not conf_dir or not isinstance(conf_dir, str):
            raise ValueError('ConfidentRegionMetric needs a conf_dir, got '
                             f'{conf_dir!r}')
        self.conf_dir = conf_dir

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Record the batch's images (the maps may not exist yet)."""
        for sample in data_samples:
            img_id = sample_id(sample)
            if sample.get('holdout', False):
                continue  # held out for choosing settings: not scored
            if not sample.get('seg_map_path'):
                raise KeyError(f'ConfidentRegionMetric: image {img_id} has '
                               'no seg_map_path (a mask to score against)')
            self.results.append(
                dict(img_id=img_id, gt_path=sample['seg_map_path']))

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Read the maps and masks; precision, recall, unsure fraction."""
        metrics = score_confident_maps(
            [(osp.join(self.conf_dir, res['img_id'] + '.png'), res['gt_path'])
             for res in results], len(self.dataset_meta['classes']))
        metrics.pop('num_images')
        print_log(
            'confident regions: ' + ', '.join(f'{k} {v}'
                                              for k, v in metrics.items()),
            logger='current')
        return metrics
