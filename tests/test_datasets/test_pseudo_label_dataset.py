# Copyright (c) mmaff contributors. All rights reserved.
import os
import re

import numpy as np
import pytest
from PIL import Image

import mmaff  # noqa: F401
from mmaff.registry import DATASETS
from mmaff.utils import register_all_modules
from mmaff.utils.io import save_label_png

register_all_modules()


def _cfg(tiny_voc, label_dir, pipeline=()):
    return dict(
        type='PseudoLabelDataset',
        data_root=tiny_voc.root,
        data_prefix=dict(img_path='JPEGImages'),
        label_dir=str(label_dir),
        ann_file='ImageSets/Segmentation/train.txt',
        pipeline=list(pipeline))


def test_pseudo_labels_feed_the_pipeline(tiny_voc, tmp_path, monkeypatch):
    # label_dir is relative to the working directory, not to data_root
    monkeypatch.chdir(tmp_path)
    os.makedirs('gen')
    rng = np.random.default_rng(0)
    maps = {}
    for i in tiny_voc.splits['train']:
        maps[i] = rng.choice([0, 3, 255], size=tiny_voc.img_shape)
        save_label_png(f'gen/{i}.png', maps[i])
    ds = DATASETS.build(
        _cfg(tiny_voc, 'gen', [
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations'),
            dict(type='PackSegInputs')
        ]))
    assert len(ds) == len(tiny_voc.splits['train'])
    for k, i in enumerate(tiny_voc.splits['train']):
        sample = ds[k]['data_samples']
        assert sample.img_path.endswith(f'{i}.jpg')
        np.testing.assert_array_equal(sample.gt_sem_seg.data[0].numpy(),
                                      maps[i])


def test_missing_label_map_is_named_before_training(tiny_voc, tmp_path):
    first, *rest = tiny_voc.splits['train']
    for i in rest:
        save_label_png(str(tmp_path / f'{i}.png'),
                       np.zeros(tiny_voc.img_shape, np.uint8))
    with pytest.raises(FileNotFoundError, match=f'{first}.png'):
        DATASETS.build(_cfg(tiny_voc, tmp_path))


# ---------------------------------------- label maps checked when loaded

_LOAD = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
# The stage-3 training pipeline of the configs (crop larger than the image).
_AFF = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomCrop', crop_size=(32, 32)),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]


def _write_maps(tiny_voc, folder, value=0):
    for i in tiny_voc.splits['train']:
        save_label_png(
            str(folder / f'{i}.png'),
            np.full(tiny_voc.img_shape, value, np.uint8))


def _bad_map(tiny_voc, folder, kind):
    """Replace the second image's map with a bad one; return its path."""
    path = str(folder / f"{tiny_voc.splits['train'][1]}.png")
    h, w = tiny_voc.img_shape
    if kind == 'larger':
        save_label_png(path, np.zeros((h + 8, w + 8), np.uint8))
    elif kind == 'smaller':
        save_label_png(path, np.zeros((h // 2, w // 2), np.uint8))
    elif kind == 'transposed':
        save_label_png(path, np.zeros((w, h), np.uint8))
    elif kind == 'rgb':  # a colour rendering of the labels
        Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(path)
    elif kind == 'rgba':
        Image.fromarray(np.zeros((h, w, 4), np.uint8)).save(path)
    elif kind == '16bit':  # 256 would be read as 0 (background)
        Image.fromarray(np.full((h, w), 256, np.uint16)).save(path)
    elif kind == 'value':
        label = np.zeros((h, w), np.uint8)
        label[3, 4] = 21  # VOC has 0..20
        save_label_png(path, label)
    return path


@pytest.mark.parametrize('pipeline', [_LOAD, _AFF], ids=['load', 'aff'])
@pytest.mark.parametrize(
    'kind',
    ['larger', 'smaller', 'transposed', 'rgb', 'rgba', '16bit', 'value'])
def test_bad_label_map_is_named_when_loaded(tiny_voc, tmp_path, kind,
                                            pipeline):
    _write_maps(tiny_voc, tmp_path)
    path = _bad_map(tiny_voc, tmp_path, kind)
    ds = DATASETS.build(_cfg(tiny_voc, tmp_path, pipeline))
    ds[0]  # the good maps load
    with pytest.raises(ValueError, match=re.escape(path)):
        ds[1]


def test_label_map_check_messages(tiny_voc, tmp_path):
    _write_maps(tiny_voc, tmp_path)
    ds = DATASETS.build(_cfg(tiny_voc, tmp_path, _LOAD))
    h, w = tiny_voc.img_shape
    for kind, words in (('larger', rf'\({h + 8}, {w + 8}\).*\({h}, {w}\)'),
                        ('rgb', 'mode RGB'), ('value', r'\[21\].*0\.\.20')):
        _bad_map(tiny_voc, tmp_path, kind)
        with pytest.raises(ValueError, match=words):
            ds[1]


def test_valid_label_maps_pass(tiny_voc, tmp_path):
    # 'L' mode maps, the last class id and 255 are fine
    h, w = tiny_voc.img_shape
    label = np.zeros((h, w), np.uint8)
    label[0, :3] = 20
    label[1] = 255
    for i in tiny_voc.splits['train']:
        Image.fromarray(label, mode='L').save(str(tmp_path / f'{i}.png'))
    ds = DATASETS.build(_cfg(tiny_voc, tmp_path, _LOAD))
    for k in range(len(ds)):
        np.testing.assert_array_equal(
            ds[k]['data_samples'].gt_sem_seg.data[0].numpy(), label)


def test_custom_classes_bound_the_label_values(tiny_voc, tmp_path):
    _write_maps(tiny_voc, tmp_path, value=2)
    cfg = _cfg(tiny_voc, tmp_path, _LOAD)
    cfg['metainfo'] = dict(classes=('background', 'thing', 'stuff'))
    DATASETS.build(cfg)[0]
    cfg['metainfo'] = dict(classes=('background', 'thing'))
    with pytest.raises(ValueError, match=r'\[2\].*0\.\.1'):
        DATASETS.build(cfg)[0]


def test_label_check_sits_after_each_annotation_loader(tiny_voc, tmp_path):
    from mmaff.datasets.transforms import CheckLabelMap
    _write_maps(tiny_voc, tmp_path)
    ds = DATASETS.build(_cfg(tiny_voc, tmp_path, _AFF))
    names = [type(t).__name__ for t in ds.pipeline.transforms]
    assert names == [
        'LoadImageFromFile', 'LoadAnnotations', 'CheckLabelMap', 'RandomCrop',
        'RandomFlip', 'PackSegInputs'
    ]
    check = ds.pipeline.transforms[2]
    assert check.num_classes == 21 and check.ignore_index == 255
    # one given in the config is not doubled
    pipeline = list(_LOAD)
    pipeline.insert(2, dict(type='CheckLabelMap', num_classes=21))
    ds = DATASETS.build(_cfg(tiny_voc, tmp_path, pipeline))
    assert sum(isinstance(t, CheckLabelMap)
               for t in ds.pipeline.transforms) == 1
    # no annotations loaded, nothing to check
    ds = DATASETS.build(
        _cfg(tiny_voc, tmp_path, [dict(type='LoadImageFromFile')]))
    assert [type(t).__name__
            for t in ds.pipeline.transforms] == ['LoadImageFromFile']
