# Copyright (c) mmaff contributors. All rights reserved.
"""Generate a miniature PASCAL VOC 2012 + SBD tree (mmseg's voc_aug layout).

Usage::

    python tools/dataset_converters/make_mini_voc.py data/VOCdevkit/VOC2012 \\
        [--seed 0] [--num-train 6] [--num-aug 4] [--num-val 4] [--size 64]

It stands in for the real dataset where the real one cannot be had (tests,
CI, a first smoke run of a recipe), so that the VOC configs run *unchanged*
on it: the same folders, split files, class names and mask conventions.

``OUT_DIR`` receives::

    JPEGImages/<id>.jpg              landscape (size x 3/4*size) and portrait
                                     images, alternating, like VOC's
                                     500 x 375 and 375 x 500 photos
    Annotations/<id>.xml             VOC XML, VOC's 20 class names
    SegmentationClass/<id>.png       VOC masks: train and val images only
    SegmentationClassAug/<id>.png    voc_aug masks: train, SBD-only and val
    ImageSets/Segmentation/train.txt, val.txt, trainval.txt,
        trainaug.txt (train + the SBD-only images, sorted: the two kinds
        interleave), aug.txt (SBD-only)
    mini_voc.json                    the settings (a re-run completes the
                                     tree; other settings are refused)

As with SBD, the ``aug`` images have **no** ``SegmentationClass`` mask:
``trainaug`` is a strict superset of ``train``. The pictures come from the
demo generator (``make_demo_dataset.render_sample``, cropped to the
non-square size), its 5 pattern classes spread over VOC's 20 ids (the class
of an object is ``1 + 4 * (demo class - 1) + index % 4``).
"""
import argparse
import importlib.util
import json
import os
import os.path as osp
import xml.etree.ElementTree as ET
from typing import Dict, List, Optional, Sequence

import numpy as np

from mmaff.utils.io import save_label_png

#: VOC 2012 class names, index = label id.
VOC_CLASSES = ('background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle',
               'bus', 'car', 'cat', 'chair', 'cow', 'diningtable', 'dog',
               'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa',
               'train', 'tvmonitor')
VERSION = '1.0'


def _demo_tool():
    """The demo generator (a tool file beside this one)."""
    path = osp.join(osp.dirname(osp.abspath(__file__)), 'make_demo_dataset.py')
    spec = importlib.util.spec_from_file_location('_mmaff_demo_gen', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def split_ids(num_train: int, num_aug: int,
              num_val: int) -> Dict[str, List[str]]:
    """VOC-like ids of each split.

    Args:
        num_train (int): VOC train images (with both mask folders).
        num_aug (int): SBD-only images (``SegmentationClassAug`` only).
        num_val (int): VOC val images.

    Returns:
        dict[str, list[str]]: ``train``, ``aug``, ``val``, ``trainval``,
        ``trainaug``.
    """
    # ids in one sequence, train and SBD-only interleaved, so that the
    # first images of trainaug (sorted, as mmseg's voc_aug.py writes it)
    # hold both kinds
    ids = (f'2007_{i:06d}' for i in range(num_train + num_aug + num_val))
    train, aug = [], []
    for i in range(max(num_train, num_aug)):
        if i < num_train:
            train.append(next(ids))
        if i < num_aug:
            aug.append(next(ids))
    val = list(ids)
    return dict(
        train=train, aug=aug, val=val, trainval=sorted(train + val),
        trainaug=sorted(train + aug))


def render_image(demo, seed: int, index: int, size: int) -> dict:
    """One non-square VOC-style sample.

    Args:
        demo: The demo generator module.
        seed (int): Seed.
        index (int): Image index (even: landscape, odd: portrait).
        size (int): The long side.

    Returns:
        dict: ``image`` (H, W, 3) uint8 RGB, ``label`` (H, W) uint8 with
        VOC ids and the 255 band, ``objects`` (``name``, 0-based inclusive
        ``bbox``) of the objects visible in the crop.
    """
    short = size * 3 // 4
    for attempt in range(8):
        sample = demo.render_sample(seed, index + 100000 * attempt, size)
        # crop the middle band: rows for landscape, columns for portrait
        start = (size - short) // 2
        if index % 2 == 0:
            crop = (slice(start, start + short), slice(None))
        else:
            crop = (slice(None), slice(start, start + short))
        label = sample['label'][crop].copy()
        objects = []
        for obj in sample['objects']:
            voc_id = 1 + 4 * (obj['label'] - 1) + index % 4
            visible = obj['mask'][crop] & (label == obj['label'])
            label[visible] = voc_id
            if not visible.any():
                continue
            ys, xs = np.nonzero(visible)
            objects.append(
                dict(
                    name=VOC_CLASSES[voc_id],
                    bbox=(int(xs.min()), int(ys.min()), int(xs.max()),
                          int(ys.max()))))
        if objects:
            return dict(
                image=np.ascontiguousarray(sample['image'][crop]),
                label=label,
                objects=objects)
    raise RuntimeError(f'image {index}: no object left in the crop')


def _xml(demo, image_id: str, shape, objects) -> str:
    """VOC XML with the real width and height (the demo's is square)."""
    root = ET.fromstring(demo.voc_xml(image_id, 0, objects))
    root.find('folder').text = 'VOC2012'
    root.find('size/width').text = str(shape[1])
    root.find('size/height').text = str(shape[0])
    root.find('source/database').text = 'mmaff miniature VOC'
    ET.indent(root)
    return ET.tostring(root, encoding='unicode') + '\n'


def generate(out_dir: str,
             seed: int = 0,
             num_train: int = 6,
             num_aug: int = 4,
             num_val: int = 4,
             size: int = 64) -> dict:
    """Write (or complete) the miniature VOC tree; idempotent and atomic.

    Args:
        out_dir (str): The ``VOC2012`` folder to write.
        seed (int): Seed. Defaults to 0.
        num_train (int): VOC train images. Defaults to 6.
        num_aug (int): SBD-only images. Defaults to 4.
        num_val (int): VOC val images. Defaults to 4.
        size (int): Long side (>= 64). Defaults to 64.

    Returns:
        dict: ``out_dir``, ``splits`` (id lists) and ``written`` (files).
    """
    demo = _demo_tool()
    for name, value in (('num_train', num_train), ('num_aug', num_aug),
                        ('num_val', num_val)):
        if int(value) < 1:
            raise ValueError(f'{name} must be >= 1, got {value}')
    meta = dict(
        generator='mmaff tools/dataset_converters/make_mini_voc.py',
        version=VERSION, seed=seed, num_train=num_train, num_aug=num_aug,
        num_val=num_val, size=size)
    meta_path = osp.join(out_dir, 'mini_voc.json')
    if osp.isfile(meta_path):
        with open(meta_path, encoding='utf-8') as f:
            old = json.load(f)
        if old != meta:
            raise ValueError(f'{out_dir} holds a miniature VOC made with '
                             f'other settings ({old}); remove it or choose '
                             'another folder')
    elif osp.isdir(osp.join(out_dir, 'JPEGImages')) and os.listdir(
            osp.join(out_dir, 'JPEGImages')):
        raise ValueError(f'{out_dir} already holds images but no '
                         'mini_voc.json: refusing to write into it (a real '
                         'VOC copy?)')
    demo.remove_leftovers(out_dir)
    splits = split_ids(num_train, num_aug, num_val)
    written = 0

    def _text(path, text):
        nonlocal written
        if not osp.isfile(path):
            os.makedirs(osp.dirname(path), exist_ok=True)
            demo._write_text(path, text)
            written += 1

    _text(meta_path, json.dumps(meta, indent=2, sort_keys=True) + '\n')
    for name, ids in splits.items():
        _text(
            osp.join(out_dir, 'ImageSets', 'Segmentation', f'{name}.txt'),
            ''.join(f'{i}\n' for i in ids))
    with_voc_mask = set(splits['trainval'])
    for index, image_id in enumerate(splits['trainval'] + splits['aug']):
        files = dict(
            jpg=osp.join(out_dir, 'JPEGImages', f'{image_id}.jpg'),
            xml=osp.join(out_dir, 'Annotations', f'{image_id}.xml'),
            aug=osp.join(out_dir, 'SegmentationClassAug', f'{image_id}.png'))
        if image_id in with_voc_mask:
            files['png'] = osp.join(out_dir, 'SegmentationClass',
                                    f'{image_id}.png')
        if all(osp.isfile(p) for p in files.values()):
            continue
        sample = render_image(demo, seed, index, size)
        for key, path in files.items():
            if osp.isfile(path):
                continue
            os.makedirs(osp.dirname(path), exist_ok=True)
            if key == 'jpg':
                demo._write_jpeg(path, sample['image'])
            elif key == 'xml':
                demo._write_text(
                    path,
                    _xml(demo, image_id, sample['label'].shape,
                         sample['objects']))
            else:
                save_label_png(path, sample['label'])
            written += 1
    print(f'{out_dir}: wrote {written} files')
    return dict(out_dir=out_dir, splits=splits, written=written)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Generate a miniature VOC 2012 + SBD tree (voc_aug '
        'layout) on which the VOC configs run unchanged.')
    parser.add_argument('out_dir', help='the VOC2012 folder to write')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--num-train', type=int, default=6)
    parser.add_argument(
        '--num-aug', type=int, default=4, help='SBD-only train_aug images')
    parser.add_argument('--num-val', type=int, default=4)
    parser.add_argument('--size', type=int, default=64, help='long side')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    return generate(args.out_dir, args.seed, args.num_train, args.num_aug,
                    args.num_val, args.size)


if __name__ == '__main__':
    main()
