# Copyright (c) mmaff contributors. All rights reserved.
"""Shared test fixture: a tiny PASCAL VOC 2012-layout dataset in a tmp dir.

Use it by naming ``tiny_voc`` as a test argument. It writes (function scope,
so each test gets a fresh copy it may modify)::

    <root>/JPEGImages/<id>.jpg              random RGB, H x W = 40 x 56
    <root>/SegmentationClass/<id>.png       P-mode VOC label ids, VOC
                                            palette, 255 bands around objects
    <root>/SegmentationClassAug/<id>.png    byte-identical copies
    <root>/Annotations/<id>.xml             VOC XML, one <object> per object
    <root>/ImageSets/Segmentation/{train,val,trainaug}.txt

and returns a :class:`TinyVOC` with the root, the ids, the splits and the
image-level label ids (VOC ids 1..20, sorted) of every image. The labels are
consistent across the three sources (XML, mask, truth): every object is
drawn in the mask as a rectangle of its class inside a 255 band.

Special cases built in (documented so that other tests can rely on them):

* ``img_002`` has two objects of the same class (person twice).
* ``img_003`` has an object marked ``<difficult>1</difficult>`` whose class
  (bottle) appears only through that object.
* ``img_005`` (in ``val``) has no foreground object: empty image labels, a
  mask of background and 255 only, an XML without ``<object>``.
* ``train`` = ``trainaug`` = the first four ids, ``val`` = the last two.
"""
import os
import os.path as osp
import shutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import numpy as np
import pytest
from PIL import Image

from mmaff_testing import run_tool_process

from mmaff.utils.io import save_label_png

#: VOC class names, index = label id (same as mmseg's PascalVOCDataset).
VOC_CLASSES = ('background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle',
               'bus', 'car', 'cat', 'chair', 'cow', 'diningtable', 'dog',
               'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa',
               'train', 'tvmonitor')

# Objects of each image: (label id, difficult flag); drawn left to right.
_OBJECTS: Tuple[Tuple[Tuple[int, int], ...], ...] = (
    ((15, 0), ),  # person
    ((1, 0), (12, 0)),  # aeroplane, dog
    ((15, 0), (8, 0), (15, 0)),  # person, cat, person again
    ((20, 0), (5, 1)),  # tvmonitor, bottle (difficult)
    ((3, 0), (7, 0)),  # bird, car
    (),  # nothing but background
)
_HEIGHT, _WIDTH = 40, 56


@dataclass
class TinyVOC:
    """What the ``tiny_voc`` fixture wrote.

    Attributes:
        root (str): Dataset root (VOC 2012 layout).
        ids (list[str]): All image ids, in order.
        splits (dict[str, list[str]]): ``train``, ``val``, ``trainaug`` ids.
        labels (dict[str, tuple[int, ...]]): Image id -> sorted unique VOC
            label ids (1..20) of its objects; ``()`` for no object.
        img_shape (tuple[int, int]): (H, W) of every image.
        classes (tuple[str, ...]): The 21 VOC class names.
        masks (dict[str, np.ndarray]): Image id -> the (H, W) uint8 mask.
    """
    root: str
    ids: List[str]
    splits: Dict[str, List[str]]
    labels: Dict[str, Tuple[int, ...]]
    img_shape: Tuple[int, int] = (_HEIGHT, _WIDTH)
    classes: Tuple[str, ...] = VOC_CLASSES
    masks: Dict[str, np.ndarray] = field(default_factory=dict)

    def path(self, *parts: str) -> str:
        """A path under the dataset root."""
        return osp.join(self.root, *parts)


def _object_boxes(num: int) -> List[Tuple[int, int, int, int]]:
    """(x0, y0, x1, y1) inclusive boxes of ``num`` objects, left to right."""
    boxes = []
    slot = _WIDTH // max(num, 1)
    for k in range(num):
        x0, x1 = k * slot + 2, (k + 1) * slot - 3
        y0, y1 = 4 + 3 * k, _HEIGHT - 5 - 2 * k
        boxes.append((x0, y0, x1, y1))
    return boxes


def _voc_xml(img_id: str, objects, boxes) -> str:
    root = ET.Element('annotation')
    ET.SubElement(root, 'folder').text = 'VOC2012'
    ET.SubElement(root, 'filename').text = f'{img_id}.jpg'
    size = ET.SubElement(root, 'size')
    ET.SubElement(size, 'width').text = str(_WIDTH)
    ET.SubElement(size, 'height').text = str(_HEIGHT)
    ET.SubElement(size, 'depth').text = '3'
    ET.SubElement(root, 'segmented').text = '1'
    for (label, difficult), (x0, y0, x1, y1) in zip(objects, boxes):
        obj = ET.SubElement(root, 'object')
        ET.SubElement(obj, 'name').text = VOC_CLASSES[label]
        ET.SubElement(obj, 'pose').text = 'Unspecified'
        ET.SubElement(obj, 'truncated').text = '0'
        ET.SubElement(obj, 'difficult').text = str(difficult)
        box = ET.SubElement(obj, 'bndbox')
        for key, value in zip(('xmin', 'ymin', 'xmax', 'ymax'),
                              (x0, y0, x1, y1)):
            ET.SubElement(box, key).text = str(value + 1)
    return ET.tostring(root, encoding='unicode') + '\n'


def make_tiny_voc(root: str, seed: int = 0) -> TinyVOC:
    """Write the tiny VOC-layout dataset under ``root`` (see module doc).

    Args:
        root (str): Dataset root to create.
        seed (int): Seed of the random images. Defaults to 0.

    Returns:
        TinyVOC: What was written.
    """
    rng = np.random.default_rng(seed)
    ids = [f'img_{i:03d}' for i in range(len(_OBJECTS))]
    for sub in ('JPEGImages', 'SegmentationClass', 'SegmentationClassAug',
                'Annotations', osp.join('ImageSets', 'Segmentation')):
        os.makedirs(osp.join(root, sub), exist_ok=True)
    labels, masks = {}, {}
    for img_id, objects in zip(ids, _OBJECTS):
        image = rng.integers(0, 256, (_HEIGHT, _WIDTH, 3), dtype=np.uint8)
        Image.fromarray(image).save(
            osp.join(root, 'JPEGImages', f'{img_id}.jpg'), quality=90)
        mask = np.zeros((_HEIGHT, _WIDTH), np.uint8)
        boxes = _object_boxes(len(objects))
        for (label, _), (x0, y0, x1, y1) in zip(objects, boxes):
            mask[y0:y1 + 1, x0:x1 + 1] = 255  # the ignore band
            mask[y0 + 1:y1, x0 + 1:x1] = label
        mask_path = osp.join(root, 'SegmentationClass', f'{img_id}.png')
        save_label_png(mask_path, mask)
        shutil.copyfile(
            mask_path, osp.join(root, 'SegmentationClassAug', f'{img_id}.png'))
        with open(osp.join(root, 'Annotations', f'{img_id}.xml'), 'w') as f:
            f.write(_voc_xml(img_id, objects, boxes))
        labels[img_id] = tuple(sorted({label for label, _ in objects}))
        masks[img_id] = mask
    splits = dict(train=ids[:4], val=ids[4:], trainaug=ids[:4])
    for name, split_ids in splits.items():
        with open(
                osp.join(root, 'ImageSets', 'Segmentation', f'{name}.txt'),
                'w') as f:
            f.write(''.join(f'{i}\n' for i in split_ids))
    return TinyVOC(
        root=root, ids=ids, splits=splits, labels=labels, masks=masks)


@pytest.fixture
def tiny_voc(tmp_path) -> TinyVOC:
    """A fresh tiny VOC-layout dataset under ``tmp_path / 'voc'``."""
    return make_tiny_voc(str(tmp_path / 'voc'))


@pytest.fixture
def run_tool():
    """``run_tool(args, cwd, env=None)``: run a tool like a user would."""
    return run_tool_process
