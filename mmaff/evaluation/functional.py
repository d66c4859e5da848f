# Copyright (c) mmaff contributors. All rights reserved.
"""Segmentation scoring shared by every mmaff metric and tool."""
from typing import Dict, Optional, Sequence

import numpy as np
from mmengine.logging import print_log
from prettytable import PrettyTable


def confusion_matrix(pred: np.ndarray,
                     gt: np.ndarray,
                     num_classes: int,
                     ignore_index: int = 255,
                     name: Optional[str] = None) -> np.ndarray:
    """Confusion matrix ``conf[gt, pred]`` over the pixels where gt is valid.

    Args:
        pred (np.ndarray): Predicted label ids, same shape as ``gt``.
        gt (np.ndarray): Ground-truth label ids; ``ignore_index`` skipped.
        num_classes (int): Number of classes K, background included.
        ignore_index (int): Defaults to 255.
        name (str, optional): Named in errors (e.g. the mask's path).

    Returns:
        np.ndarray: (K, K) int64.
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
    p, g = pred[valid], gt[valid]
    if ((p < 0) | (p >= num_classes)).any():
        raise ValueError(f'predicted values outside 0..{num_classes - 1}'
                         f'{where}')
    return np.bincount(
        g * num_classes + p,
        minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_from_confusion(conf: np.ndarray) -> np.ndarray:
    """Per-class IoU from a confusion matrix; NaN for classes never seen.

    Args:
        conf (np.ndarray): (K, K) ``conf[gt, pred]``.

    Returns:
        np.ndarray: (K,) IoU in [0, 1].
    """
    conf = conf.astype(np.float64)
    inter = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - inter
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(union > 0, inter / union, np.nan)


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
