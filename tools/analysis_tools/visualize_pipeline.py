# Copyright (c) mmaff contributors. All rights reserved.
"""A picture of the whole pipeline on a few val images.

One row per image of the segmentation config's test split (the val split):
image | CAM (max over the image's classes) | RW label | pseudo label
(RW + dCRF) | segmentation prediction | ground truth. Under each label tile
is that tile's mIoU for the image against the ground truth (the CAM as the
label of :func:`mmaff.ops.cams_to_label` at the CAM model's background
threshold, or ``--cam-bg-threshold``). CAMs and labels come from
:mod:`mmaff.apis` (the export path's code), the segmentation from mmseg's
``inference_model``; the scores from :mod:`mmaff.evaluation.functional`.

Usage:
    python tools/analysis_tools/visualize_pipeline.py CAM_CFG CAM_CKPT \\
        AFF_CFG AFF_CKPT SEG_CFG SEG_CKPT --num 4 --out grid.png \\
        [--cam-bg-threshold T]

The checkpoints (published models or mmengine training checkpoints) load
without running code from them; ``--trust-checkpoint`` (or
``MMAFF_TRUST_CHECKPOINTS=1``) allows full unpickling for files you trust.
"""
import argparse
import os
import os.path as osp
import sys
from typing import Optional, Sequence

import cv2
import numpy as np
import torch
from mmengine.config import Config, DictAction

import mmaff  # noqa: F401
from mmaff.apis import inference_pseudo_label, init_model, refiner_from_config
from mmaff.evaluation.functional import iou_from_areas, label_areas
from mmaff.ops.cam import cams_to_label
from mmaff.registry import DATASETS
from mmaff.utils.compat import TRUST_ENV, CheckpointRefusedError
from mmaff.utils.io import atomic_write, load_label_png, voc_palette

#: Column names of the picture, left to right.
COLUMNS = ('image', 'CAM', 'RW', 'RW+dCRF', 'segmentation', 'truth')
#: Heights (pixels) of the header's title line, of its column-name line and
#: of the caption strip under each row of tiles.
TITLE_HEIGHT = 24
NAMES_HEIGHT = 22
CAPTION_HEIGHT = 20

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def image_miou(pred: np.ndarray,
               gt: np.ndarray,
               num_classes: int,
               ignore_index: int = 255) -> float:
    """mIoU of one label map against its ground truth.

    The mean, over the classes whose union (ground truth or prediction,
    pixels where the ground truth is ``ignore_index`` left out) is not
    empty, of intersection / union; the areas and IoUs are those of
    :func:`mmaff.evaluation.functional.label_areas` and
    :func:`~mmaff.evaluation.functional.iou_from_areas`.

    Args:
        pred (np.ndarray): (H, W) predicted label ids.
        gt (np.ndarray): (H, W) ground-truth label ids.
        num_classes (int): Number of classes K, background included.
        ignore_index (int): Ground-truth value skipped. Defaults to 255.

    Returns:
        float: mIoU in [0, 1]; NaN when every pixel is ignored.
    """
    iou = iou_from_areas(label_areas(pred, gt, num_classes, ignore_index))
    iou = iou[~np.isnan(iou)]
    return float(iou.mean()) if iou.size else float('nan')


def format_miou(value: float) -> str:
    """Caption of a tile: ``'mIoU 52.3'`` (%), ``'mIoU n/a'`` for NaN."""
    return 'mIoU n/a' if np.isnan(value) else f'mIoU {value * 100:.1f}'


def cam_bg_threshold(cam_model) -> float:
    """The CAM model's background threshold (``test_cfg.bg_threshold`` of
    its config, hand-overs resolved by :func:`mmaff.apis.init_model`)."""
    test_cfg = cam_model.cfg.model.get('test_cfg') or {}
    return float(
        test_cfg.get('bg_threshold', getattr(cam_model, 'bg_threshold', 0.2)))


def split_name(ds_cfg) -> str:
    """Name of a dataset config's split: its ``ann_file``'s stem ('val'),
    'val' when it has none."""
    ann_file = ds_cfg.get('ann_file') or ''
    return osp.splitext(osp.basename(ann_file))[0] or 'val'


def _tile(img, scale):
    return cv2.resize(
        img, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)


def _put_text(canvas: np.ndarray, text: str, x: int, baseline: int,
              max_width: int) -> None:
    """Black text at (x, baseline), the font shrunk to fit ``max_width``."""
    scale = 0.5
    while scale > 0.3 and cv2.getTextSize(text, _FONT, scale,
                                          1)[0][0] > max_width:
        scale -= 0.05
    cv2.putText(canvas, text, (x, baseline), _FONT, scale, (0, 0, 0), 1,
                cv2.LINE_AA)


def _pad(tile: np.ndarray, height: int, width: int) -> np.ndarray:
    out = np.full((height, width, 3), 255, np.uint8)
    out[:tile.shape[0], :tile.shape[1]] = tile
    return out


def assemble_grid(
    rows: Sequence[Sequence[np.ndarray]],
    names: Sequence[str],
    title: str,
    captions: Optional[Sequence[Sequence[Optional[str]]]] = None
) -> np.ndarray:
    """Tiles in a table under a header (a title line, the column names).

    Each cell is padded with white to the largest tile of its row and
    column, so that images of different sizes stay aligned.

    Args:
        rows (Sequence[Sequence[np.ndarray]]): One sequence of (h, w, 3)
            BGR tiles per row, one tile per column.
        names (Sequence[str]): Column names.
        title (str): The header's first line.
        captions (Sequence[Sequence[str | None]], optional): Per row and
            column, text printed in a strip of ``CAPTION_HEIGHT`` pixels
            under the tile (None: nothing). None: no strips.

    Returns:
        np.ndarray: (TITLE_HEIGHT + NAMES_HEIGHT + sum of the row heights
        (+ CAPTION_HEIGHT each with captions), sum of the column widths, 3)
        uint8 BGR picture.
    """
    if not rows:
        raise ValueError('assemble_grid: no rows')
    for r, row in enumerate(rows):
        if len(row) != len(names):
            raise ValueError(f'row {r} has {len(row)} tiles for '
                             f'{len(names)} columns')
        for tile in row:
            if tile.ndim != 3 or tile.shape[2] != 3:
                raise ValueError(f'row {r}: tiles must be (h, w, 3), got '
                                 f'{tile.shape}')
    if captions is not None and (len(captions) != len(rows) or any(
            len(c) != len(names) for c in captions)):
        raise ValueError('captions must have one entry per tile')
    widths = [max(row[c].shape[1] for row in rows) for c in range(len(names))]
    starts = np.concatenate([[0], np.cumsum(widths)]).astype(int)
    total = int(starts[-1])
    head = np.full((TITLE_HEIGHT + NAMES_HEIGHT, total, 3), 255, np.uint8)
    _put_text(head, title, 4, TITLE_HEIGHT - 7, total - 8)
    for c, name in enumerate(names):
        _put_text(head, name,
                  int(starts[c]) + 4, TITLE_HEIGHT + NAMES_HEIGHT - 7,
                  widths[c] - 8)
    parts = [head]
    for r, row in enumerate(rows):
        height = max(tile.shape[0] for tile in row)
        parts.append(
            np.concatenate([
                _pad(tile.astype(np.uint8), height, widths[c])
                for c, tile in enumerate(row)
            ], 1))
        if captions is not None:
            strip = np.full((CAPTION_HEIGHT, total, 3), 255, np.uint8)
            for c, text in enumerate(captions[r]):
                if text:
                    _put_text(strip, text,
                              int(starts[c]) + 4, CAPTION_HEIGHT - 6,
                              widths[c] - 8)
            parts.append(strip)
    return np.concatenate(parts, 0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ('cam_config', 'cam_checkpoint', 'aff_config',
                 'aff_checkpoint', 'seg_config', 'seg_checkpoint'):
        parser.add_argument(name)
    parser.add_argument('--num', type=int, default=4)
    parser.add_argument('--scale', type=float, default=2.0)
    parser.add_argument('--out', default='pipeline.png')
    parser.add_argument(
        '--cam-bg-threshold',
        type=float,
        default=None,
        help='background score of the CAM column\'s label (and mIoU); '
        'default: the CAM config\'s model.test_cfg.bg_threshold, hand-overs '
        'resolved')
    parser.add_argument(
        '--aff-cfg-options',
        nargs='+',
        action=DictAction,
        help='overrides of the AffinityNet config, e.g. the walk settings '
        'a pipeline chose: model.test_cfg.alpha=4')
    parser.add_argument(
        '--trust-checkpoint',
        action='store_true',
        help='allow full unpickling of the checkpoints (can run code from '
        'them: only for files you trust)')
    args = parser.parse_args()
    if args.trust_checkpoint:
        os.environ[TRUST_ENV] = '1'

    from mmseg.apis import inference_model
    try:
        # weights_only=False: training checkpoints too, loaded safely
        cam_model = init_model(
            args.cam_config, args.cam_checkpoint, weights_only=False)
        aff_cfg = Config.fromfile(args.aff_config)
        if args.aff_cfg_options:
            aff_cfg.merge_from_dict(args.aff_cfg_options)
        aff_model = init_model(
            aff_cfg, args.aff_checkpoint, weights_only=False)
        seg_model = init_model(
            args.seg_config, args.seg_checkpoint, weights_only=False)
    except CheckpointRefusedError as err:
        sys.exit(f'error: {err}')
    bg_threshold = (
        cam_bg_threshold(cam_model)
        if args.cam_bg_threshold is None else args.cam_bg_threshold)
    seg_cfg = seg_model.cfg
    ds_cfg = seg_cfg.test_dataloader.dataset.copy()
    ds_cfg['pipeline'] = []
    dataset = DATASETS.build(ds_cfg)
    num_classes = len(dataset.metainfo['classes'])
    ignore_index = getattr(dataset, 'ignore_index', 255)
    # the refiner of the config's RandomWalkHook (the walk's settings are
    # the model's test_cfg)
    refiner = refiner_from_config(aff_model.cfg)
    palette = voc_palette()
    rows, captions = [], []
    for i in range(min(args.num, len(dataset))):
        info = dataset.get_data_info(i)
        image = cv2.imread(info['img_path'])
        out = inference_pseudo_label(
            cam_model, aff_model, image, list(info['img_labels']),
            refiner=refiner)
        cam = out['cams'].max(0) if len(out['cams']) else np.zeros(
            image.shape[:2], np.float32)
        heat = cv2.applyColorMap((cam * 255).astype(np.uint8),
                                 cv2.COLORMAP_JET)
        cam_label = cams_to_label(
            torch.from_numpy(out['cams']), out['labels'],
            bg_threshold).numpy()
        seg = inference_model(seg_model, image).pred_sem_seg.data[0].cpu()
        gt = load_label_png(info['seg_map_path'])
        labels = [cam_label, out['rw'], out['rw_crf'], seg.numpy()]
        tiles = [image, heat] + [
            palette[x][:, :, ::-1]
            for x in (out['rw'], out['rw_crf'], seg.numpy(), gt)
        ]
        rows.append([_tile(t, args.scale) for t in tiles])
        name = osp.basename(info['img_path'])
        captions.append([name] + [
            format_miou(image_miou(x, gt, num_classes, ignore_index))
            for x in labels
        ] + [None])
    title = (f'{split_name(ds_cfg)} images ({len(rows)} of {len(dataset)}); '
             'mIoU per image vs truth; CAM label at bg threshold '
             f'{bg_threshold:.2f}')
    grid = assemble_grid(rows, COLUMNS, title, captions)
    atomic_write(args.out, lambda tmp: cv2.imwrite(tmp, grid) or None)
    print(f'wrote {args.out} ({len(rows)} {split_name(ds_cfg)} images)')


if __name__ == '__main__':
    main()
