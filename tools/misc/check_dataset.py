# Copyright (c) mmaff contributors. All rights reserved.
"""Pre-flight check of a config's data: read every image and label map once.

A corrupt image otherwise shows up only when a data loader worker reaches
it, hours into a run. This tool builds the config's train, val and test
datasets (the dataloaders that are not None; no transforms), then opens
every image and label map they list once and decodes it fully:

* the image must exist and decode without error (a truncated JPEG is an
  error here, while OpenCV decodes it silently with grey rows);
* its label map (``seg_map_path``), where the dataset has one, must exist,
  be a single-channel PNG of the image's size and hold only the ids
  ``0..num_classes - 1`` and the ignore index
  (:func:`mmaff.utils.io.load_label_png`);
* a dataset that cannot be built (a missing split file, image or XML file,
  missing generated label maps) is a problem too.

Every problem is printed, one a line (``<file>: <problem>``), then a
summary; the exit status is 1 if any problem was found, else 0.

Usage::

    python tools/misc/check_dataset.py CONFIG [--cfg-options KEY=VALUE ...]
        [--workers 4]
"""
import argparse
import copy
import multiprocessing
import os
import os.path as osp
import signal
import sys
from typing import Dict, List, Optional, Sequence, Tuple

from mmengine.config import Config, DictAction
from mmengine.utils import ProgressBar
from PIL import Image, ImageFile

import mmaff  # noqa: F401  (applies mmaff.utils.compat before mmseg)
from mmaff.utils.handover import resolve_handovers
from mmaff.utils.io import load_label_png

#: The dataloaders checked, in order.
SPLITS = ('train', 'val', 'test')
#: Worker processes by default: the CPU count, at most 8.
DEFAULT_WORKERS = min(8, os.cpu_count() or 1)
#: EXIF orientations that swap width and height (OpenCV, thus mmcv's
#: loader, applies them).
_TRANSPOSED = (5, 6, 7, 8)

#: A label map to check: (path, num_classes or None, ignore_index).
LabelSpec = Tuple[str, Optional[int], int]
#: An image and the label maps that go with it.
Item = Tuple[str, Tuple[LabelSpec, ...]]


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Read every image and label map of a config\'s '
        'train/val/test datasets once and list every problem (exit status '
        '1 if there is one).')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value pairs')
    parser.add_argument(
        '--workers',
        type=int,
        default=DEFAULT_WORKERS,
        help='worker processes (0: check in this process; default: the '
        'CPU count, at most 8)')
    args = parser.parse_args(argv)
    if args.workers < 0:
        parser.error(f'--workers must be >= 0, got {args.workers}')
    return args


def _without_pipeline(cfg: dict) -> dict:
    """A dataset config without transforms (wrapped datasets too)."""
    cfg = copy.deepcopy(cfg)

    def _strip(node):
        if isinstance(node, dict):
            if 'pipeline' in node:
                node['pipeline'] = []
            for key in ('dataset', 'datasets'):
                if key in node:
                    _strip(node[key])
        elif isinstance(node, (list, tuple)):
            for child in node:
                _strip(child)

    _strip(cfg)
    return cfg


def _label_spec(dataset, info: dict) -> Optional[LabelSpec]:
    """What to check of a sample's label map (None without one)."""
    path = info.get('seg_map_path')
    if not path:
        return None
    classes = (dataset.metainfo or {}).get('classes')
    reduce_zero = info.get('reduce_zero_label',
                           getattr(dataset, 'reduce_zero_label', False))
    # with reduce_zero_label the file holds ids 1..C (0 is ignored)
    num_classes = None
    if classes and not reduce_zero:
        num_classes = len(classes)
    return path, num_classes, int(getattr(dataset, 'ignore_index', 255))


def collect_items(cfg: Config) -> Tuple[List[Item], List[str], Dict]:
    """Build the config's datasets and list their images and label maps.

    Args:
        cfg (Config): The config.

    Returns:
        tuple: the items (each image once, with the label maps of every
        dataset that lists it), the problems found while building (one
        line each) and the number of samples per checked split.
    """
    from mmaff.registry import DATASETS
    from mmaff.utils import register_all_modules
    register_all_modules()
    labels: Dict[str, List[LabelSpec]] = {}
    problems, counts = [], {}
    for split in SPLITS:
        loader = cfg.get(f'{split}_dataloader')
        if loader is None or loader.get('dataset') is None:
            continue
        try:
            dataset = DATASETS.build(_without_pipeline(loader['dataset']))
            infos = [dataset.get_data_info(i) for i in range(len(dataset))]
        except Exception as err:
            problems.append(f'{split}_dataloader.dataset: cannot be built: '
                            f'{type(err).__name__}: {err}')
            continue
        counts[split] = len(infos)
        for info in infos:
            specs = labels.setdefault(info['img_path'], [])
            spec = _label_spec(dataset, info)
            if spec is not None and spec not in specs:
                specs.append(spec)
    items = [(img, tuple(specs)) for img, specs in labels.items()]
    return items, problems, counts


def _image_shape(path: str) -> Tuple[int, int]:
    """Decode an image fully; its (H, W) as the data loader sees it."""
    with Image.open(path) as img:
        img.load()
        width, height = img.size
        if img.getexif().get(0x0112) in _TRANSPOSED:
            width, height = height, width
    return height, width


def _message(err: BaseException, path: str) -> str:
    """An error's text without the path it starts with."""
    text = str(err)
    for prefix in (f'{path}: ', f'{path} '):
        if text.startswith(prefix):
            return text[len(prefix):]
    return text


def check_item(item: Item) -> List[str]:
    """Read one image and its label maps; their problems (one line each).

    Args:
        item (tuple): The image path and its label maps' (path,
            num_classes, ignore_index).

    Returns:
        list[str]: ``<file>: <problem>`` lines; empty when all is well.
    """
    img_path, specs = item
    problems, shape = [], None
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error
    if not osp.isfile(img_path):
        problems.append(f'{img_path}: image not found')
    else:
        try:
            shape = _image_shape(img_path)
        except Exception as err:
            problems.append(f'{img_path}: corrupt image '
                            f'({type(err).__name__}: {err})')
    for path, num_classes, ignore_index in specs:
        if not osp.isfile(path):
            problems.append(f'{path}: label map not found (image '
                            f'{img_path})')
            continue
        try:
            load_label_png(
                path,
                expected_shape=shape,
                num_classes=num_classes,
                ignore_index=ignore_index)
        except Exception as err:
            problems.append(f'{path}: {_message(err, path)}')
    return problems


def _init_worker() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops


def check(items: Sequence[Item],
          workers: int = 0,
          progress: bool = True) -> List[str]:
    """Check every item, in a worker pool; the problems in item order.

    Args:
        items (Sequence[Item]): From :func:`collect_items`.
        workers (int): Worker processes; 0 checks here. Defaults to 0.
        progress (bool): Show a progress bar. Defaults to True.

    Returns:
        list[str]: The problems, one line each.
    """
    problems: List[str] = []
    bar = ProgressBar(len(items)) if progress and items else None
    pool = None
    if workers > 0 and len(items) > 1:
        pool = multiprocessing.Pool(
            min(workers, len(items)), initializer=_init_worker)
        chunksize = max(1, min(32, len(items) // (4 * workers)))
        results = pool.imap(check_item, items, chunksize)
    else:
        results = map(check_item, items)
    try:
        for found in results:
            problems.extend(found)
            if bar is not None:
                bar.update()
    finally:
        if pool is not None:
            pool.terminate()  # reads only: nothing to finish
            pool.join()
    if bar is not None:
        sys.stdout.write('\n')
    return problems


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Check a config's data; print the problems and a summary.

    Returns:
        int: The exit status: 1 if any problem was found, else 0.
    """
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    resolve_handovers(cfg)  # e.g. stage 3's confident regions as labels
    items, problems, counts = collect_items(cfg)
    problems += check(items, args.workers)
    for line in problems:
        print(line)
    num_labels = sum(len(specs) for _, specs in items)
    splits = ', '.join(f'{k} {v}' for k, v in counts.items()) or 'none'
    print(f'checked {len(items)} images and {num_labels} label maps '
          f'(samples per split: {splits}): ' +
          (f'{len(problems)} problems' if problems else 'no problem found'))
    sys.stdout.flush()
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
