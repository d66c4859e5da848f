# Copyright (c) mmaff contributors. All rights reserved.
"""Measure what the COCO pipeline costs per image: time, peak memory, disk.

Usage (from the repository root)::

    python projects/coco2014/tools/measure_scale.py \\
        [--size 640] [--num-images 4] [--train-iters 3] [--device cpu] \\
        [--stages cam_train cam_export aff_train rw_export seg_train \\
                  seg_test] [--out scale.json]

What it does: writes ``--num-images`` synthetic COCO-format images of
``--size`` x ``--size`` (COCO's largest: 640; coloured polygons of 3 of the
80 categories each on a textured background; COCO has 3.5 an image on
average) in a temporary folder, converts them with ``prepare_coco.py``, then
runs every stage of the project's configs on them, each in a fresh process
through mmengine's ``Runner`` as ``tools/train.py`` / ``tools/test.py`` do
(random weights: nothing is downloaded), and reports per stage:

* ``s_per_iter`` / ``s_per_image``: wall time of the training iterations
  (``--train-iters``, batch size as configured unless ``--batch-size``) or
  of the test loop per image (its first image included); runner start-up
  is excluded;
* ``peak_rss_mib``: the stage process's peak resident memory (the imports,
  ~0.5 GiB, included); ``peak_cuda_mib`` with ``--device cuda``. The hooks'
  worker pools are set to 0 workers, so their work (dCRF) is inline and in
  these figures;
* the bytes per image of every file the stage hands over (CAM files in both
  encodings, confident regions, pseudo labels, checkpoints).

The files of random-weight networks are not those of trained ones (their
CAMs are noise-like and compress differently: in a 640 px run, smaller
than smooth CAMs in float16 but only 2.3x smaller again in uint8);
``cam_files_synthetic`` adds CAM-file sizes of smooth synthetic CAMs (a
stride-8 field upsampled as the CAM op does) at the same size.
``--estimate-images`` (default 82,081: the train2014 images with a
non-crowd instance, which every stage processes) scales the per-image
figures to totals.
"""
import argparse
import json
import os
import os.path as osp
import platform
import resource
import subprocess
import sys
import tempfile
import time
from typing import List, Optional

import numpy as np

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(osp.dirname(osp.dirname(HERE)))
PROJECT = 'projects/coco2014/configs'
CONFIGS = dict(
    cam=f'{PROJECT}/affinitynet-cam_resnet38d_4xb4-5e_coco2014-448x448.py',
    aff=f'{PROJECT}/affinitynet_resnet38d_4xb2-2e_coco2014-448x448.py',
    seg=(f'{PROJECT}/deeplabv3_r101-d8_4xb4-80k_coco2014-512x512_'
         'affinitynet-pseudo.py'))
#: stage -> (config, train or test)
STAGES = dict(
    cam_train=('cam', 'train'),
    cam_export=('cam', 'test'),
    aff_train=('aff', 'train'),
    rw_export=('aff', 'test'),
    seg_train=('seg', 'train'),
    seg_test=('seg', 'test'))
#: hand-over folder -> file suffix, measured after each stage
HANDOVER_FILES = dict(
    cam_export=dict(cams='.npz', conf='.png'),
    rw_export=dict(pseudo_rw='.png', pseudo_rw_crf='.png'))
LABELS_PER_IMAGE = 3


def make_synthetic_coco(root: str, size: int, num: int, seed: int = 0):
    """Write ``num`` images of size x size and their instance JSONs (the
    same images as train2014 and val2014), then convert them."""
    import cv2
    rng = np.random.default_rng(seed)
    sys.path.insert(0, HERE)
    import prepare_coco
    cats = [
        dict(id=k + 1, name=n, supercategory='x')
        for k, n in enumerate(_coco_names())
    ]
    for split in ('train2014', 'val2014'):
        os.makedirs(osp.join(root, split), exist_ok=True)
        data = dict(categories=cats, images=[], annotations=[])
        for i in range(num):
            name = f'COCO_{split}_{i:012d}.jpg'
            img = rng.integers(0, 255, (size // 16, size // 16, 3))
            img = cv2.resize(img.astype(np.uint8), (size, size))
            data['images'].append(
                dict(id=i, file_name=name, height=size, width=size))
            for k, cat in enumerate(
                    rng.choice(80, LABELS_PER_IMAGE, replace=False) + 1):
                c = rng.uniform(0.2, 0.8, 2) * size
                r = rng.uniform(0.1, 0.3) * size
                ang = np.sort(rng.uniform(0, 2 * np.pi, 9))
                pts = np.stack(
                    [c[0] + r * np.cos(ang), c[1] + r * np.sin(ang)], 1)
                cv2.fillPoly(img, [pts.astype(np.int32)],
                             [int(v) for v in rng.integers(0, 255, 3)])
                data['annotations'].append(
                    dict(
                        id=i * 10 + k,
                        image_id=i,
                        category_id=int(cat),
                        iscrowd=0,
                        segmentation=[pts.ravel().round(1).tolist()]))
            cv2.imwrite(osp.join(root, split, name), img)
        os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
        with open(
                osp.join(root, 'annotations', f'instances_{split}.json'),
                'w') as f:
            json.dump(data, f)
    prepare_coco.prepare_coco(root, workers=0, progress=False)


def _coco_names() -> List[str]:
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(REPO, PROJECT, '_base_', 'coco2014.py'))
    return [n.replace('_', ' ') for n in cfg.coco_classes[1:]]


def _stage_config(stage: str, root: str, work: str, num: int, iters: int,
                  batch: Optional[int], device: str):
    """The stage's config on the synthetic set, random weights, inline
    hooks."""
    import mmaff  # noqa: F401
    from mmengine.config import Config

    from mmaff.utils.handover import resolve_handovers
    name, mode = STAGES[stage]
    cfg = Config.fromfile(osp.join(REPO, CONFIGS[name]))
    cfg.handover_root = work
    cfg.work_dir = osp.join(work, stage)
    cfg.launcher = 'none'
    for key in ('train_dataloader', 'test_dataloader'):
        loader = cfg.get(key)
        if loader:
            loader.dataset.data_root = root
            loader.num_workers = 0
            loader.persistent_workers = False
    model = cfg.model
    model.pop('pretrained', None)
    model.backbone.init_cfg = None
    if mode == 'train':
        cfg.train_cfg.max_iters = iters
        if batch:
            cfg.train_dataloader.batch_size = batch
        cfg.default_hooks.checkpoint = dict(
            type='CheckpointHook', by_epoch=False, interval=iters)
        cfg.default_hooks.logger = dict(
            type='LoggerHook', interval=1, log_metric_by_epoch=False)
    for hook in cfg.get('custom_hooks') or []:
        if 'num_workers' in hook:
            hook.num_workers = 0
    if device == 'cpu':
        cfg.env_cfg = dict(
            cudnn_benchmark=False,
            dist_cfg=dict(backend='gloo'),
            mp_cfg=dict(mp_start_method='fork'))
    resolve_handovers(cfg)
    return cfg, mode


def run_stage(stage: str, root: str, work: str, num: int, iters: int,
              batch: Optional[int], device: str) -> dict:
    """Run one stage in this process; its figures."""
    import torch
    from mmengine.runner import Runner
    cfg, mode = _stage_config(stage, root, work, num, iters, batch, device)
    runner = Runner.from_cfg(cfg)
    if device == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    if mode == 'train':
        runner.train()
    else:
        runner.test()
    seconds = time.perf_counter() - start
    out = dict(stage=stage, config=CONFIGS[STAGES[stage][0]])
    if mode == 'train':
        out.update(
            iters=iters,
            batch_size=cfg.train_dataloader.batch_size,
            s_per_iter=seconds / iters)
        ckpts = [f for f in os.listdir(cfg.work_dir) if f.endswith('.pth')]
        out['checkpoint_mib'] = osp.getsize(osp.join(cfg.work_dir,
                                                     ckpts[0])) / 2**20
    else:
        out.update(images=num, s_per_image=seconds / num)
    out['peak_rss_mib'] = resource.getrusage(
        resource.RUSAGE_SELF).ru_maxrss / 1024
    if device == 'cuda':
        out['peak_cuda_mib'] = torch.cuda.max_memory_allocated() / 2**20
    for folder, suffix in HANDOVER_FILES.get(stage, {}).items():
        path = osp.join(work, folder)
        files = [f for f in os.listdir(path) if f.endswith(suffix)]
        out[f'{folder}_bytes_per_image'] = sum(
            osp.getsize(osp.join(path, f)) for f in files) / len(files)
    if stage == 'cam_export':
        out.update(_recode_cams(osp.join(work, 'cams')))
    return out


def _recode_cams(folder: str) -> dict:
    """Bytes per image of the exported CAMs in both encodings."""
    from mmaff.utils.io import load_cam_file, save_cam_file
    sizes = dict(float16=[], uint8=[])
    with tempfile.TemporaryDirectory() as tmp:
        for name in os.listdir(folder):
            cams, labels = load_cam_file(osp.join(folder, name))
            for dtype in sizes:
                path = osp.join(tmp, f'{dtype}.npz')
                save_cam_file(path, cams, labels, dtype=dtype)
                sizes[dtype].append(osp.getsize(path))
    return {
        f'cams_{k}_bytes_per_image': float(np.mean(v))
        for k, v in sizes.items()
    }


def synthetic_cam_files(size: int,
                        labels: int = LABELS_PER_IMAGE,
                        seed: int = 0) -> dict:
    """Bytes of a CAM file of smooth CAM-like maps (the 4 test scales of a
    stride-8 field, bilinearly upsampled, ReLU, summed, max-normalised)."""
    import cv2

    from mmaff.utils.io import save_cam_file
    rng = np.random.default_rng(seed)
    cams = []
    for _ in range(labels):
        acc = np.zeros((size, size), np.float32)
        for scale in (1.0, 0.5, 1.5, 2.0):
            side = max(1, int(size * scale / 8))
            low = cv2.GaussianBlur(
                rng.normal(size=(side, side)).astype(np.float32), (0, 0),
                2 * scale)
            acc += cv2.resize(np.maximum(low, 0), (size, size))
        cams.append(acc / (acc.max() + 1e-5))
    out = dict(size=size, labels=labels)
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in ('float16', 'uint8'):
            path = osp.join(tmp, f'{dtype}.npz')
            save_cam_file(
                path, np.stack(cams), list(range(1, labels + 1)), dtype=dtype)
            out[f'{dtype}_bytes_per_image'] = osp.getsize(path)
    return out


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--size', type=int, default=640)
    parser.add_argument('--num-images', type=int, default=4)
    parser.add_argument('--train-iters', type=int, default=3)
    parser.add_argument(
        '--batch-size', type=int, help='training batch (default: config)')
    parser.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    parser.add_argument(
        '--stages', nargs='+', choices=list(STAGES), default=list(STAGES))
    parser.add_argument('--estimate-images', type=int, default=82081)
    parser.add_argument('--out', help='JSON file of the figures')
    parser.add_argument('--_stage', help=argparse.SUPPRESS)
    parser.add_argument('--_root', help=argparse.SUPPRESS)
    parser.add_argument('--_work', help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args._stage:  # one stage, in its own process
        result = run_stage(args._stage, args._root, args._work,
                           args.num_images, args.train_iters, args.batch_size,
                           args.device)
        print('MEASURED ' + json.dumps(result))
        return
    import torch
    report = dict(
        machine=dict(
            platform=platform.platform(),
            cpus=os.cpu_count(),
            torch_threads=torch.get_num_threads(),
            device=args.device,
            cuda=torch.cuda.get_device_name(0)
            if args.device == 'cuda' else None),
        size=args.size,
        num_images=args.num_images,
        stages=[],
        cam_files_synthetic=synthetic_cam_files(args.size))
    with tempfile.TemporaryDirectory() as tmp:
        root, work = osp.join(tmp, 'coco2014'), osp.join(tmp, 'work')
        make_synthetic_coco(root, args.size, args.num_images)
        label_bytes = [
            osp.getsize(osp.join(root, 'SegmentationClass', 'train2014', f))
            for f in os.listdir(
                osp.join(root, 'SegmentationClass', 'train2014'))
        ]
        report['converter_label_map_bytes_per_image'] = float(
            np.mean(label_bytes))
        for stage in args.stages:
            cmd = [
                sys.executable,
                osp.abspath(__file__), '--_stage', stage, '--_root', root,
                '--_work', work, '--size',
                str(args.size), '--num-images',
                str(args.num_images), '--train-iters',
                str(args.train_iters), '--device', args.device
            ]
            if args.batch_size:
                cmd += ['--batch-size', str(args.batch_size)]
            proc = subprocess.run(
                cmd, cwd=REPO, capture_output=True, text=True)
            lines = [
                ln for ln in proc.stdout.splitlines()
                if ln.startswith('MEASURED ')
            ]
            if proc.returncode or not lines:
                raise RuntimeError(f'stage {stage} failed:\n'
                                   f'{(proc.stdout + proc.stderr)[-4000:]}')
            result = json.loads(lines[-1][len('MEASURED '):])
            print(json.dumps(result), flush=True)
            report['stages'].append(result)
    n = args.estimate_images
    totals = {}
    for result in report['stages']:
        if 's_per_image' in result:
            totals[
                f"{result['stage']}_hours"] = result['s_per_image'] * n / 3600
        for key, value in result.items():
            if key.endswith('_bytes_per_image'):
                totals[key.replace('_bytes_per_image', '_gb')] = \
                    value * n / 1e9
    for key in ('float16', 'uint8'):
        totals[f'cams_{key}_synthetic_gb'] = report['cam_files_synthetic'][
            f'{key}_bytes_per_image'] * n / 1e9
    report['estimate'] = dict(images=n, **totals)
    print(json.dumps(report, indent=2))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(report, f, indent=2)


if __name__ == '__main__':
    main()
