# Copyright (c) mmaff contributors. All rights reserved.
"""The miniature VOC 2012 + SBD tree that the config-run tests use."""
import importlib.util
import os
import os.path as osp
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from mmaff.datasets import labels_from_mask, labels_from_xml

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
spec = importlib.util.spec_from_file_location(
    'make_mini_voc',
    osp.join(REPO, 'tools', 'dataset_converters', 'make_mini_voc.py'))
mini = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mini)


@pytest.fixture(scope='module')
def tree(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('mini') / 'VOC2012')
    summary = mini.generate(root, num_train=5, num_aug=3, num_val=2)
    return root, summary


def _split(root, name):
    with open(osp.join(root, 'ImageSets', 'Segmentation', name)) as f:
        return f.read().split()


def test_splits_follow_voc_aug(tree):
    root, summary = tree
    train, aug = _split(root, 'train.txt'), _split(root, 'aug.txt')
    trainaug, val = _split(root, 'trainaug.txt'), _split(root, 'val.txt')
    assert len(train) == 5 and len(aug) == 3 and len(val) == 2
    assert trainaug == sorted(train + aug) and set(train) < set(trainaug)
    assert not set(val) & set(trainaug)
    assert _split(root, 'trainval.txt') == sorted(train + val)
    # SBD-only images sit among the first ones (a smoke run sees them)
    assert set(trainaug[:4]) & set(aug)
    # SBD-only images have no SegmentationClass mask, every image an Aug one
    voc = set(os.listdir(osp.join(root, 'SegmentationClass')))
    assert voc == {f'{i}.png' for i in train + val}
    assert set(os.listdir(osp.join(root, 'SegmentationClassAug'))) == {
        f'{i}.png'
        for i in train + aug + val
    }


def test_images_masks_and_xml_agree(tree):
    root, _ = tree
    shapes = set()
    for img_id in _split(root, 'trainaug.txt') + _split(root, 'val.txt'):
        img = Image.open(osp.join(root, 'JPEGImages', f'{img_id}.jpg'))
        mask = np.array(
            Image.open(osp.join(root, 'SegmentationClassAug',
                                f'{img_id}.png')))
        assert img.mode == 'RGB' and mask.shape == (img.height, img.width)
        shapes.add(mask.shape)
        xml = osp.join(root, 'Annotations', f'{img_id}.xml')
        size = ET.parse(xml).getroot().find('size')
        assert (int(size.find('height').text),
                int(size.find('width').text)) == mask.shape
        from_xml = labels_from_xml(xml, mini.VOC_CLASSES)
        mask_path = osp.join(root, 'SegmentationClassAug', f'{img_id}.png')
        assert from_xml and from_xml == labels_from_mask(
            mask_path, len(mini.VOC_CLASSES))
    # landscape and portrait, like VOC's 500 x 375 / 375 x 500
    assert shapes == {(48, 64), (64, 48)}


def test_rerun_writes_nothing_and_other_settings_are_refused(tree, tmp_path):
    root, _ = tree
    assert mini.generate(root, num_train=5, num_aug=3,
                         num_val=2)['written'] == 0
    with pytest.raises(ValueError, match='other settings'):
        mini.generate(root, num_train=6, num_aug=3, num_val=2)
    real = tmp_path / 'real'
    (real / 'JPEGImages').mkdir(parents=True)
    (real / 'JPEGImages' / 'x.jpg').write_bytes(b'')
    with pytest.raises(ValueError, match='refusing'):
        mini.generate(str(real))
