# Copyright (c) mmaff contributors. All rights reserved.
"""Write an image-level label file for a VOC-layout dataset.

Usage::

    python tools/dataset_converters/make_image_labels.py DATA_ROOT \\
        --split ImageSets/Segmentation/trainaug.txt --source {xml,mask} \\
        [--classes classes.txt] [--mask-dir SegmentationClassAug] \\
        [--xml-dir Annotations] -o labels.txt

For every image id of the split, the label ids come from the VOC XML
annotation (``--source xml``: every object, difficult ones included) or from
the segmentation mask (``--source mask``: the ids present other than 0 and
255). The output is the label file read by ``VOCImageLabelDataset`` with
``label_source='file'`` (format in :mod:`mmaff.datasets.image_labels`).

Paths of ``--split``, ``--classes``, ``--mask-dir`` and ``--xml-dir`` are
relative to ``DATA_ROOT`` unless absolute; ``-o`` is relative to the current
folder. Classes default to PASCAL VOC's 21 (background first); a classes
file lists one name a line, background first.
"""
import argparse
import os.path as osp
from typing import Dict, List, Optional, Sequence

from mmengine.utils import track_iter_progress

import mmaff  # noqa: F401  (environment fixes before mmseg is imported)
from mmaff.datasets.image_labels import (labels_from_mask, labels_from_xml,
                                         write_label_file)
from mmaff.utils.io import read_split


def default_classes() -> List[str]:
    """PASCAL VOC's 21 class names, background first."""
    from mmseg.datasets import PascalVOCDataset
    return list(PascalVOCDataset.METAINFO['classes'])


def read_classes(path: str) -> List[str]:
    """Read a classes file: one name a line, background first.

    Args:
        path (str): The classes file. Blank lines are skipped.

    Returns:
        list[str]: The class names.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'classes file not found: {path}')
    with open(path, encoding='utf-8') as f:
        names = [line.strip() for line in f if line.strip()]
    if len(names) < 2:
        raise ValueError(f'{path}: a classes file needs the background and '
                         f'at least one class, got {names}')
    bad = [n for n in names if len(n.split()) != 1]
    if bad:
        raise ValueError(f'{path}: class names must not contain whitespace '
                         f'(the label file separates names by it): {bad}')
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise ValueError(f'{path}: class names listed twice: {dups}')
    return names


def _under(root: str, path: str) -> str:
    return path if osp.isabs(path) else osp.join(root, path)


def make_image_labels(data_root: str,
                      split: str,
                      source: str,
                      out: str,
                      classes: Optional[Sequence[str]] = None,
                      mask_dir: str = 'SegmentationClassAug',
                      xml_dir: str = 'Annotations',
                      ignore_index: int = 255,
                      show_progress: bool = True) -> Dict[str, List[int]]:
    """Collect the image-level labels of a split and write the label file.

    Args:
        data_root (str): Dataset root.
        split (str): Split file, relative to ``data_root`` unless absolute.
        source (str): ``'xml'`` or ``'mask'``.
        out (str): Output label file.
        classes (Sequence[str], optional): Class names, background first.
            Defaults to PASCAL VOC's 21.
        mask_dir (str): Mask folder (``'mask'``), relative to ``data_root``
            unless absolute. Defaults to ``'SegmentationClassAug'``.
        xml_dir (str): XML folder (``'xml'``), relative to ``data_root``
            unless absolute. Defaults to ``'Annotations'``.
        ignore_index (int): Mask value to ignore. Defaults to 255.
        show_progress (bool): Show a progress bar. Defaults to True.

    Returns:
        dict[str, list[int]]: Image id -> sorted label ids, as written.
    """
    if source not in ('xml', 'mask'):
        raise ValueError(f"source must be 'xml' or 'mask', got {source!r}")
    if not osp.isdir(data_root):
        raise FileNotFoundError(f'data root not found: {data_root}')
    classes = list(classes) if classes is not None else default_classes()
    ids = read_split(_under(data_root, split))
    folder = _under(data_root, xml_dir if source == 'xml' else mask_dir)
    if not osp.isdir(folder):
        raise FileNotFoundError(f'{source} folder not found: {folder}')
    labels: Dict[str, List[int]] = {}
    iterator = track_iter_progress(ids) if show_progress else ids
    for img_id in iterator:
        if source == 'xml':
            labels[img_id] = labels_from_xml(
                osp.join(folder, img_id + '.xml'), classes)
        else:
            labels[img_id] = labels_from_mask(
                osp.join(folder, img_id + '.png'), len(classes), ignore_index)
    write_label_file(out, labels, classes)
    return labels


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Write the image-level label file of a VOC-layout '
        'dataset from XML annotations or segmentation masks.')
    parser.add_argument('data_root', help='dataset root')
    parser.add_argument(
        '--split',
        default='ImageSets/Segmentation/trainaug.txt',
        help='split file (one image id a line), relative to DATA_ROOT')
    parser.add_argument(
        '--source',
        choices=('xml', 'mask'),
        required=True,
        help='read the labels from the XML annotations (every object, '
        'difficult included) or from the segmentation masks')
    parser.add_argument(
        '--classes',
        default=None,
        help='classes file (one name a line, background first), relative to '
        "DATA_ROOT; defaults to PASCAL VOC's 21 classes")
    parser.add_argument(
        '--mask-dir',
        default='SegmentationClassAug',
        help='mask folder for --source mask, relative to DATA_ROOT')
    parser.add_argument(
        '--xml-dir',
        default='Annotations',
        help='XML folder for --source xml, relative to DATA_ROOT')
    parser.add_argument(
        '--ignore-index',
        type=int,
        default=255,
        help='mask value that is not a class')
    parser.add_argument('-o', '--out', required=True, help='output label file')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, List[int]]:
    args = parse_args(argv)
    classes = read_classes(_under(args.data_root, args.classes)) \
        if args.classes else None
    labels = make_image_labels(
        args.data_root,
        args.split,
        args.source,
        args.out,
        classes=classes,
        mask_dir=args.mask_dir,
        xml_dir=args.xml_dir,
        ignore_index=args.ignore_index)
    counts = sum(len(v) for v in labels.values())
    print(f'\nwrote {args.out}: {len(labels)} images, {counts} image labels '
          f'from {args.source}')
    return labels


if __name__ == '__main__':
    main()
