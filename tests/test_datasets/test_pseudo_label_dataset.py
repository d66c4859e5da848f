# Copyright (c) mmaff contributors. All rights reserved.
import os

import numpy as np
import pytest

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
