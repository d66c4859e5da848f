# Copyright (c) mmaff contributors. All rights reserved.
"""Pseudo-label export throughput of stage 4, CRF included.

What is measured: the per-image work of a stage-4 export, as
``tools/test.py`` drives it, *without the network forward*: reading the CAM
file (``LoadCAMs``), the random walk (:func:`mmaff.ops.propagate_cams`, 256
steps, in the main process as ``AffinityNet.predict`` runs it) and the
argmax, then :class:`RandomWalkHook`'s dense CRF (10 iterations, on the RGB
image read from disk) and the two atomic PNG writes, for ``--workers`` = 0
(inline), 1, 2, ... worker processes of the hook. The hook is driven like
mmengine's ``TestLoop`` drives it (``before_test_epoch``,
``after_test_iter`` per batch of one image, ``after_test_epoch``); the
time from the first to the last call, pool start-up included, gives
images/s. ``--forward-ms`` adds a sleep per batch
in the main process, standing in for a network forward on a GPU, to show
how the pool overlaps the dCRF with it.

The inputs are synthetic but VOC-like: ``--num-images`` JPEG images of
500x375 with 2-3 elliptic objects on a textured background, 2-3 present
classes out of 20, CAMs that peak on the objects (normalised to [0, 1) and
stored float16 like the CAM export), and affinities from
:func:`mmaff.ops.affinity_from_features` on per-region features plus noise
(close to 1 inside a region, small across). ``--device cuda`` puts the
affinities on the GPU: the walk then runs there. A per-stage breakdown of
the inline work (median over the images) is printed first.

Example::

    python tools/analysis_tools/benchmark_pseudo_label_export.py
    python tools/analysis_tools/benchmark_pseudo_label_export.py \\
        --workers 0 2 --forward-ms 200 --device cuda
"""
import argparse
import json
import os
import os.path as osp
import platform
import statistics
import tempfile
import time
from types import SimpleNamespace

import cv2
import numpy as np
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

import mmaff  # noqa: F401  (applies the environment fixes first)
from mmaff.engine.hooks import RandomWalkHook
from mmaff.ops import (affinity_from_features, dense_crf, propagate_cams,
                       scores_to_label)
from mmaff.ops.random_walk import cpu_threads
from mmaff.utils.io import (load_cam_file, read_rgb, save_cam_file,
                            save_label_png)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Pseudo-label export throughput (RW + dCRF)')
    parser.add_argument('--num-images', type=int, default=24)
    parser.add_argument(
        '--workers',
        type=int,
        nargs='+',
        default=[0, 1, 2],
        help='num_workers values to compare')
    parser.add_argument('--height', type=int, default=375)
    parser.add_argument('--width', type=int, default=500)
    parser.add_argument('--steps', type=int, default=256)
    parser.add_argument('--crf-iterations', type=int, default=10)
    parser.add_argument(
        '--no-crf', action='store_true', help='random walk labels only')
    parser.add_argument(
        '--forward-ms',
        type=float,
        default=0,
        help='sleep per batch in the main process (a stand-in for a model '
        'forward on a GPU)')
    parser.add_argument(
        '--device', default='cpu', help='device of the affinities / walk')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--work-dir',
        help='where to write the inputs and outputs '
        '(default: a temporary folder, removed at the end)')
    parser.add_argument('--out', help='also write the results as JSON')
    return parser.parse_args(argv)


def make_image(rng, height, width):
    """A textured background with 2-3 coloured ellipses.

    Returns:
        tuple: (H, W, 3) uint8 RGB image and a list of boolean object masks.
    """
    image = rng.normal(110, 25, (height, width, 3))
    image = cv2.GaussianBlur(image, (0, 0), 3)
    yy, xx = np.mgrid[:height, :width]
    masks = []
    for _ in range(int(rng.integers(2, 4))):
        cy, cx = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width
        ry, rx = rng.uniform(0.1, 0.3) * height, rng.uniform(0.1, 0.3) * width
        mask = ((yy - cy) / ry)**2 + ((xx - cx) / rx)**2 < 1
        image[mask] = rng.uniform(0, 255, 3) + rng.normal(
            0, 12, (int(mask.sum()), 3))
        masks.append(mask)
    return np.clip(image, 0, 255).astype(np.uint8), masks


def make_inputs(root, num_images, height, width, seed):
    """Write images and CAM files; return (img_path, labels, affinity)."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    os.makedirs(osp.join(root, 'images'), exist_ok=True)
    items = []
    grid = (-(-height // 8), -(-width // 8))
    for i in range(num_images):
        img_id = f'bench_{i:04d}'
        image, masks = make_image(rng, height, width)
        img_path = osp.join(root, 'images', img_id + '.jpg')
        cv2.imwrite(img_path, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        classes = sorted(rng.choice(np.arange(1, 21), len(masks), False))
        cams = []
        for mask in masks:
            dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
            cam = cv2.GaussianBlur(dist, (0, 0), 15) * rng.uniform(
                0.5, 1.5, (height, width))
            cams.append(cam / (cam.max() + 1e-5))
        save_cam_file(
            osp.join(root, 'cams', img_id + '.npz'), np.stack(cams),
            [int(c) for c in classes])
        # affinity features: one random vector per region (+ noise)
        region = np.zeros((height, width), np.int64)
        for k, mask in enumerate(masks):
            region[mask] = k + 1
        region = region[4::8, 4::8][:grid[0], :grid[1]]
        region = np.pad(region, ((0, grid[0] - region.shape[0]),
                                 (0, grid[1] - region.shape[1])), 'edge')
        centres = torch.randn(len(masks) + 1, 32, generator=gen) * 2
        feats = centres[torch.from_numpy(region)].permute(2, 0, 1)
        feats = feats + 0.3 * torch.randn(feats.shape, generator=gen)
        affinity = affinity_from_features(feats[None])[0]
        items.append((img_path, [int(c) for c in classes], affinity))
    return items


def breakdown(items, cam_dir, out_dir, args, device):
    """Median seconds per stage of the inline per-image work (the walk also
    on torch's default number of threads, for comparison)."""
    threads = torch.get_num_threads()
    times = {
        'read CAM': [],
        'walk': [],
        'CRF': [],
        'write': [],
        f'walk on {threads} threads': []
    }
    for img_path, _, affinity in items:
        img_id = osp.splitext(osp.basename(img_path))[0]
        affinity = affinity.to(device)
        t0 = time.perf_counter()
        cams, labels = load_cam_file(osp.join(cam_dir, img_id + '.npz'))
        t1 = time.perf_counter()
        with cpu_threads(1):  # what the walk picks for VOC-size grids
            scores = propagate_cams(
                torch.from_numpy(cams).to(device), affinity,
                steps=args.steps).cpu()
        t2 = time.perf_counter()
        label = scores_to_label(scores, labels.tolist()).numpy()
        if not args.no_crf:
            probs = scores / scores.sum(0, keepdim=True).clamp_min(1e-30)
            q = dense_crf(
                read_rgb(img_path, cams.shape[1:]),
                probs,
                iterations=args.crf_iterations)
            label = np.array([0] + labels.tolist())[q.argmax(0)]
        t3 = time.perf_counter()
        save_label_png(osp.join(out_dir, img_id + '.png'), label)
        t4 = time.perf_counter()
        propagate_cams(
            torch.from_numpy(cams).to(device), affinity, steps=args.steps)
        if device.type == 'cuda':
            torch.cuda.synchronize()
        t5 = time.perf_counter()
        for key, dt in zip(times,
                           (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            times[key].append(dt)
    return {k: statistics.median(v) for k, v in times.items()}


def run_export(items, cam_dir, out_root, workers, args, device):
    """Drive the hook over all images; return seconds."""
    hook = RandomWalkHook(
        out_dir=osp.join(out_root, 'rw'),
        crf_out_dir=None if args.no_crf else osp.join(out_root, 'rw_crf'),
        crf=dict(iterations=args.crf_iterations),
        num_workers=workers)
    affinities = [affinity.to(device) for _, _, affinity in items]
    runner = SimpleNamespace(test_dataloader=items)
    start = time.perf_counter()
    hook.before_test_epoch(runner)
    pairs = zip(items, affinities)
    for idx, ((img_path, _, _), affinity) in enumerate(pairs):
        if args.forward_ms:
            time.sleep(args.forward_ms / 1000)
        # LoadCAMs + AffinityNet.predict's walk, in the main process
        img_id = osp.splitext(osp.basename(img_path))[0]
        cams, labels = load_cam_file(osp.join(cam_dir, img_id + '.npz'))
        scores = propagate_cams(
            torch.from_numpy(cams).to(device), affinity, steps=args.steps)
        sample = SegDataSample(
            metainfo=dict(
                img_path=img_path, score_labels=[0] + labels.tolist()))
        sample.seg_logits = PixelData(data=scores)
        sample.pred_sem_seg = PixelData(
            data=scores_to_label(scores, labels.tolist())[None])
        hook.after_test_iter(runner, idx, None, [sample])
    hook.after_test_epoch(runner, {})
    seconds = time.perf_counter() - start
    written = len(os.listdir(osp.join(out_root, 'rw')))
    if written != len(items):
        raise RuntimeError(f'{written} labels written for {len(items)} '
                           'images')
    return seconds


def main(argv=None):
    args = parse_args(argv)
    device = torch.device(args.device)
    tmp = None
    root = args.work_dir
    if root is None:
        tmp = tempfile.TemporaryDirectory(prefix='bench_export_')
        root = tmp.name
    try:
        print(f'making {args.num_images} synthetic {args.width}x'
              f'{args.height} images ...')
        items = make_inputs(root, args.num_images, args.height, args.width,
                            args.seed)
        cam_dir = osp.join(root, 'cams')
        stages = breakdown(items[:min(8, len(items))], cam_dir,
                           osp.join(root, 'breakdown'), args, device)
        print('inline per-image stages (median s): ' +
              ', '.join(f'{k} {v:.3f}' for k, v in stages.items()))
        results = []
        for workers in args.workers:
            seconds = run_export(items, cam_dir,
                                 osp.join(root, f'out_w{workers}'), workers,
                                 args, device)
            results.append(
                dict(
                    workers=workers,
                    seconds=round(seconds, 3),
                    images_per_s=round(len(items) / seconds, 3)))
        base = results[0]['images_per_s']
        print(f'\n{"workers":>7}  {"seconds":>8}  {"images/s":>8}  '
              f'{"speed-up":>8}')
        for r in results:
            print(f'{r["workers"]:>7}  {r["seconds"]:>8.2f}  '
                  f'{r["images_per_s"]:>8.2f}  '
                  f'{r["images_per_s"] / base:>7.2f}x')
        load = os.getloadavg()
        print(f'load average (1/5/15 min) at the end: {load[0]:.2f} '
              f'{load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs')
        info = dict(
            machine=platform.platform(),
            cpu_count=os.cpu_count(),
            load_average=[round(x, 2) for x in load],
            torch_threads=torch.get_num_threads(),
            device=str(device),
            num_images=len(items),
            image_size=[args.height, args.width],
            steps=args.steps,
            crf=None if args.no_crf else dict(iterations=args.crf_iterations),
            forward_ms=args.forward_ms,
            stages_median_s={
                k: round(v, 4)
                for k, v in stages.items()
            },
            results=results)
        if args.out:
            with open(args.out, 'w') as f:
                json.dump(info, f, indent=2)
        return info
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == '__main__':
    main()
