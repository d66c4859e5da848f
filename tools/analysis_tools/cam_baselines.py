# Copyright (c) mmaff contributors. All rights reserved.
"""Trivial baselines that any CAM must beat, scored like CAMs (mIoU).

* ``all_background``: every pixel background.
* ``centre_blob``: a centred ellipse with half-axes ``--blob`` x the image
  sides, split into equal vertical strips, one per image-level class (in
  label order); background elsewhere. It knows the image-level labels, as
  the CAMs do.

Usage:
    python tools/analysis_tools/cam_baselines.py CONFIG [--split test]
        [--blob 0.3] [--out baselines.json]

The images, labels and masks are those of the config's test dataloader,
less its held-out images (``holdout_file``), like the CAM metrics.
"""
import argparse
import json

import numpy as np
from mmengine.config import Config

import mmaff  # noqa: F401
from mmaff.evaluation import iou_from_areas, label_areas
from mmaff.registry import DATASETS
from mmaff.utils import register_all_modules
from mmaff.utils.io import load_label_png


def centre_blob(shape, labels, blob: float = 0.3) -> np.ndarray:
    """The centre-blob prediction of one image.

    Args:
        shape (tuple): (H, W).
        labels (Sequence[int]): Image-level label ids.
        blob (float): Half-axes as a fraction of the sides.

    Returns:
        np.ndarray: (H, W) label ids.
    """
    h, w = shape
    pred = np.zeros((h, w), np.int64)
    if not labels:
        return pred
    yy, xx = np.mgrid[:h, :w]
    cy, cx = (h - 1) / 2, (w - 1) / 2
    inside = ((yy - cy) / (blob * h))**2 + ((xx - cx) / (blob * w))**2 <= 1
    x0, x1 = cx - blob * w, cx + blob * w
    strip = np.clip(((xx - x0) / (x1 - x0) * len(labels)).astype(int), 0,
                    len(labels) - 1)
    pred[inside] = np.asarray(labels)[strip[inside]]
    return pred


def evaluate_baselines(dataset, blob: float = 0.3) -> dict:
    """mIoU (%) of the baselines over a dataset with masks.

    Args:
        dataset: A :class:`VOCImageLabelDataset` with ``seg_map_path``.
        blob (float): See :func:`centre_blob`.

    Returns:
        dict: ``{'all_background': mIoU, 'centre_blob': mIoU}`` over the
        images not held out (``holdout`` in the data info).
    """
    num = len(dataset.metainfo['classes'])
    areas = {
        'all_background': np.zeros((4, num), np.int64),
        'centre_blob': np.zeros((4, num), np.int64)
    }
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        if info.get('holdout'):
            continue  # held out for choosing settings: not scored
        gt = load_label_png(info['seg_map_path'], num_classes=num)
        labels = list(info['img_labels'])
        areas['all_background'] += label_areas(
            np.zeros_like(gt), gt, num, name=info['seg_map_path'])
        areas['centre_blob'] += label_areas(
            centre_blob(gt.shape, labels, blob), gt, num,
            name=info['seg_map_path'])
    return {
        k: round(float(np.nanmean(iou_from_areas(a))) * 100, 2)
        for k, a in areas.items()
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='a CAM config')
    parser.add_argument('--blob', type=float, default=0.3)
    parser.add_argument('--out', help='write the figures as JSON')
    args = parser.parse_args()
    register_all_modules()
    cfg = Config.fromfile(args.config)
    ds_cfg = cfg.test_dataloader.dataset.copy()
    ds_cfg['pipeline'] = []
    dataset = DATASETS.build(ds_cfg)
    result = evaluate_baselines(dataset, args.blob)
    print(json.dumps(result, indent=2))
    if args.out:
        from mmaff.utils.tool_utils import dump_metrics
        dump_metrics(result, args.out)


if __name__ == '__main__':
    main()
