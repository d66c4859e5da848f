# Copyright (c) mmaff contributors. All rights reserved.
import os.path as osp
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric

from mmaff.ops.cam import cams_to_label
from mmaff.registry import METRICS
from mmaff.utils.io import load_cam_file, load_label_png
from ..functional import iou_from_areas, label_areas, print_iou_table
from .cam_metric import subset_metrics


@METRICS.register_module()
class PseudoLabelMetric(BaseMetric):
    """Score label files of the test images (CAM, RW, RW + dCRF) in one table.

    ``process`` only records each test image (id, ground-truth mask path or
    mask, image-level labels): the label files it scores are written by
    :class:`mmaff.engine.hooks.RandomWalkHook` *after* the evaluator's
    ``process`` of the same batch. ``compute_metrics`` (rank 0, after the
    last iteration's hooks) reads ``<dir>/<id>.png`` of every method in
    ``label_dirs`` and, with ``cam_dir``, turns ``<cam_dir>/<id>.npz`` into a
    'CAM' label (argmax of a constant background score and the CAMs,
    :func:`mmaff.ops.cams_to_label`), accumulates the class areas of each
    method (mmseg's IoU arithmetic, :mod:`mmaff.evaluation.functional`)
    and logs a per-class IoU table with one column per method.

    Args:
        label_dirs (dict[str, str], optional): Method name -> folder of its
            label PNGs, e.g. ``dict(RW=..., **{'RW+dCRF': ...})``.
        cam_dir (str, optional): Folder of the CAM files, scored as 'CAM'.
        cam_bg_threshold (float): Background score of the 'CAM' labels.
            Defaults to 0.2 (the paper's).
        ignore_index (int): Ground-truth id to ignore. Defaults to 255.
        label_suffix (str): Suffix of the label files. Defaults to '.png'.
        collect_device (str): Defaults to 'cpu'.
        prefix (str, optional): Prefix of the metric names.

    Returns (of ``evaluate``): ``<method>/mIoU`` (%) for 'CAM' (with
    ``cam_dir``) and every key of ``label_dirs``. The figures are those of
    the images evaluated: when the dataset left finished images out
    (``skip_done``), a warning says "N of M images" and the metrics gain
    ``num_images`` (N) and ``subset_of`` (M), see
    :func:`mmaff.evaluation.metrics.cam_metric.subset_metrics`.
    (:class:`mmaff.engine.hooks.RandomWalkHook`'s own skipping of finished
    images keeps them in the evaluation: their files are scored.)
    """

    def __init__(self,
                 label_dirs: Optional[Dict[str, str]] = None,
                 cam_dir: Optional[str] = None,
                 cam_bg_threshold: float = 0.2,
                 ignore_index: int = 255,
                 label_suffix: str = '.png',
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        label_dirs = dict(label_dirs or {})
        if not label_dirs and not cam_dir:
            raise ValueError('PseudoLabelMetric needs label_dirs and/or '
                             'cam_dir: nothing to score')
        if cam_dir and 'CAM' in label_dirs:
            raise ValueError("PseudoLabelMetric: the method name 'CAM' is "
                             'taken by cam_dir; rename the label_dirs key')
        for name, folder in label_dirs.items():
            if not isinstance(folder, str) or not folder:
                raise ValueError(f'PseudoLabelMetric: label_dirs[{name!r}] '
                                 f'must be a folder, got {folder!r}')
        self.label_dirs = label_dirs
        self.cam_dir = cam_dir
        self.cam_bg_threshold = float(cam_bg_threshold)
        self.ignore_index = ignore_index
        self.label_suffix = label_suffix

    @property
    def methods(self) -> List[str]:
        """The scored methods, in table order."""
        return (['CAM'] if self.cam_dir else []) + list(self.label_dirs)

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Record the batch's images (the label files may not exist yet)."""
        for sample in data_samples:
            img_path = sample.get('img_path')
            if img_path is None:
                raise KeyError('PseudoLabelMetric needs img_path in the '
                               'samples (the image id names the files)')
            img_id = osp.splitext(osp.basename(img_path))[0]
            labels = sample.get('img_labels')
            if self.cam_dir and labels is None:
                raise KeyError(f'PseudoLabelMetric: image {img_id} has no '
                               'img_labels in its metainfo (needed to check '
                               'its CAM file)')
            gt_path = sample.get('seg_map_path')
            gt = None
            if not gt_path:
                gt_data = sample.get('gt_sem_seg', {}).get('data')
                if gt_data is None:
                    raise KeyError(f'PseudoLabelMetric: image {img_id} has '
                                   'neither seg_map_path nor gt_sem_seg')
                gt = np.asarray(gt_data.squeeze(0).cpu(), dtype=np.uint8)
            self.results.append(
                dict(
                    img_id=img_id,
                    img_labels=None
                    if labels is None else [int(c) for c in labels],
                    gt_path=gt_path,
                    gt=gt))

    def _cam_label(self, img_id: str, labels: Sequence[int],
                   shape: tuple) -> np.ndarray:
        path = osp.join(self.cam_dir, img_id + '.npz')
        cams, ids = load_cam_file(
            path, expected_shape=shape, image_labels=labels)
        return cams_to_label(
            torch.from_numpy(cams), ids.tolist(),
            self.cam_bg_threshold).numpy()

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Read the label files, accumulate areas, log the IoU table."""
        classes = self.dataset_meta['classes']
        num_classes = len(classes)
        areas = {
            m: np.zeros((4, num_classes), dtype=np.int64)
            for m in self.methods
        }
        for res in results:
            img_id = res['img_id']
            gt = res['gt']
            if gt is None:
                gt = load_label_png(res['gt_path'])
            where = res['gt_path'] or img_id
            if self.cam_dir:
                pred = self._cam_label(img_id, res['img_labels'], gt.shape)
                areas['CAM'] += label_areas(pred, gt, num_classes,
                                            self.ignore_index,
                                            f'CAM of {img_id} vs {where}')
            for name, folder in self.label_dirs.items():
                path = osp.join(folder, img_id + self.label_suffix)
                pred = load_label_png(path, expected_shape=gt.shape)
                areas[name] += label_areas(pred, gt, num_classes,
                                           self.ignore_index,
                                           f'{path} vs {where}')
        ious = {m: iou_from_areas(a) for m, a in areas.items()}
        print_iou_table(ious, classes)
        metrics = {}
        for name, iou in ious.items():
            miou = float(np.nanmean(iou)) if np.isfinite(iou).any() \
                else float('nan')
            metrics[f'{name}/mIoU'] = round(miou * 100, 2)
        metrics.update(
            subset_metrics('PseudoLabelMetric', len(results),
                           self.dataset_meta))
        return metrics
