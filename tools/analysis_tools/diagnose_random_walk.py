# Copyright (c) mmaff contributors. All rights reserved.
"""Where the random walk gains or loses: stage 4 diagnosed on labelled images.

Usage::

    python tools/analysis_tools/diagnose_random_walk.py AFF_CONFIG AFF_CKPT \\
        [--split FILE] [--held-out] [--cam-bg-threshold T] \\
        [--walk-only] [--tune-on rw|rw_crf] [--out diagnosis.json] \\
        [--cfg-options KEY=VALUE ...]

On the images of ``--split`` (an id file relative to the dataset root;
default: the config's test split; with ``--held-out`` only those its
``holdout_file`` marks), with the CAM files and the trained
AffinityNet of the config's hand-overs, it measures with the true masks:

* ``cam``: CAM mIoU for each background threshold (the sweep);
* ``grid``: the resolution ceiling of a label computed on the stride-s grid
  (true masks pooled to the grid, upsampled bilinearly like the walk's
  scores), for s = 4 and 8;
* ``affinity``: the learnt affinities against the true pairs of the grid
  (same class vs different; a pair counts as "affine" when a_ij > 0.5):
  recall of same-class foreground pairs, of background pairs, of
  different-label pairs (a_ij <= 0.5), and the precision of a_ij > 0.5;
* ``walk``: RW mIoU (and with ``--tune-on rw_crf`` the mIoU of RW + the
  config's refiner, the dCRF or PAR of its ``RandomWalkHook``) over a
  grid of (alpha, beta, steps) with the learnt affinities, and with oracle
  affinities derived from the true masks (1 for same-label pairs, 0 for
  different ones, 0.5 where the mask is unsure) on the stride-8 grid and on
  a stride-4 grid (radius as the head's), same CAMs and settings;
* ``crf``: RW + dCRF mIoU (the walk at the config's settings) for several
  bilateral ``sxy`` (the reference 80 is for ~500 px photos), when the
  config's refiner is the dense CRF;
* ``confident``: confident-region precision/recall/unsure for several
  background powers (alpha_low, alpha_high), refined by the config's
  refiner.

Everything is printed as tables and written to ``--out`` (JSON). Choose
hyper-parameters with it only on images whose masks the reported tables do
not score (the demo's ``holdout`` split). ``docs/random_walk_diagnosis.md``
reports a run on the demo.
"""
import argparse
import itertools
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import DictAction
from mmengine.dataset import pseudo_collate
from mmengine.utils import ProgressBar

import mmaff  # noqa: F401
from mmaff.apis import init_model, refiner_from_config
from mmaff.evaluation.functional import iou_from_areas, label_areas
from mmaff.ops import propagate_cams, scores_to_label
from mmaff.ops.affinity import affinity_labels
from mmaff.ops.cam import cams_to_label, pool_to_grid
from mmaff.ops.confident import (confident_region_map, confident_region_stats,
                                 summarize_confident_stats)
from mmaff.models.refiners import DenseCRF
from mmaff.ops.propagation import refine_label
from mmaff.registry import DATASETS
from mmaff.utils.io import read_rgb, write_json
from mmaff.utils.tool_utils import load_tool_config


def _pooled_truth(gt: np.ndarray, num_classes: int,
                  stride: int) -> torch.Tensor:
    """The true mask's one-hot (``ignore_index`` pixels in no class) pooled
    to the stride-s grid by :func:`mmaff.ops.cam.pool_to_grid`: (K, h, w)."""
    gt = torch.from_numpy(gt.astype(np.int64))
    onehot = F.one_hot(gt.clamp(0, num_classes), num_classes + 1)
    onehot = onehot[..., :num_classes].permute(2, 0, 1).float()
    return pool_to_grid(onehot, stride)


def grid_truth(gt: np.ndarray, num_classes: int, stride: int,
               ignore_index: int = 255) -> torch.Tensor:
    """The majority label of each stride x stride cell of a true mask.

    Args:
        gt (np.ndarray): (H, W) label ids, ``ignore_index`` unsure.
        num_classes (int): Classes, background included.
        stride (int): Cell size.
        ignore_index (int): Defaults to 255.

    Returns:
        Tensor: (ceil(H / s), ceil(W / s)) int64; cells without a labelled
        pixel are ``ignore_index``.
    """
    pooled = _pooled_truth(gt, num_classes, stride)
    label = pooled.argmax(0)
    label[pooled.sum(0) == 0] = ignore_index
    return label


def oracle_affinity(grid: torch.Tensor, radius: int,
                    ignore_index: int = 255) -> torch.Tensor:
    """Affinities from true grid labels: 1 same label, 0 different, 0.5
    where either cell is unsure.

    Returns:
        Tensor: (P, h, w) float32, P the pairs of ``radius``.
    """
    return _oracle_from_pairs(
        *(x[0] for x in affinity_labels(grid[None], radius, ignore_index)))


def _oracle_from_pairs(bg: torch.Tensor, fg: torch.Tensor,
                       neg: torch.Tensor) -> torch.Tensor:
    aff = torch.full(bg.shape, 0.5)
    aff[bg | fg] = 1.0
    aff[neg] = 0.0
    return aff


def truth_on_grid_ceiling(gt: np.ndarray, num_classes: int,
                          stride: int) -> np.ndarray:
    """The best label a stride-s score map can give: the true mask's one-hot
    pooled to the grid and upsampled like the walk's scores."""
    h, w = gt.shape
    pooled = _pooled_truth(gt, num_classes, stride)
    gh, gw = pooled.shape[-2:]
    up = F.interpolate(
        pooled[None], size=(gh * stride, gw * stride), mode='bilinear',
        align_corners=False)[0, :, :h, :w]
    return up.argmax(0).numpy()


class Scores:
    """Accumulated class areas of named label maps."""

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.areas: Dict[str, np.ndarray] = {}

    def add(self, name: str, pred, gt: np.ndarray) -> None:
        pred = np.asarray(pred)
        area = label_areas(pred, gt, self.num_classes, self.ignore_index)
        if name not in self.areas:
            self.areas[name] = np.zeros_like(area)
        self.areas[name] += area

    def miou(self) -> Dict[str, float]:
        return {
            name: round(float(np.nanmean(iou_from_areas(a))) * 100, 2)
            for name, a in self.areas.items()
        }


def _affinity_counts(aff: torch.Tensor, pairs, counts: Dict[str,
                                                            int]) -> None:
    bg, fg, neg = pairs
    high = aff > 0.5
    for name, mask, want in (('fg_pos', fg, True), ('bg_pos', bg, True),
                             ('neg', neg, False)):
        counts[f'{name}_total'] += int(mask.sum())
        counts[f'{name}_right'] += int((high[mask] == want).sum())
    counts['high_total'] += int((high & (bg | fg | neg)).sum())
    counts['high_same'] += int((high & (bg | fg)).sum())


def walk_setting(name: str) -> dict:
    """``alpha``, ``beta`` and ``steps`` of a sweep entry's name
    (``'rw/alpha=4,beta=8,steps=16'``)."""
    values = dict(kv.split('=') for kv in name.split('/', 1)[1].split(','))
    return dict(
        alpha=float(values['alpha']),
        beta=float(values['beta']),
        steps=int(values['steps']))


def _ratio(a: int, b: int) -> Optional[float]:
    return round(100.0 * a / b, 2) if b else None


def _floats(text: str) -> List[float]:
    return [float(v) for v in text.split(',')]


def _ints(text: str) -> List[int]:
    return [int(v) for v in text.split(',')]


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Diagnose the random walk (stage 4) on labelled images')
    parser.add_argument('config', help='AffinityNet (stage 3-4) config')
    parser.add_argument('checkpoint', help='its checkpoint or work dir')
    parser.add_argument(
        '--split',
        help='id file relative to the dataset root (default: the config\'s '
        'test split)')
    parser.add_argument(
        '--held-out',
        action='store_true',
        help='only the images the dataset marks as held out (its '
        'holdout_file): labelled images for choosing settings')
    parser.add_argument(
        '--cam-bg-threshold',
        type=float,
        help='CAM background threshold of the RW table\'s CAM column '
        '(default: handovers.cam_bg_threshold)')
    parser.add_argument('--alphas', type=_floats, default=[1, 2, 4, 8, 16])
    parser.add_argument('--betas', type=_floats, default=[1, 2, 4, 8, 16])
    parser.add_argument(
        '--steps', type=_ints, default=[1, 2, 4, 8, 16, 32, 64, 256])
    parser.add_argument('--crf-sxy', type=_floats, default=[80, 40, 20, 10])
    parser.add_argument(
        '--conf-alphas',
        default='0.4:5,1:5,0.4:12,1:12,2:8,4:24',
        help='alpha_low:alpha_high pairs for the confident regions')
    parser.add_argument(
        '--tune-on',
        choices=['rw', 'rw_crf'],
        default='rw',
        help='the label whose mIoU chooses the best walk setting: the walk '
        "alone, or the walk + the config's refiner (the pseudo labels)")
    parser.add_argument('--max-images', type=int, default=0)
    parser.add_argument(
        '--walk-only',
        action='store_true',
        help='only the CAM and walk sweeps (no oracle, dCRF or confident '
        'regions): the tuning stage of a pipeline')
    parser.add_argument('--out', help='write the results as JSON')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, default=None)
    return parser.parse_args(argv)


@torch.no_grad()
def diagnose(args: argparse.Namespace) -> dict:
    """Run every measurement; return the results dict (see module doc)."""
    cfg = load_tool_config(args.config, args.cfg_options)
    model = init_model(cfg, args.checkpoint, weights_only=False)
    walk = dict(alpha=16, beta=8, steps=256)
    walk.update(model.walk)
    radius, stride = model.aff_head.radius, model.aff_head.stride
    thr = args.cam_bg_threshold
    if thr is None:
        thr = float(cfg.handovers.cam_bg_threshold)
    refiner = refiner_from_config(cfg)
    ds_cfg = cfg.test_dataloader.dataset.copy()
    if args.split:
        ds_cfg['ann_file'] = args.split
    dataset = DATASETS.build(ds_cfg)
    classes = dataset.metainfo['classes']
    num_classes = len(classes)
    order = list(range(len(dataset)))
    if args.held_out:
        order = [i for i in order if dataset.get_data_info(i).get('holdout')]
        if not order:
            raise ValueError(
                f'--held-out: the test dataset ({ds_cfg.get("ann_file")}) '
                'marks no held-out image: give it a holdout_file')
    if args.max_images:
        order = order[:args.max_images]
    total = len(order)
    conf_pairs = [
        tuple(float(v) for v in p.split(':'))
        for p in args.conf_alphas.split(',') if p
    ]
    cam_thresholds = np.round(np.arange(0.05, 0.951, 0.05), 2)

    scores = Scores(num_classes)
    counts = {
        k: 0
        for k in ('fg_pos_total', 'fg_pos_right', 'bg_pos_total',
                  'bg_pos_right', 'neg_total', 'neg_right', 'high_total',
                  'high_same')
    }
    conf_stats: Dict[str, list] = {f'{a}:{b}': [] for a, b in conf_pairs}
    grid_combos = list(itertools.product(args.alphas, args.betas, args.steps))
    bar = ProgressBar(total)
    for i in order:
        data = dataset[i]
        sample = data['data_samples']
        meta = sample.metainfo
        gt = sample.gt_sem_seg.data[0].numpy().astype(np.int64)
        cams = torch.as_tensor(np.asarray(meta['cams'], np.float32))
        labels = [int(c) for c in meta['cam_labels']]
        batch = model.data_preprocessor(pseudo_collate([data]), False)
        pred = model.predict(batch['inputs'], batch['data_samples'])[0]
        aff = pred.pred_affinity.data.float()

        for t in cam_thresholds:
            scores.add(f'cam@{t:.2f}', cams_to_label(cams, labels, t), gt)
        scores.add('cam', cams_to_label(cams, labels, thr), gt)
        pairs = tuple(x[0] for x in affinity_labels(
            grid_truth(gt, num_classes, stride)[None], radius))
        _affinity_counts(aff, pairs, counts)
        oracle = {}
        if not args.walk_only:
            for s in (stride // 2, stride):
                scores.add(f'grid_ceiling@{s}',
                           truth_on_grid_ceiling(gt, num_classes, s), gt)
            oracle = {
                stride: _oracle_from_pairs(*pairs),
                stride // 2: oracle_affinity(
                    grid_truth(gt, num_classes, stride // 2), radius)
            }

        def _label(affinity, s, **kw):
            out = propagate_cams(
                cams, affinity, radius=radius, stride=s, **kw)
            return out, scores_to_label(out, labels).numpy()

        rw_scores, rw = _label(aff, stride, **walk)
        scores.add('rw', rw, gt)
        for s, o in ({} if args.walk_only else oracle).items():
            scores.add(f'rw_oracle@{s}', _label(o, s, **walk)[1], gt)
            for steps in args.steps:
                kw = dict(walk, steps=steps)
                scores.add(f'rw_oracle@{s}/steps={steps}',
                           _label(o, s, **kw)[1], gt)
        image = read_rgb(meta['img_path'], gt.shape)
        for a, b, t in grid_combos:
            name = f'alpha={a:g},beta={b:g},steps={t}'
            walked, label = _label(aff, stride, alpha=a, beta=b, steps=t)
            scores.add(f'rw/{name}', label, gt)
            if args.tune_on == 'rw_crf':
                scores.add(
                    f'rw_crf/{name}',
                    refine_label(image, walked, labels, refiner).numpy(), gt)
        if args.walk_only:
            bar.update()
            continue

        for sxy in args.crf_sxy if isinstance(refiner, DenseCRF) else []:
            crf = DenseCRF(**dict(refiner.options, bilateral_sxy=sxy))
            scores.add(f'rw_crf/sxy={sxy:g}',
                       refine_label(image, rw_scores, labels, crf).numpy(),
                       gt)
        for a, b in conf_pairs:
            conf = confident_region_map(
                image, cams, labels, a, b, stride=stride, refiner=refiner)
            conf_stats[f'{a}:{b}'].append(confident_region_stats(conf, gt))
        bar.update()
    sys.stdout.write('\n')

    miou = scores.miou()
    results = dict(
        config=args.config,
        split=ds_cfg.get('ann_file') + (' (held-out images)'
                                        if args.held_out else ''),
        num_images=total,
        walk=walk,
        radius=radius,
        stride=stride,
        cam_bg_threshold=thr,
        refiner=dict(type=type(refiner).__name__, **refiner.options),
        miou=miou,
        affinity=dict(
            fg_pos_recall=_ratio(counts['fg_pos_right'],
                                 counts['fg_pos_total']),
            bg_pos_recall=_ratio(counts['bg_pos_right'],
                                 counts['bg_pos_total']),
            neg_recall=_ratio(counts['neg_right'], counts['neg_total']),
            precision=_ratio(counts['high_same'], counts['high_total']),
            pairs=counts),
        confident={
            k: summarize_confident_stats(v)
            for k, v in conf_stats.items() if v
        })
    prefix = f'{args.tune_on}/alpha='
    best = max((k for k in miou if k.startswith(prefix)),
               key=lambda k: miou[k])
    results['best_walk'] = dict(setting=best, miou=miou[best])
    # the chosen walk, top-level for tools/run_pipeline.py's {metric:...}
    results.update(walk_setting(best), mIoU=miou[best])
    best_cam = max(cam_thresholds, key=lambda t: miou[f'cam@{t:.2f}'])
    results['best_cam'] = dict(
        bg_threshold=float(best_cam), miou=miou[f'cam@{best_cam:.2f}'])
    return results


def print_report(res: dict) -> None:
    """Print the results as markdown tables."""
    m = res['miou']
    print(f"\n{res['num_images']} images of {res['split']}; walk "
          f"{res['walk']}, radius {res['radius']}, stride {res['stride']}")
    print('\n| label | mIoU |\n| --- | --- |')
    rows = [('CAM (threshold %.2f)' % res['cam_bg_threshold'], m['cam']),
            ('CAM, best threshold %.2f of the sweep' %
             res['best_cam']['bg_threshold'], res['best_cam']['miou']),
            ('RW, learnt affinities', m['rw']),
            ('RW, oracle affinities, stride 8',
             m.get(f"rw_oracle@{res['stride']}")),
            ('RW, oracle affinities, stride 4',
             m.get(f"rw_oracle@{res['stride'] // 2}")),
            ('truth pooled to stride 8 and upsampled',
             m.get('grid_ceiling@8')),
            ('truth pooled to stride 4 and upsampled',
             m.get('grid_ceiling@4')),
            ('best of the sweep: ' + res['best_walk']['setting'],
             res['best_walk']['miou'])]
    for name, value in rows:
        if value is not None:
            print(f'| {name} | {value:.2f} |')
    a = res['affinity']
    print('\n| pairs | a > 0.5 right |\n| --- | --- |')
    for key in ('fg_pos_recall', 'bg_pos_recall', 'neg_recall',
                'precision'):
        print(f'| {key} | {a[key]} |')
    print('\nRW (learnt) over steps, per (alpha, beta):')
    steps = sorted({
        int(k.rsplit('steps=', 1)[1])
        for k in m if k.startswith('rw/alpha=')
    })
    print('| alpha, beta | ' + ' | '.join(f'{t}' for t in steps) + ' |')
    print('| --- ' * (len(steps) + 1) + '|')
    combos = sorted({
        k.split(',steps=')[0]
        for k in m if k.startswith('rw/alpha=')
    }, key=lambda s: [float(x.split('=')[1]) for x in s[3:].split(',')])
    for combo in combos:
        vals = [m[f'{combo},steps={t}'] for t in steps]
        print(f'| {combo[3:]} | ' + ' | '.join(f'{v:.1f}' for v in vals) +
              ' |')
    for s in (res['stride'], res['stride'] // 2):
        if f'rw_oracle@{s}/steps={steps[0]}' not in m:
            continue
        vals = [m[f'rw_oracle@{s}/steps={t}'] for t in steps]
        print(f'| oracle stride {s}, alpha {res["walk"]["alpha"]:g} | ' +
              ' | '.join(f'{v:.1f}' for v in vals) + ' |')
    if not res['confident']:
        return
    sxy_keys = sorted((k for k in m if k.startswith('rw_crf/sxy=')),
                      key=lambda k: -float(k.split('=')[1]))
    if sxy_keys:
        print('\n| dCRF bilateral sxy | RW+dCRF mIoU |\n| --- | --- |')
    else:
        print('\n(no dCRF sxy sweep: the refiner is '
              f"{res['refiner']['type']})")
    for k in sxy_keys:
        print(f"| {k.split('=')[1]} | {m[k]:.2f} |")
    print('\n| alpha_low:alpha_high | fg prec | bg prec | fg recall | '
          'bg recall | unsure |\n| --- | --- | --- | --- | --- | --- |')
    for k, v in res['confident'].items():
        cells = [
            100 * v[key] for key in ('fg_precision', 'bg_precision',
                                     'fg_recall', 'bg_recall',
                                     'unsure_fraction')
        ]
        print(f'| {k} | ' + ' | '.join(f'{c:.1f}' for c in cells) + ' |')


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    if not osp.exists(args.checkpoint):
        sys.exit(f'error: checkpoint not found: {args.checkpoint}')
    res = diagnose(args)
    print_report(res)
    if args.out:
        write_json(args.out, res, indent=1, sort_keys=True)
        print(f'wrote {args.out}')
    return res


if __name__ == '__main__':
    main()
