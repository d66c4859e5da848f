# Copyright (c) mmaff contributors. All rights reserved.
"""Stage 2: write confident-region maps from exported CAM files.

For every image: read the image (RGB) and its CAM file
``<cam-dir>/<img_id>.npz`` (checked against the image size and labels),
compute the confident-region map (``mmaff.ops.confident_region_map``:
``(1 - max CAM) ** alpha`` for alpha_low / alpha_high, dense CRF, fusion at
stride 8) and write ``<out-dir>/<img_id>.png`` (VOC palette, 0 background,
label ids, 255 unsure) atomically. Existing outputs are skipped, so an
interrupted run resumes where it stopped; the temporary files of a killed
run are removed when the next one starts. The worker processes die with
the tool (on Linux at once, elsewhere before their next image).

Examples::

    # every CAM file in cams/, labels taken from the CAM files
    python tools/make_confident_regions.py \\
        --img-dir data/VOCdevkit/VOC2012/JPEGImages \\
        --cam-dir work_dirs/cams --out-dir work_dirs/conf

    # the train_aug ids only, 4 workers, scored against VOC masks
    python tools/make_confident_regions.py \\
        --img-dir data/VOCdevkit/VOC2012/JPEGImages \\
        --cam-dir work_dirs/cams --out-dir work_dirs/conf \\
        --split data/VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt \\
        --workers 4 --gt-dir data/VOCdevkit/VOC2012/SegmentationClass

    # from a stage-3 config's `confident_regions` settings
    python tools/make_confident_regions.py --config \
        configs/affinitynet/affinitynet_resnet38d_4xb2-8e_voc12aug-448x448.py

With ``--gt-dir`` (or masks in the config's dataset) the maps are scored
(precision of the confident foreground / background, unsure fraction; see
``mmaff.ops.summarize_confident_stats``) and the summary is written to
``<out-dir>/../confident_regions_stats.json`` or ``--stats-out``. A
ground-truth mask with an id outside ``0..num_classes - 1`` (other than 255)
is an error naming the file (``--num-classes``, default 21 = VOC; with
``--config`` the dataset's classes).
"""
import argparse
import ctypes
import glob
import json
import math
import multiprocessing
import os
import os.path as osp
import signal
import sys
from collections import Counter
from typing import Dict, List, Optional, Sequence

import mmcv
import numpy as np
import torch
from mmengine.config import DictAction
from mmengine.utils import ProgressBar

from mmaff.ops.confident import (confident_region_map, confident_region_stats,
                                 summarize_confident_stats)
from mmaff.utils.io import (atomic_write, load_cam_file, load_label_png,
                            read_split, remove_stale_temp_files,
                            save_label_png)

#: VOC 2012: background + 20 classes.
VOC_NUM_CLASSES = 21


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Write AffinityNet confident-region maps (stage 2) '
        'from CAM files.')
    parser.add_argument(
        '--config',
        help='a stage-3 config whose `confident_regions` dict gives '
        'cam_dir, out_dir, alphas, crf and the dataset (images, image-level '
        'labels, optional masks for scoring); replaces the path options')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of --config, key=value pairs (e.g. '
        'confident_regions.cam_dir=DIR confident_regions.out_dir=DIR)')
    parser.add_argument('--img-dir', help='image folder')
    parser.add_argument('--cam-dir', help='folder of <img_id>.npz CAM files')
    parser.add_argument('--out-dir', help='output folder of <img_id>.png')
    parser.add_argument(
        '--split',
        help='file of image ids, one per line (default: every *.npz in '
        '--cam-dir; the image labels are then the CAM files\' own)')
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
    args = parser.parse_args(argv)
    if not args.config and not (args.img_dir and args.cam_dir
                                and args.out_dir):
        parser.error('give --config, or --img-dir, --cam-dir and --out-dir')
    return args


def samples_from_config(config: str,
                        cfg_options: Optional[dict] = None) -> Dict:
    """Samples and settings from a config's ``confident_regions`` dict.

    Args:
        config (str): Config path (e.g. an AffinityNet config).
        cfg_options (dict, optional): ``--cfg-options`` overrides.

    Returns:
        dict: ``samples`` and the keyword arguments of :func:`run`
        (``num_classes`` from the dataset's classes).
    """
    from mmengine.config import Config

    from mmaff.registry import DATASETS
    from mmaff.utils import register_all_modules
    register_all_modules()
    from mmaff.utils.handover import resolve_handovers
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    resolve_handovers(cfg)
    if 'confident_regions' not in cfg:
        raise KeyError(f'{config} has no `confident_regions` settings')
    spec = cfg.confident_regions.copy()
    ds_cfg = spec.pop('dataset').copy()
    ds_cfg['pipeline'] = []
    dataset = DATASETS.build(ds_cfg)
    samples, gt_dir = [], None
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        samples.append(
            dict(
                img_id=info['img_id'],
                img_path=info['img_path'],
                img_labels=list(info['img_labels'])))
        if 'seg_map_path' in info:
            gt_dir = osp.dirname(info['seg_map_path'])
    spec.setdefault('gt_dir', gt_dir)
    spec.setdefault('num_classes', len(dataset.metainfo['classes']))
    return dict(samples=samples, **spec)


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
        list[dict]: ``{'img_id', 'img_path', 'img_labels': None}`` (no
        image-level label source here: the CAM file's labels are used).
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


# Set in each worker process: once set, queued tasks return at once.
_ABORT = None
# Set in each worker process: the pid of the process that started it; when
# the worker's parent is another one, the tool was killed.
_PARENT_PID = None

#: ``prctl`` option of Linux: the signal a process gets when its parent dies.
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux;
    a no-op where ``prctl`` is unavailable)."""
    if not sys.platform.startswith('linux'):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _parent_gone() -> bool:
    """Whether the process that started this worker has died."""
    return _PARENT_PID is not None and os.getppid() != _PARENT_PID


def _init_worker(abort, parent_pid: Optional[int] = None) -> None:
    """Worker set-up: single-threaded torch, Ctrl-C handled by the parent,
    death with the parent.

    Args:
        abort (multiprocessing.Event): Set by the parent after an error;
            the worker then skips the tasks still queued.
        parent_pid (int, optional): The tool's pid. A killed tool (SIGKILL
            leaves it no time to stop its workers) takes its workers with
            it: on Linux the kernel kills them at once; elsewhere the queued
            tasks return without writing. None: do not watch the parent.
    """
    global _ABORT, _PARENT_PID
    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _ABORT = abort
    if parent_pid is not None:
        _die_with_parent()
        _PARENT_PID = parent_pid
        if _parent_gone():  # died before the kernel watched it
            os._exit(1)


def _process_one(task: Dict) -> Optional[Dict]:
    """Compute and write the map of one sample (runs in a worker).

    Errors are re-raised naming the image, its CAM file and the cause.
    Returns None for a task skipped after an abort or once the tool is
    gone.
    """
    if (_ABORT is not None and _ABORT.is_set()) or _parent_gone():
        return None
    img_id = task['img_id']
    img_path = task['img_path']
    cam_path = task['cam_path']
    try:
        if not osp.isfile(img_path):
            raise FileNotFoundError(f'image not found: {img_path}')
        image = mmcv.imread(img_path, flag='color', channel_order='rgb')
        if image is None:
            raise ValueError(f'{img_path}: unreadable image')
        labels = task['img_labels']
        # a CAM of every image label and of no other class
        cams, cam_labels = load_cam_file(
            cam_path, expected_shape=image.shape[:2], image_labels=labels)
        conf = confident_region_map(
            image,
            cams,
            cam_labels.tolist(),
            alpha_low=task['alpha_low'],
            alpha_high=task['alpha_high'],
            stride=task['stride'],
            crf=task['crf'])
        # a bad gt file: no output
        stats = _score(conf, task['gt_path'], task['num_classes'])
        if _parent_gone():
            return None
        save_label_png(task['out_path'], conf)
    except Exception as err:
        raise RuntimeError(f'confident regions of image {img_id!r} '
                           f'({img_path}, CAM file {cam_path}) failed: '
                           f'{type(err).__name__}: {err}') from err
    return dict(img_id=img_id, stats=stats)


def _score(conf: np.ndarray, gt_path: Optional[str],
           num_classes: int) -> Optional[Dict]:
    """Counts of a map against its ground truth (None without one); an id
    outside ``0..num_classes - 1`` and 255 in the ground truth is an error
    naming the file."""
    if gt_path is None:
        return None
    gt = load_label_png(
        gt_path, expected_shape=conf.shape, num_classes=num_classes)
    return confident_region_stats(conf, gt)


def _json_safe(summary: Dict) -> Dict:
    return {
        k: (None if isinstance(v, float) and math.isnan(v) else v)
        for k, v in summary.items()
    }


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
        chunksize: Optional[int] = None,
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
            the skipped, existing ones) is scored. Defaults to None.
        gt_suffix (str): Defaults to '.png'.
        stats_out (str, optional): Summary JSON path; defaults to
            ``<out_dir>/../confident_regions_stats.json``. Only written
            with ``gt_dir``.
        chunksize (int, optional): Tasks per worker chunk; default about
            a quarter of an even share per worker, at most 16.
        progress (bool): Show a progress bar. Defaults to True.
        num_classes (int): Classes of the ground truth, background
            included: its ids must lie in ``0..num_classes - 1`` or be 255.
            Defaults to 21 (VOC).

    Returns:
        dict: ``total``, ``processed``, ``skipped`` (outputs that existed)
        and ``stats`` (the :func:`summarize_confident_stats` summary, or
        None without ``gt_dir``) and ``stats_path``.
    """
    if workers < 0:
        raise ValueError(f'workers must be >= 0, got {workers}')
    stats_path = None
    if gt_dir is not None:
        stats_path = stats_out or osp.join(
            osp.dirname(osp.abspath(out_dir)), 'confident_regions_stats.json')
    # what a killed run left: temporary files of dead writers
    folders = [osp.abspath(out_dir)]
    if stats_path is not None:
        folders.append(osp.dirname(osp.abspath(stats_path)))
    for folder in sorted(set(folders)):
        removed = remove_stale_temp_files(folder)
        if removed:
            print(f'removed {len(removed)} temporary files of an interrupted '
                  f'run from {folder}')
    counts = Counter(s['img_id'] for s in samples)
    if len(counts) != len(samples):
        dup = sorted(i for i, n in counts.items() if n > 1)
        raise ValueError(f'duplicate image ids in the sample list: {dup[:5]}')
    todo, done = [], []
    for sample in samples:
        img_id = sample['img_id']
        task = dict(
            img_id=img_id,
            img_path=sample['img_path'],
            img_labels=None if sample.get('img_labels') is None else
            [int(i) for i in sample['img_labels']],
            cam_path=osp.join(cam_dir, img_id + '.npz'),
            out_path=osp.join(out_dir, img_id + '.png'),
            gt_path=None if gt_dir is None else osp.join(
                gt_dir, img_id + gt_suffix),
            alpha_low=alpha_low,
            alpha_high=alpha_high,
            stride=stride,
            crf=crf,
            num_classes=num_classes)
        (done if osp.exists(task['out_path']) else todo).append(task)
    print(f'confident regions: {len(samples)} images, {len(done)} already '
          f'written (skipped), {len(todo)} to do -> {out_dir}')

    all_stats = []
    if gt_dir is not None:
        for task in done:
            try:
                conf = load_label_png(task['out_path'])
                all_stats.append(_score(conf, task['gt_path'], num_classes))
            except Exception as err:
                raise RuntimeError(
                    f'scoring the existing map {task["out_path"]} of image '
                    f'{task["img_id"]!r} failed: {err}') from err

    bar = ProgressBar(len(todo)) if progress and todo else None
    if workers == 0 or len(todo) <= 1:
        results = map(_process_one, todo)
        pool = abort = None
    else:
        if chunksize is None:
            chunksize = max(1, min(16, len(todo) // (4 * workers)))
        abort = multiprocessing.Event()
        # fork and spawn workers are this process's children (forkserver
        # ones are not: they are not watched)
        watch = os.getpid() if multiprocessing.get_start_method() in (
            'fork', 'spawn') else None
        pool = multiprocessing.Pool(
            min(workers, len(todo)),
            initializer=_init_worker,
            initargs=(abort, watch))
        results = pool.imap_unordered(_process_one, todo, chunksize)
    try:
        for result in results:
            if result is not None and result['stats'] is not None:
                all_stats.append(result['stats'])
            if bar is not None:
                bar.update()
    except BaseException:
        # No terminate(): a killed worker could leave a temporary file or
        # hang the pool. The tasks in flight finish (their writes are
        # atomic), the queued ones return at once.
        if abort is not None:
            abort.set()
        raise
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    if bar is not None:
        sys.stdout.write('\n')

    summary = None
    if gt_dir is not None:
        summary = summarize_confident_stats(all_stats)
        text = json.dumps(
            dict(
                _json_safe(summary),
                alpha_low=alpha_low,
                alpha_high=alpha_high,
                stride=stride),
            indent=2)

        def _write(tmp):
            with open(tmp, 'w') as f:
                f.write(text + '\n')

        atomic_write(stats_path, _write)
        print('confident-region quality: ' +
              ', '.join(f'{k}={summary[k]:.4f}'
                        for k in ('fg_precision', 'bg_precision', 'fg_recall',
                                  'bg_recall', 'unsure_fraction')) +
              f' ({summary["num_images"]} images) -> {stats_path}')
    return dict(
        total=len(samples),
        processed=len(todo),
        skipped=len(done),
        stats=summary,
        stats_path=stats_path)


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    args = parse_args(argv)
    if args.config:
        spec = samples_from_config(args.config, args.cfg_options)
        spec.setdefault('workers', args.workers)
        if args.stats_out:
            spec['stats_out'] = args.stats_out
        return run(spec.pop('samples'), **spec)
    samples = build_samples(args.img_dir, args.cam_dir, args.split,
                            args.img_suffix)
    return run(
        samples,
        args.cam_dir,
        args.out_dir,
        workers=args.workers,
        alpha_low=args.alpha_low,
        alpha_high=args.alpha_high,
        stride=args.stride,
        gt_dir=args.gt_dir,
        gt_suffix=args.gt_suffix,
        stats_out=args.stats_out,
        num_classes=args.num_classes)


if __name__ == '__main__':
    main()
