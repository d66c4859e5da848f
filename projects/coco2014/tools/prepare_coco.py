# Copyright (c) mmaff contributors. All rights reserved.
"""Convert MS-COCO 2014 instance annotations to the WSSS layout of mmaff.

Usage::

    python projects/coco2014/tools/prepare_coco.py DATA_ROOT \\
        [--splits train2014 val2014] [--workers 4]

Input (the official files, untouched)::

    DATA_ROOT/train2014/*.jpg, DATA_ROOT/val2014/*.jpg
    DATA_ROOT/annotations/instances_{train,val}2014.json

Output, for each split, from the instance JSON alone::

    DATA_ROOT/SegmentationClass/<split>/<stem>.png   P-mode label maps
    DATA_ROOT/ImageSets/<split>.txt                  images with at least
                                                     one non-crowd instance
    DATA_ROOT/ImageLabels/<split>.txt                their image-level labels
    DATA_ROOT/classes.txt                            background + the classes

Label maps: 0 = background, 1..C = the categories in ascending category id
(C = 80 for COCO, whose ids run 1..90 with gaps), 255 = crowd regions
(``iscrowd=1``). Every image of the JSON gets a map (an image without
instances an all-background one). The annotations of an image are drawn in
descending order of their pixel area (ties: ascending annotation id), so
where instances overlap the smaller one ends on top; crowd regions take part
in the same order.

Segmentations: polygons (a list of ``[x1, y1, x2, y2, ...]`` in COCO's pixel
coordinates, where pixel ``(i, j)`` covers ``[j, j+1) x [i, i+1)``) are
filled with OpenCV (see :func:`polygons_to_mask`); RLEs (``{'size': [h, w],
'counts': ...}``) are decoded here, ``counts`` a list (uncompressed) or a
string (COCO's compressed form, see :func:`decode_rle_string`).

Image-level labels: the categories of an image's non-crowd instances,
written with :func:`mmaff.datasets.image_labels.write_label_file`. That
format separates the class names by whitespace and writes a name with a
space ("traffic light") with underscores (``traffic_light``), reading either
form back; ``classes.txt`` lists the underscored names too, so that one
spelling is used everywhere (see :func:`label_file_class_names`).

Every file is written atomically; a rerun skips the images whose PNG exists
and leaves the text files alone when their content is unchanged. Errors name
the JSON file and entry (annotation id, image id).
"""
import argparse
import multiprocessing
import os.path as osp
import signal
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from mmengine.utils import ProgressBar
from PIL import Image

from mmaff.datasets.image_labels import read_label_file, write_label_file
from mmaff.utils.io import (atomic_write, remove_stale_temp_files,
                            save_label_png)

#: Label of crowd regions (ignored by training and evaluation).
CROWD_LABEL = 255

#: Image id -> sorted label ids.
Labels = Dict[str, List[int]]

#: Default splits.
SPLITS = ('train2014', 'val2014')

#: Fixed-point bits of the polygon vertices given to ``cv2.fillPoly``.
_SHIFT = 8

#: Margin (pixels) of the canvas polygons are filled on: OpenCV smears a
#: polygon that leaves the canvas along the border, so the canvas is larger
#: than the image and polygons are clipped to it first.
_PAD = 2

#: Characters of the compressed RLE alphabet: 48 ('0') + 6 bits.
_RLE_CHAR_MIN, _RLE_CHAR_MAX = 48, 48 + 63

# ----------------------------------------------------------------------------
# Decoding of segmentations
# ----------------------------------------------------------------------------


def decode_rle_string(counts: str) -> List[int]:
    """Decode the ``counts`` string of a compressed COCO RLE.

    The format: every run length is stored as a signed integer in
    little-endian groups of 5 bits, one character per group; the character
    is ``48 + group``, plus ``0x20`` when another group of the same number
    follows. In the last group of a number, bit ``0x10`` is the sign (the
    number is sign-extended from there). From the fourth run on (index
    >= 3), the stored number is the difference to the run two places
    before (the previous run of the same value).

    Args:
        counts (str): The string.

    Returns:
        list[int]: The run lengths (zeros first).

    Raises:
        ValueError: On a character outside the alphabet, a string that ends
            within a number, or a negative run length.
    """
    runs: List[int] = []
    value, shift = 0, 0
    for pos, char in enumerate(counts):
        code = ord(char) - _RLE_CHAR_MIN
        if not 0 <= code <= _RLE_CHAR_MAX - _RLE_CHAR_MIN:
            raise ValueError(f'character {char!r} at position {pos} is not '
                             'in the compressed RLE alphabet (ASCII 48-111)')
        value |= (code & 0x1f) << shift
        shift += 5
        if code & 0x20:  # another group follows
            continue
        if code & 0x10:  # sign bit of the last group
            value -= 1 << shift
        if len(runs) > 2:
            value += runs[-2]
        if value < 0:
            raise ValueError(f'run {len(runs)} has a negative length '
                             f'({value})')
        runs.append(value)
        value, shift = 0, 0
    if shift:
        raise ValueError('the string ends within a run length (its last '
                         'character has the continuation bit 0x20)')
    return runs


def rle_to_mask(counts: Sequence[int], height: int, width: int) -> np.ndarray:
    """Expand RLE run lengths to a mask.

    Args:
        counts (Sequence[int]): Run lengths, alternately of zeros and ones,
            zeros first, over the pixels in column-major order; they must
            sum to ``height * width``.
        height (int): Mask height.
        width (int): Mask width.

    Returns:
        np.ndarray: (height, width) bool.
    """
    counts = np.asarray(counts, dtype=np.int64)
    if counts.sum() != height * width:
        raise ValueError(f'RLE run lengths sum to {int(counts.sum())}, not '
                         f'height x width = {height * width}')
    values = (np.arange(len(counts)) % 2).astype(bool)
    flat = np.repeat(values, counts)
    return flat.reshape(width, height).T


def _clip_polygon(points: np.ndarray, x0: float, y0: float, x1: float,
                  y1: float) -> np.ndarray:
    """Sutherland-Hodgman clipping of a polygon (k, 2) to a rectangle."""

    def clip(pts, axis, bound, keep_less):
        out = []
        for i in range(len(pts)):
            cur, prev = pts[i], pts[i - 1]
            cur_in = cur[axis] <= bound if keep_less else cur[axis] >= bound
            prev_in = (
                prev[axis] <= bound if keep_less else prev[axis] >= bound)
            if cur_in != prev_in:
                t = (bound - prev[axis]) / (cur[axis] - prev[axis])
                out.append(prev + t * (cur - prev))
            if cur_in:
                out.append(cur)
        return np.asarray(out, dtype=np.float64).reshape(-1, 2)

    for axis, bound, keep_less in ((0, x0, False), (0, x1, True),
                                   (1, y0, False), (1, y1, True)):
        if len(points) == 0:
            break
        points = clip(points, axis, bound, keep_less)
    return points


def polygons_to_mask(polygons: Sequence[np.ndarray], height: int,
                     width: int) -> np.ndarray:
    """Fill the polygons of one instance (their union) with OpenCV.

    COCO coordinates put the centre of pixel ``(i, j)`` at ``(j + 0.5,
    i + 0.5)``, OpenCV at ``(j, i)``: the vertices are moved by -0.5 and
    given to ``cv2.fillPoly`` with sub-pixel precision (8 fractional bits).
    OpenCV fills the pixels whose centre lies inside the polygon and the
    pixels its outline passes through, so the mask can exceed the exact
    centre-in-polygon set by a band of about half a pixel along the
    boundary (never by a pixel whose centre is more than one pixel away).

    Args:
        polygons (Sequence[np.ndarray]): Polygons, each (k, 2) float
            ``(x, y)`` with k >= 3.
        height (int): Image height.
        width (int): Image width.

    Returns:
        np.ndarray: (height, width) bool.
    """
    canvas = np.zeros((height + 2 * _PAD, width + 2 * _PAD), dtype=np.uint8)
    lo, hi_x, hi_y = -_PAD / 2, width + _PAD / 2, height + _PAD / 2
    for points in polygons:
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if (points.min(axis=0) < lo).any() or points[:, 0].max() > hi_x \
                or points[:, 1].max() > hi_y:
            points = _clip_polygon(points, lo, lo, hi_x, hi_y)
            if len(points) == 0:
                continue
        fixed = np.round((points - 0.5 + _PAD) * (1 << _SHIFT))
        # one polygon a call: the union, whatever the orientation
        cv2.fillPoly(
            canvas, [fixed.astype(np.int32)],
            1,
            lineType=cv2.LINE_8,
            shift=_SHIFT)
    return canvas[_PAD:_PAD + height, _PAD:_PAD + width].astype(bool)


def segmentation_to_mask(seg: Tuple[str, object], height: int,
                         width: int) -> np.ndarray:
    """Mask of a parsed segmentation (see :func:`parse_segmentation`).

    Args:
        seg (tuple): ``('polygon', list of (k, 2) arrays)`` or ``('rle',
            run lengths)``.
        height (int): Image height.
        width (int): Image width.

    Returns:
        np.ndarray: (height, width) bool.
    """
    kind, data = seg
    if kind == 'polygon':
        return polygons_to_mask(data, height, width)
    return rle_to_mask(data, height, width)


def parse_segmentation(segmentation: object, height: int,
                       width: int) -> Tuple[str, object]:
    """Check a COCO ``segmentation`` field and bring it to a compact form.

    Args:
        segmentation (list | dict): Polygons (a list of flat coordinate
            lists) or an RLE (``{'size': [h, w], 'counts': list | str}``).
        height (int): The image height (from the JSON).
        width (int): The image width (from the JSON).

    Returns:
        tuple: ``('polygon', list of (k, 2) float64 arrays)`` or ``('rle',
        int64 run lengths)``.

    Raises:
        ValueError: With the problem (the caller adds the JSON entry): a
            malformed polygon (odd number of coordinates, fewer than 3
            points, not numbers), an RLE whose size differs from the
            image's, malformed run lengths.
    """
    if isinstance(segmentation, list):
        if not segmentation:
            raise ValueError('malformed polygon: the segmentation lists no '
                             'polygon')
        polygons = []
        for k, poly in enumerate(segmentation):
            if not isinstance(poly, list):
                raise ValueError(f'malformed polygon {k}: expected a list '
                                 f'of coordinates, got {type(poly).__name__}')
            if len(poly) % 2:
                raise ValueError(f'malformed polygon {k}: odd number of '
                                 f'coordinates ({len(poly)})')
            if len(poly) < 6:
                raise ValueError(f'malformed polygon {k}: fewer than 3 '
                                 f'points ({len(poly) // 2})')
            try:
                points = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
            except (TypeError, ValueError) as err:
                raise ValueError(f'malformed polygon {k}: coordinates are '
                                 f'not numbers ({err})') from err
            if not np.isfinite(points).all():
                raise ValueError(f'malformed polygon {k}: non-finite '
                                 'coordinates')
            polygons.append(points)
        return 'polygon', polygons
    if isinstance(segmentation, dict):
        size, counts = segmentation.get('size'), segmentation.get('counts')
        if not (isinstance(size, (list, tuple)) and len(size) == 2):
            raise ValueError(f'malformed RLE: size {size!r} is not [h, w]')
        if [int(s) for s in size] != [height, width]:
            raise ValueError(f'RLE size {list(size)} (h, w) does not match '
                             f'the image size [{height}, {width}]')
        if isinstance(counts, str):
            try:
                runs = decode_rle_string(counts)
            except ValueError as err:
                raise ValueError(f'malformed compressed RLE: {err}') from err
        elif isinstance(counts, list):
            if not all(isinstance(c, int) and c >= 0 for c in counts):
                raise ValueError('malformed uncompressed RLE: counts must '
                                 'be non-negative integers')
            runs = counts
        else:
            raise ValueError('malformed RLE: counts must be a list '
                             '(uncompressed) or a string (compressed), got '
                             f'{type(counts).__name__}')
        runs = np.asarray(runs, dtype=np.int64)
        if int(runs.sum()) != height * width:
            raise ValueError(f'malformed RLE: the run lengths sum to '
                             f'{int(runs.sum())}, not h x w = '
                             f'{height * width}')
        return 'rle', runs
    raise ValueError('malformed segmentation: expected polygons (a list) or '
                     f'an RLE (a dict), got {type(segmentation).__name__}')


def draw_label_map(instances: Sequence[Tuple[int, int, np.ndarray]],
                   height: int, width: int) -> np.ndarray:
    """Paint instance masks into a label map, larger ones first.

    Args:
        instances (Sequence[tuple]): ``(annotation id, label, mask)``; the
            label is the class id (1..C) or :data:`CROWD_LABEL`.
        height (int): Map height.
        width (int): Map width.

    Returns:
        np.ndarray: (height, width) uint8; where masks overlap the one with
        fewer pixels wins (equal areas: the higher annotation id).
    """
    label = np.zeros((height, width), dtype=np.uint8)
    order = sorted(instances, key=lambda t: (-int(t[2].sum()), t[0]))
    for _, value, mask in order:
        label[mask] = value
    return label


# ----------------------------------------------------------------------------
# Reading and checking the instance JSON
# ----------------------------------------------------------------------------


def label_file_class_names(names: Sequence[str]) -> List[str]:
    """The class names as written to the label file and ``classes.txt``.

    The label file format (:data:`mmaff.datasets.image_labels.
    LABEL_FILE_FORMAT`) separates names by whitespace and writes a name's
    spaces as underscores; ``classes.txt`` uses the same spelling.

    Args:
        names (Sequence[str]): Class names (background first or not).

    Returns:
        list[str]: The names, ``' '`` -> ``'_'``; an error when two names
        become equal or a name is empty.
    """
    out = ['_'.join(n.split()) for n in names]
    if any(not n for n in out):
        raise ValueError(f'empty class name among {list(names)}')
    dups = sorted({n for n in out if out.count(n) > 1})
    if dups:
        raise ValueError(f'class names {dups} occur twice once spaces are '
                         'written as underscores')
    return out


def _load_json(path: str) -> dict:
    import json
    if not osp.isfile(path):
        raise FileNotFoundError(f'instance annotation file not found: {path}')
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f'{path}: not a JSON file ({err})') from err
    missing = [
        k for k in ('images', 'annotations', 'categories')
        if not isinstance(data, dict) or k not in data
    ]
    if missing:
        raise ValueError(f'{path}: not a COCO instance file, missing keys '
                         f'{missing}')
    return data


def read_categories(data: dict,
                    json_path: str) -> Tuple[List[str], Dict[int, int]]:
    """Class names and the category id -> label id map of a COCO JSON.

    Args:
        data (dict): The loaded JSON.
        json_path (str): Its path, named in errors.

    Returns:
        tuple[list[str], dict[int, int]]: The names (background first, then
        the categories in ascending id) and category id -> label 1..C.
    """
    cats = sorted(data['categories'], key=lambda c: c['id'])
    ids = [c['id'] for c in cats]
    if len(set(ids)) != len(ids):
        raise ValueError(f'{json_path}: a category id is listed twice: '
                         f'{ids}')
    if not 0 < len(cats) < CROWD_LABEL:
        raise ValueError(f'{json_path}: {len(cats)} categories; a label map '
                         f'holds 1..{CROWD_LABEL - 1}')
    names = ['background'] + [str(c['name']) for c in cats]
    return names, {cid: i + 1 for i, cid in enumerate(ids)}


def build_tasks(data: dict, json_path: str, img_dir: str, out_dir: str,
                cat_to_label: Dict[int, int]) -> Tuple[List[dict], Labels]:
    """Check every image and annotation and gather the work of each image.

    Args:
        data (dict): The loaded JSON.
        json_path (str): Its path, named in errors.
        img_dir (str): Folder of the images (``DATA_ROOT/<split>``).
        out_dir (str): Folder of the label maps.
        cat_to_label (dict[int, int]): Category id -> label id.

    Returns:
        tuple[list[dict], dict[str, list[int]]]: One task per image (sorted
        by stem) and the image-level labels (sorted label ids of the
        non-crowd instances) of the images that have any.
    """
    images: Dict[int, dict] = {}
    stems: Dict[str, int] = {}
    for img in data['images']:
        img_id = img.get('id')
        where = f'{json_path}: image {img_id}'
        if img_id in images:
            raise ValueError(f'{where}: the image id is listed twice')
        try:
            file_name = str(img['file_name'])
            height, width = int(img['height']), int(img['width'])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f'{where}: needs file_name, height and width '
                             f'({err!r})') from err
        stem = osp.splitext(osp.basename(file_name))[0]
        if stem in stems:
            raise ValueError(f'{where}: file stem {stem!r} is also the one '
                             f'of image {stems[stem]}')
        img_path = osp.join(img_dir, file_name)
        if not osp.isfile(img_path):
            raise FileNotFoundError(f'{where} ({file_name}): image file '
                                    f'missing: {img_path}')
        stems[stem] = img_id
        images[img_id] = dict(
            img_id=img_id,
            stem=stem,
            img_path=img_path,
            out_path=osp.join(out_dir, stem + '.png'),
            height=height,
            width=width,
            anns=[])
    labels: Dict[int, set] = {}
    ann_ids = set()
    for ann in data['annotations']:
        ann_id, img_id = ann.get('id'), ann.get('image_id')
        where = f'{json_path}: annotation {ann_id} (image {img_id})'
        if ann_id in ann_ids:
            raise ValueError(f'{where}: the annotation id is listed twice')
        ann_ids.add(ann_id)
        if img_id not in images:
            raise ValueError(f'{where}: no image with id {img_id}')
        cat = ann.get('category_id')
        if cat not in cat_to_label:
            raise ValueError(f'{where}: unknown category id {cat!r}; the '
                             f'categories are {sorted(cat_to_label)}')
        crowd = ann.get('iscrowd', 0)
        if crowd not in (0, 1):
            raise ValueError(f'{where}: iscrowd must be 0 or 1, got '
                             f'{crowd!r}')
        img = images[img_id]
        try:
            seg = parse_segmentation(
                ann.get('segmentation'), img['height'], img['width'])
        except ValueError as err:
            raise ValueError(f'{where}: {err}') from err
        value = CROWD_LABEL if crowd else cat_to_label[cat]
        img['anns'].append((ann_id, value, seg))
        if not crowd:
            labels.setdefault(img_id, set()).add(value)
    tasks = sorted(images.values(), key=lambda t: t['stem'])
    image_labels = {
        t['stem']: sorted(labels[t['img_id']])
        for t in tasks if t['img_id'] in labels
    }
    return tasks, image_labels


# ----------------------------------------------------------------------------
# Workers
# ----------------------------------------------------------------------------

_ABORT = None


def _init_worker(abort) -> None:
    """Worker set-up: Ctrl-C handled by the parent, one OpenCV thread,
    queued tasks skipped after an error elsewhere."""
    global _ABORT
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cv2.setNumThreads(1)
    _ABORT = abort


def convert_image(task: dict) -> Optional[str]:
    """Draw and write the label map of one image.

    Args:
        task (dict): From :func:`build_tasks`.

    Returns:
        str | None: The written path (None when skipped after an abort).
    """
    if _ABORT is not None and _ABORT.is_set():
        return None
    where = f'image {task["img_id"]} ({task["img_path"]})'
    try:
        with Image.open(task['img_path']) as img:
            file_size = img.size
    except (OSError, SyntaxError) as err:
        raise ValueError(f'{where}: unreadable image ({err})') from err
    if file_size != (task['width'], task['height']):
        raise ValueError(f'{where}: the file is {file_size[0]} x '
                         f'{file_size[1]} (w x h), the JSON says '
                         f'{task["width"]} x {task["height"]}')
    height, width = task['height'], task['width']
    instances = [(ann_id, value, segmentation_to_mask(seg, height, width))
                 for ann_id, value, seg in task['anns']]
    save_label_png(task['out_path'], draw_label_map(instances, height, width))
    return task['out_path']


def _run_tasks(tasks: List[dict], workers: int, progress: bool) -> int:
    """Run :func:`convert_image` on the tasks; returns how many ran."""
    bar = ProgressBar(len(tasks)) if progress and tasks else None
    if workers == 0 or len(tasks) <= 1:
        pool = abort = None
        results = map(convert_image, tasks)
    else:
        abort = multiprocessing.Event()
        pool = multiprocessing.Pool(
            min(workers, len(tasks)),
            initializer=_init_worker,
            initargs=(abort, ))
        chunksize = max(1, min(16, len(tasks) // (4 * workers)))
        results = pool.imap_unordered(convert_image, tasks, chunksize)
    done = 0
    try:
        for result in results:
            done += result is not None
            if bar is not None:
                bar.update()
    except BaseException:
        # the tasks in flight finish (their writes are atomic), the queued
        # ones return at once
        if abort is not None:
            abort.set()
        raise
    finally:
        if pool is not None:
            pool.close()
            pool.join()
        if bar is not None:
            sys.stdout.write('\n')
    return done


# ----------------------------------------------------------------------------
# Text outputs
# ----------------------------------------------------------------------------


def _write_text(path: str, lines: Sequence[str]) -> bool:
    """Write lines atomically unless the file holds them already."""
    text = '\n'.join(lines) + '\n'
    if osp.isfile(path):
        with open(path, encoding='utf-8') as f:
            if f.read() == text:
                return False

    def _write(tmp):
        with open(tmp, 'w', encoding='utf-8') as f:
            f.write(text)

    atomic_write(path, _write)
    return True


def _write_labels(path: str, labels: Dict[str, List[int]],
                  names: Sequence[str]) -> bool:
    """Write the label file unless it holds these labels already, and
    check that it reads back."""
    if osp.isfile(path):
        try:
            if read_label_file(path, names) == labels:
                return False
        except ValueError:
            pass  # rewritten below
    write_label_file(path, labels, names)
    if read_label_file(path, names) != labels:
        raise RuntimeError(f'{path}: the label file does not read back as '
                           'written')
    return True


# ----------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------


def convert_split(data_root: str,
                  split: str,
                  workers: int = 4,
                  progress: bool = True) -> dict:
    """Convert one split (e.g. ``'train2014'``).

    Args:
        data_root (str): The COCO root.
        split (str): Image folder name; the JSON is
            ``annotations/instances_<split>.json``.
        workers (int): Worker processes; 0 works in this process.
            Defaults to 4.
        progress (bool): Show a progress bar. Defaults to True.

    Returns:
        dict: ``images``, ``written`` (label maps written), ``skipped``
        (maps that existed), ``in_split`` (images with a non-crowd
        instance), ``files`` (the text files written this time) and
        ``classes`` (background + the class names as in the label file).
    """
    if workers < 0:
        raise ValueError(f'workers must be >= 0, got {workers}')
    json_path = osp.join(data_root, 'annotations', f'instances_{split}.json')
    data = _load_json(json_path)
    raw_names, cat_to_label = read_categories(data, json_path)
    names = label_file_class_names(raw_names)
    out_dir = osp.join(data_root, 'SegmentationClass', split)
    tasks, labels = build_tasks(data, json_path, osp.join(data_root, split),
                                out_dir, cat_to_label)
    del data
    if not labels:
        raise ValueError(f'{json_path}: no image has a non-crowd instance; '
                         'the split would be empty')
    for folder in (out_dir, osp.join(data_root, 'ImageSets'),
                   osp.join(data_root, 'ImageLabels'), data_root):
        remove_stale_temp_files(folder)
    todo = [t for t in tasks if not osp.exists(t['out_path'])]
    print(f'{split}: {len(tasks)} images, {len(tasks) - len(todo)} label '
          f'maps exist (skipped), {len(todo)} to write -> {out_dir}')
    written = _run_tasks(todo, workers, progress)

    files = []
    outputs = (
        (osp.join(data_root, 'classes.txt'), lambda p: _write_text(p, names)),
        (osp.join(data_root, 'ImageSets',
                  f'{split}.txt'), lambda p: _write_text(p, sorted(labels))),
        (osp.join(data_root, 'ImageLabels',
                  f'{split}.txt'), lambda p: _write_labels(p, labels, names)),
    )
    for path, write in outputs:
        if write(path):
            files.append(path)
    return dict(
        images=len(tasks),
        written=written,
        skipped=len(tasks) - len(todo),
        in_split=len(labels),
        files=files,
        classes=names)


def prepare_coco(data_root: str,
                 splits: Sequence[str] = SPLITS,
                 workers: int = 4,
                 progress: bool = True) -> Dict[str, dict]:
    """Convert the splits of a COCO 2014 root (see the module docstring).

    Args:
        data_root (str): The COCO root.
        splits (Sequence[str]): Defaults to ``('train2014', 'val2014')``.
        workers (int): Worker processes; 0 works in this process.
            Defaults to 4.
        progress (bool): Show a progress bar. Defaults to True.

    Returns:
        dict[str, dict]: Split -> the :func:`convert_split` summary.
    """
    if not osp.isdir(data_root):
        raise FileNotFoundError(f'data root not found: {data_root}')
    summaries = {}
    for split in splits:
        summaries[split] = convert_split(data_root, split, workers, progress)
    classes = {tuple(s['classes']) for s in summaries.values()}
    if len(classes) > 1:
        raise ValueError(f'the splits {list(splits)} have different '
                         'categories; classes.txt holds the last one\'s')
    return summaries


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Convert MS-COCO 2014 instance annotations to label '
        'maps, split files and image-level labels for WSSS.')
    parser.add_argument(
        'data_root',
        help='COCO root with train2014/, val2014/ and annotations/')
    parser.add_argument(
        '--splits',
        nargs='+',
        default=list(SPLITS),
        help='splits (image folder names) to convert')
    parser.add_argument(
        '--workers',
        type=int,
        default=4,
        help='worker processes (0: work in this process)')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, dict]:
    args = parse_args(argv)
    summaries = prepare_coco(args.data_root, args.splits, args.workers)
    for split, s in summaries.items():
        print(f'{split}: {s["images"]} images, {s["written"]} label maps '
              f'written, {s["skipped"]} skipped; {s["in_split"]} images with '
              f'a non-crowd instance in ImageSets/{split}.txt and '
              f'ImageLabels/{split}.txt')
    return summaries


if __name__ == '__main__':
    main()
