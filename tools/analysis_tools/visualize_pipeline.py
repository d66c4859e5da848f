# Copyright (c) mmaff contributors. All rights reserved.
"""A picture of the whole pipeline on a few images.

One row per image: image | CAM (max over the image's classes) | RW label |
pseudo label (RW + dCRF) | segmentation prediction | ground truth. CAMs and
labels come from :mod:`mmaff.apis` (the export path's code), the
segmentation from mmseg's ``inference_model``.

Usage:
    python tools/analysis_tools/visualize_pipeline.py CAM_CFG CAM_CKPT \\
        AFF_CFG AFF_CKPT SEG_CFG SEG_CKPT --num 4 --out grid.png

The checkpoints (published models or mmengine training checkpoints) load
without running code from them; ``--trust-checkpoint`` (or
``MMAFF_TRUST_CHECKPOINTS=1``) allows full unpickling for files you trust.
"""
import argparse
import os
import sys

import cv2
import numpy as np

import mmaff  # noqa: F401
from mmaff.apis import inference_pseudo_label, init_model
from mmaff.registry import DATASETS
from mmaff.utils.compat import TRUST_ENV, CheckpointRefusedError
from mmaff.utils.io import atomic_write, load_label_png, voc_palette


def _crf_settings(aff_cfg) -> dict:
    """The dCRF settings of the config's RandomWalkHook (the walk's are
    the model's test_cfg)."""
    for hook in aff_cfg.get('custom_hooks', []) or []:
        if hook.get('type') == 'RandomWalkHook':
            return dict(hook.get('crf') or {})
    return {}


def _tile(img, scale):
    return cv2.resize(img, None, fx=scale, fy=scale,
                      interpolation=cv2.INTER_NEAREST)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ('cam_config', 'cam_checkpoint', 'aff_config',
                 'aff_checkpoint', 'seg_config', 'seg_checkpoint'):
        parser.add_argument(name)
    parser.add_argument('--num', type=int, default=4)
    parser.add_argument('--scale', type=float, default=2.0)
    parser.add_argument('--out', default='pipeline.png')
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
        aff_model = init_model(
            args.aff_config, args.aff_checkpoint, weights_only=False)
        seg_model = init_model(
            args.seg_config, args.seg_checkpoint, weights_only=False)
    except CheckpointRefusedError as err:
        sys.exit(f'error: {err}')
    seg_cfg = seg_model.cfg
    ds_cfg = seg_cfg.test_dataloader.dataset.copy()
    ds_cfg['pipeline'] = []
    dataset = DATASETS.build(ds_cfg)
    crf = _crf_settings(aff_model.cfg)
    palette = voc_palette()
    rows = []
    for i in range(min(args.num, len(dataset))):
        info = dataset.get_data_info(i)
        image = cv2.imread(info['img_path'])
        out = inference_pseudo_label(cam_model, aff_model, image,
                                     list(info['img_labels']), crf=crf)
        cam = out['cams'].max(0) if len(out['cams']) else np.zeros(
            image.shape[:2], np.float32)
        heat = cv2.applyColorMap((cam * 255).astype(np.uint8),
                                 cv2.COLORMAP_JET)
        seg = inference_model(seg_model, image).pred_sem_seg.data[0].cpu()
        gt = load_label_png(info['seg_map_path'])
        tiles = [image, heat] + [
            palette[x][:, :, ::-1]
            for x in (out['rw'], out['rw_crf'], seg.numpy(), gt)
        ]
        rows.append(np.concatenate([_tile(t, args.scale) for t in tiles], 1))
    grid = np.concatenate(rows, 0).astype(np.uint8)
    head = np.full((28, grid.shape[1], 3), 255, np.uint8)
    names = ['image', 'CAM', 'RW', 'RW+dCRF', 'segmentation', 'truth']
    step = grid.shape[1] // len(names)
    for k, name in enumerate(names):
        cv2.putText(head, name, (k * step + 4, 20), cv2.FONT_HERSHEY_SIMPLEX,
                    0.5, (0, 0, 0), 1, cv2.LINE_AA)
    grid = np.concatenate([head, grid], 0)
    atomic_write(args.out, lambda tmp: cv2.imwrite(tmp, grid) or None)
    print(f'wrote {args.out} ({len(rows)} images)')


if __name__ == '__main__':
    main()
