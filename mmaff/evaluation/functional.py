# Copyright (c) mmaff contributors. All rights reserved.
"""Segmentation scoring shared by every mmaff metric and tool.

The arithmetic is mmseg's (``IoUMetric.intersect_and_union`` and
``total_area_to_metrics``); this module adds the input checks and the
per-class table that mmaff's metrics print.
"""
import os.path as osp
from typing import Dict, Optional, Sequence

import numpy as np
import torch
from mmengine.logging import print_log
from mmseg.evaluation.metrics import IoUMetric
from prettytable import PrettyTable


def label_areas(pred: np.ndarray,
                gt: np.ndarray,
                num_classes: int,
                ignore_index: int = 255,
                name: Optional[str] = None) -> np.ndarray:
    """Per-class areas of one label map, by mmseg's ``intersect_and_union``.

    The inputs are checked first (mmseg's histogram would silently drop
    out-of-range values): same shape, ground truth in ``0..K-1`` or
    ``ignore_index``, predictions in ``0..K-1`` where the ground truth is
    valid.

    Args:
        pred (np.ndarray): Predicted label ids, same shape as ``gt``.
        gt (np.ndarray): Ground-truth label ids; ``ignore_index`` skipped.
        num_classes (int): Number of classes K, background included.
        ignore_index (int): Defaults to 255.
        name (str, optional): Named in errors (e.g. the mask's path).

    Returns:
        np.ndarray: (4, K) int64: the intersection, union, predicted and
        ground-truth areas of each class (sum them over images, then
        :func:`iou_from_areas`).
    """
    pred = np.asarray(pred).astype(np.int64)
    gt = np.asarray(gt).astype(np.int64)
    where = f' ({name})' if name else ''
    if pred.shape != gt.shape:
        raise ValueError(f'prediction shape {pred.shape} does not match the '
                         f'ground truth {gt.shape}{where}')
    valid = gt != ignore_index
    bad = valid & ((gt < 0) | (gt >= num_classes))
    if bad.any():
        raise ValueError(f'ground-truth values {np.unique(gt[bad]).tolist()} '
                         f'outside 0..{num_classes - 1}{where}')
    p = pred[valid]
    if ((p < 0) | (p >= num_classes)).any():
        raise ValueError(f'predicted values outside 0..{num_classes - 1}'
                         f'{where}')
    areas = IoUMetric.intersect_and_union(
        torch.from_numpy(pred), torch.from_numpy(gt), num_classes,
        ignore_index)
    return torch.stack(areas).round().to(torch.int64).numpy()


def iou_from_areas(areas: np.ndarray) -> np.ndarray:
    """Per-class IoU from summed areas, by mmseg's ``total_area_to_metrics``.

    Args:
        areas (np.ndarray): (4, K) summed :func:`label_areas`.

    Returns:
        np.ndarray: (K,) IoU in [0, 1]; NaN for a class neither in the
        ground truth nor predicted.
    """
    areas = torch.as_tensor(np.asarray(areas, dtype=np.float64))
    metrics = IoUMetric.total_area_to_metrics(*areas, metrics=['mIoU'])
    return np.asarray(metrics['IoU'], dtype=np.float64)


def print_iou_table(columns: Dict[str, np.ndarray],
                    class_names: Sequence[str],
                    logger='current') -> str:
    """Log a per-class table (values in [0, 1], printed as %) like mmseg.

    Args:
        columns (dict[str, np.ndarray]): Column name -> (K,) values.
        class_names (Sequence[str]): Row names.
        logger: mmengine logger or name. Defaults to 'current'.

    Returns:
        str: The table.
    """
    table = PrettyTable()
    table.add_column('Class', list(class_names))
    for key, val in columns.items():
        table.add_column(key, [round(float(v) * 100, 2) for v in val])
    means = ['mean'] + [
        round(float(np.nanmean(v)) * 100, 2) for v in columns.values()
    ]
    table.add_row(means, divider=False)
    text = table.get_string()
    print_log('per class results:\n' + text, logger=logger)
    return text


def sample_id(sample: dict) -> str:
    """An evaluated sample's image id: its image file's name stem."""
    return osp.splitext(osp.basename(sample['img_path']))[0]
