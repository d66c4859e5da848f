# Copyright (c) mmaff contributors. All rights reserved.
"""Stage 2 from CAM files: confident-region maps.

mmaff's pipelines write the maps during the CAM test run
(:class:`mmaff.engine.hooks.ConfidentRegionHook` next to the CAM export).
This tool does the same per-image work from CAM files that exist already,
e.g. CAMs of another method in mmaff's format (``mmaff.utils.io``): for
every image it reads the RGB image and ``<cam-dir>/<img_id>.npz`` (checked
against the image size), computes the map (``mmaff.ops.confident_region_map``:
``(1 - max CAM) ** alpha`` for alpha_low / alpha_high, dense CRF, fusion at
the stride) and writes ``<out-dir>/<img_id>.png`` (VOC palette, 0
background, label ids, 255 unsure). Skipping finished images, atomic
writes, the worker pool and errors naming the image are the hook's
(:class:`mmaff.engine.hooks.BaseExportHook`).

Examples::

    # every CAM file in cams/, labels taken from the CAM files
    python tools/make_confident_regions.py \\
        --img-dir data/VOCdevkit/VOC2012/JPEGImages \\
        --cam-dir work_dirs/cams --out-dir work_dirs/conf

    # the ids of a split, 4 workers, scored against VOC masks
    python tools/make_confident_regions.py \\
        --img-dir data/VOCdevkit/VOC2012/JPEGImages \\
        --cam-dir work_dirs/cams --out-dir work_dirs/conf \\
        --split data/VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt \\
        --workers 4 --gt-dir data/VOCdevkit/VOC2012/SegmentationClass

With ``--gt-dir`` the maps are scored (precision and recall of the
confident foreground / background, unsure fraction:
``mmaff.evaluation.metrics.confident_region_metric.score_confident_maps``,
as the CAM test run's ``ConfidentRegionMetric``) and the summary is written
to ``<out-dir>/../confident_regions_stats.json`` or ``--stats-out``.
"""
import argparse
import glob
import json
import os.path as osp
from typing import Dict, List, Optional, Sequence

from mmengine.utils import ProgressBar

from mmaff.engine.hooks import ConfidentRegionHook
from mmaff.evaluation.metrics.confident_region_metric import \
    score_confident_maps
from mmaff.utils.io import atomic_write, load_cam_file, read_split

#: VOC 2012: background + 20 classes.
VOC_NUM_CLASSES = 21


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Write AffinityNet confident-region maps (stage 2) '
        'from CAM files.')
    parser.add_argument('--img-dir', required=True, help='image folder')
    parser.add_argument(
        '--cam-dir', required=True, help='folder of <img_id>.npz CAM files')
    parser.add_argument(
        '--out-dir', required=True, help='output folder of <img_id>.png')
    parser.add_argument(
        '--split',
        help='file of image ids, one per line (default: every *.npz in '
        '--cam-dir)')
    parser.add_argument(
        '--img-suffix', default='.jpg', help='image file suffix')
    parser.add_argument(
        '--alpha-low',
        type=float,
        default=4,
        help='power of the amplified background (default 4)')
    parser.add_argument(
        '--alpha-high',
        type=float,
        default=24,
        help='power of the weak background (default 24, the paper\'s)')
    parser.add_argument(
        '--stride', type=int, default=8, help='fusion stride (default 8)')
    parser.add_argument(
        '--crf-bilateral-sxy',
        type=float,
        help='dCRF bilateral sxy (default: the reference\'s 80, meant for '
        '~500-px images)')
    parser.add_argument(
        '--workers',
        type=int,
        default=2,
        help='worker processes (0: run in this process)')
    parser.add_argument(
        '--gt-dir',
        help='ground-truth label PNGs (VOC SegmentationClass) to score the '
        'maps against')
    parser.add_argument(
        '--gt-suffix', default='.png', help='ground-truth file suffix')
    parser.add_argument(
        '--num-classes',
        type=int,
        default=VOC_NUM_CLASSES,
        help='classes of the ground truth, background included: its ids '
        'must lie in 0..num-classes-1 or be 255 (default 21, VOC)')
    parser.add_argument(
        '--stats-out',
        help='where to write the score summary (default: '
        '<out-dir>/../confident_regions_stats.json)')
    return parser.parse_args(argv)


def build_samples(img_dir: str,
                  cam_dir: str,
                  split: Optional[str] = None,
                  img_suffix: str = '.jpg') -> List[Dict]:
    """Sample list for :func:`run` from an image folder and a split file.

    Args:
        img_dir (str): Image folder.
        cam_dir (str): CAM folder; without ``split`` its ``*.npz`` files
            name the images.
        split (str, optional): File of image ids. Defaults to None.
        img_suffix (str): Image suffix. Defaults to '.jpg'.

    Returns:
        list[dict]: ``{'img_id', 'img_path', 'img_labels': None}`` (the
        CAM files' labels are used).
    """
    if split is not None:
        ids = read_split(split)
    else:
        if not osp.isdir(cam_dir):
            raise FileNotFoundError(f'CAM folder not found: {cam_dir}')
        ids = sorted(
            osp.splitext(osp.basename(p))[0]
            for p in glob.glob(osp.join(cam_dir, '*.npz')))
    return [
        dict(
            img_id=i,
            img_path=osp.join(img_dir, i + img_suffix),
            img_labels=None) for i in ids
    ]


def run(samples: Sequence[Dict],
        cam_dir: str,
        out_dir: str,
        workers: int = 2,
        alpha_low: float = 4,
        alpha_high: float = 24,
        crf: Optional[dict] = None,
        stride: int = 8,
        gt_dir: Optional[str] = None,
        gt_suffix: str = '.png',
        stats_out: Optional[str] = None,
        progress: bool = True,
        num_classes: int = VOC_NUM_CLASSES) -> Dict:
    """Write the confident-region maps of a list of samples.

    Args:
        samples (Sequence[dict]): ``{'img_id': str, 'img_path': str,
            'img_labels': list[int] | None}``; with ``img_labels`` None the
            CAM file's own class ids are used, otherwise the CAM file must
            cover exactly these classes.
        cam_dir (str): Folder of ``<img_id>.npz`` CAM files.
        out_dir (str): Output folder of ``<img_id>.png`` maps.
        workers (int): Worker processes; 0 runs in this process.
            Defaults to 2.
        alpha_low (float): Amplified-background power. Defaults to 4.
        alpha_high (float): Weak-background power. Defaults to 24.
        crf (dict, optional): ``dense_crf`` keyword arguments. Defaults to
            None (the reference's).
        stride (int): Fusion stride. Defaults to 8.
        gt_dir (str, optional): Ground-truth label PNGs
            ``<gt_dir>/<img_id><gt_suffix>``; when given, every map (also
            the existing ones) is scored. Defaults to None.
        gt_suffix (str): Defaults to '.png'.
        stats_out (str, optional): Summary JSON path; defaults to
            ``<out_dir>/../confident_regions_stats.json``. Only written
            with ``gt_dir``.
        progress (bool): Show a progress bar. Defaults to True.
        num_classes (int): Classes of the ground truth, background
            included. Defaults to 21 (VOC).

    Returns:
        dict: ``total``, ``processed``, ``skipped`` (maps that existed),
        ``stats`` (the scores, None without ``gt_dir``) and ``stats_path``.
    """
    ids = [s['img_id'] for s in samples]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f'duplicate image ids in the sample list: {dup[:5]}')
    hook = ConfidentRegionHook(
        out_dir,
        alpha_low=alpha_low,
        alpha_high=alpha_high,
        stride=stride,
        crf=crf,
        num_workers=workers)
    hook.before_test_epoch(None)
    bar = ProgressBar(len(samples)) if progress and samples else None
    for sample in samples:

        def make_job(todo, sample=sample):
            cams, labels = load_cam_file(
                osp.join(cam_dir, sample['img_id'] + '.npz'),
                image_labels=sample.get('img_labels'))
            return dict(
                img_path=sample['img_path'],
                path=todo['conf'],
                cams=cams,
                labels=labels.tolist(),
                settings=hook.settings)

        hook.export(sample['img_id'], sample['img_path'],
                    dict(conf=osp.join(out_dir, sample['img_id'] + '.png')),
                    make_job)
        if bar is not None:
            bar.update()
    hook.after_test_epoch(None)
    result = dict(
        total=len(samples),
        processed=hook.num_written,
        skipped=hook.num_skipped,
        stats=None,
        stats_path=None)
    if gt_dir is not None:
        stats_path = stats_out or osp.join(
            osp.dirname(osp.abspath(out_dir)), 'confident_regions_stats.json')
        stats = score_confident_maps(
            [(osp.join(out_dir, i + '.png'), osp.join(gt_dir, i + gt_suffix))
             for i in ids], num_classes)
        text = json.dumps(
            dict(
                stats,
                alpha_low=alpha_low,
                alpha_high=alpha_high,
                stride=stride),
            indent=2)

        def _write(tmp):
            with open(tmp, 'w') as f:
                f.write(text + '\n')

        atomic_write(stats_path, _write)
        print(f'confident-region quality: {stats} -> {stats_path}')
        result.update(stats=stats, stats_path=stats_path)
    return result


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    args = parse_args(argv)
    samples = build_samples(args.img_dir, args.cam_dir, args.split,
                            args.img_suffix)
    crf = None if args.crf_bilateral_sxy is None else dict(
        bilateral_sxy=args.crf_bilateral_sxy)
    return run(
        samples,
        args.cam_dir,
        args.out_dir,
        workers=args.workers,
        alpha_low=args.alpha_low,
        alpha_high=args.alpha_high,
        crf=crf,
        stride=args.stride,
        gt_dir=args.gt_dir,
        gt_suffix=args.gt_suffix,
        stats_out=args.stats_out,
        num_classes=args.num_classes)


if __name__ == '__main__':
    main()
