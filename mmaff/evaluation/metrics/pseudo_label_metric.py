# Copyright (c) mmaff contributors. All rights reserved.
import os.path as osp
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from mmaff.ops.cam import cams_to_label
from mmaff.registry import METRICS
from mmaff.utils.io import load_label_png
from ..functional import (iou_from_areas, label_areas, print_iou_table,
                          sample_id)
from .cam_metric import subset_metrics


def _gt_of(sample: dict, img_id: str) -> np.ndarray:
    gt = sample.get('gt_sem_seg', {}).get('data')
    if gt is not None:
        return np.asarray(gt.squeeze(0).cpu(), dtype=np.int64)
    if sample.get('seg_map_path'):
        return load_label_png(sample['seg_map_path'])
    raise KeyError(f'PseudoLabelMetric: image {img_id} has neither '
                   'gt_sem_seg nor seg_map_path')


@METRICS.register_module()
class PseudoLabelMetric(BaseMetric):
    """Score stage 4's labels of the test images (CAM, RW, RW + dCRF).

    One per-class IoU table with a column per method, accumulated with
    mmseg's IoU arithmetic (:mod:`mmaff.evaluation.functional`):

    * 'CAM' (with ``cam_bg_threshold``): the CAMs that the test pipeline
      loaded (:class:`mmaff.datasets.transforms.LoadCAMs`, metainfo
      ``cams`` and ``cam_labels``) as a label, the argmax of a constant
      background score and the CAMs (:func:`mmaff.ops.cams_to_label`);
    * ``pred_name`` (default 'RW'): the model's ``pred_sem_seg`` (the
      random-walk label of :class:`mmaff.models.AffinityNet`);
    * every key of ``label_dirs``: label files an export hook writes, e.g.
      the RW + dCRF labels of :class:`mmaff.engine.hooks.RandomWalkHook`.
      The hook writes them after the evaluator's ``process`` of the same
      batch, so they are read in ``compute_metrics`` (rank 0, after the
      last iteration's hooks).

    Held-out images (samples with ``holdout=True``: ``holdout_file`` of
    :class:`mmaff.datasets.VOCImageLabelDataset`, where the CAM threshold
    and the walk's settings are chosen) are left out of every column.

    Args:
        cam_bg_threshold (float, optional): Background score of the 'CAM'
            labels (``handovers.cam_bg_threshold``: the CAM sweep's); None
            leaves the column out. Defaults to 0.2 (the paper's).
        pred_name (str, optional): Column of ``pred_sem_seg``; None leaves
            it out. Defaults to 'RW'.
        label_dirs (dict[str, str], optional): Column name -> folder of its
            label PNGs (``<id><label_suffix>``).
        ignore_index (int): Ground-truth id to ignore. Defaults to 255.
        label_suffix (str): Suffix of the label files. Defaults to '.png'.
        collect_device (str): Defaults to 'cpu'.
        prefix (str, optional): Prefix of the metric names.

    Returns (of ``evaluate``): ``<column>/mIoU`` (%) of every column; when
    the dataset left images out (``skip_done``), also ``num_images`` and
    ``subset_of`` (see
    :func:`mmaff.evaluation.metrics.cam_metric.subset_metrics`).
    """

    def __init__(self,
                 cam_bg_threshold: Optional[float] = 0.2,
                 pred_name: Optional[str] = 'RW',
                 label_dirs: Optional[Dict[str, str]] = None,
                 ignore_index: int = 255,
                 label_suffix: str = '.png',
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.cam_bg_threshold = None if cam_bg_threshold is None else float(
            cam_bg_threshold)
        self.pred_name = pred_name
        self.label_dirs = dict(label_dirs or {})
        fixed = (['CAM'] if self.cam_bg_threshold is not None else []) + (
            [pred_name] if pred_name else [])
        if not fixed and not self.label_dirs:
            raise ValueError('PseudoLabelMetric: nothing to score')
        names = fixed + list(self.label_dirs)
        clash = sorted({n for n in names if names.count(n) > 1})
        if clash:
            raise ValueError(f'PseudoLabelMetric: column names {clash} are '
                             'taken; rename pred_name or the label_dirs keys')
        for name, folder in self.label_dirs.items():
            if not isinstance(folder, str) or not folder:
                raise ValueError(f'PseudoLabelMetric: label_dirs[{name!r}] '
                                 f'must be a folder, got {folder!r}')
        self.methods = fixed + list(self.label_dirs)
        self.ignore_index = ignore_index
        self.label_suffix = label_suffix

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Score CAM and the prediction; note the files to read later."""
        num_classes = len(self.dataset_meta['classes'])
        for sample in data_samples:
            img_id = sample_id(sample)
            if sample.get('holdout', False):
                self.results.append(dict(img_id=img_id, holdout=True))
                continue
            gt = _gt_of(sample, img_id)
            where = sample.get('seg_map_path') or img_id
            areas = {}
            if self.cam_bg_threshold is not None:
                if 'cams' not in sample or 'cam_labels' not in sample:
                    raise KeyError(
                        f'PseudoLabelMetric: image {img_id} has no CAMs in '
                        'its metainfo (LoadCAMs in the test pipeline, '
                        "'cams', 'cam_labels' in PackSegInputs' meta_keys)")
                pred = cams_to_label(
                    torch.as_tensor(sample['cams']),
                    [int(c) for c in sample['cam_labels']],
                    self.cam_bg_threshold).numpy()
                areas['CAM'] = label_areas(pred, gt, num_classes,
                                           self.ignore_index,
                                           f'CAM of {img_id} vs {where}')
            if self.pred_name:
                if 'pred_sem_seg' not in sample:
                    raise KeyError(f'PseudoLabelMetric: image {img_id} has '
                                   'no pred_sem_seg')
                pred = sample['pred_sem_seg']['data'][0].cpu().numpy()
                areas[self.pred_name] = label_areas(
                    pred, gt, num_classes, self.ignore_index,
                    f'{self.pred_name} of {img_id} vs {where}')
            self.results.append(
                dict(
                    img_id=img_id,
                    areas=areas,
                    gt_path=sample.get('seg_map_path'),
                    gt=None if (sample.get('seg_map_path')
                                or not self.label_dirs) else gt))

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Sum the areas (reading the label files), log the IoU table."""
        classes = self.dataset_meta['classes']
        num_classes = len(classes)
        num_evaluated = len(results)
        results = [r for r in results if not r.get('holdout')]
        areas = {
            m: np.zeros((4, num_classes), dtype=np.int64)
            for m in self.methods
        }
        for res in results:
            for name, value in res['areas'].items():
                areas[name] += value
            if not self.label_dirs:
                continue
            gt = res['gt'] if res['gt'] is not None else load_label_png(
                res['gt_path'])
            for name, folder in self.label_dirs.items():
                path = osp.join(folder, res['img_id'] + self.label_suffix)
                pred = load_label_png(path, expected_shape=gt.shape)
                areas[name] += label_areas(
                    pred, gt, num_classes, self.ignore_index,
                    f'{path} vs {res["gt_path"] or res["img_id"]}')
        ious = {m: iou_from_areas(a) for m, a in areas.items()}
        if num_evaluated > len(results):
            print_log(
                f'PseudoLabelMetric: {len(results)} images scored; '
                f'{num_evaluated - len(results)} held-out images (where '
                'settings are chosen) are left out',
                logger='current')
        print_iou_table(ious, classes)
        metrics = {}
        for name, iou in ious.items():
            miou = float(np.nanmean(iou)) if np.isfinite(iou).any() \
                else float('nan')
            metrics[f'{name}/mIoU'] = round(miou * 100, 2)
        metrics.update(
            subset_metrics('PseudoLabelMetric', num_evaluated,
                           self.dataset_meta))
        return metrics
