# Copyright (c) mmaff contributors. All rights reserved.
"""LoadCAMs: an image's CAM file (written by ``save_cam_file``) into the
results, checked against the image, and on through PackSegInputs."""
import os.path as osp
import re

import numpy as np
import pytest
from mmcv.transforms import Compose
from mmengine.registry import DefaultScope

import mmaff  # noqa: F401  (environment fixes before mmseg)
import mmaff.datasets  # noqa: F401  (registers the transforms)
from mmaff.datasets.transforms import LoadCAMs
from mmaff.registry import DATASETS, TRANSFORMS
from mmaff.utils.io import save_cam_file

H, W = 5, 7


@pytest.fixture(autouse=True)
def mmaff_scope():
    with DefaultScope.overwrite_default_scope('mmaff'):
        yield


def _cams(k, h=H, w=W, seed=0):
    rng = np.random.default_rng(seed)
    cams = rng.random((k, h, w)).astype(np.float32)
    if k:
        cams[:, 0, 0] = 1.0  # normalised: each map peaks at 1
        cams[:, 0, 1] = 0.0
    return cams


def _results(img_id='img_001', labels=(3, 15), shape=(H, W)):
    return dict(
        img_path=f'/data/JPEGImages/{img_id}.jpg',
        ori_shape=shape,
        img_labels=labels)


def test_values_and_labels_come_back(tmp_path):
    cams = _cams(2)
    save_cam_file(str(tmp_path / 'img_001.npz'), cams, [3, 15])
    t = TRANSFORMS.build(dict(type='LoadCAMs', cam_dir=str(tmp_path)))
    assert isinstance(t, LoadCAMs)
    results = _results()
    out = t(results)
    assert out is results  # added in place, the other keys kept
    assert out['img_path'] == '/data/JPEGImages/img_001.jpg'
    assert out['cams'].dtype == np.float32
    assert out['cams'].shape == (2, H, W)
    # the file stores float16: the values come back rounded to it
    np.testing.assert_array_equal(out['cams'],
                                  cams.astype(np.float16).astype(np.float32))
    np.testing.assert_allclose(out['cams'], cams, atol=2**-11, rtol=0)
    assert out['cams'].max() == 1.0 and out['cams'].min() == 0.0
    assert out['cam_labels'] == (3, 15)
    assert all(type(c) is int for c in out['cam_labels'])


def test_channels_keep_their_labels_and_order_of_img_labels_is_free(
        tmp_path):
    # the file lists 15 before 3: each channel stays with its label
    cams = _cams(2, seed=1)
    save_cam_file(str(tmp_path / 'img_001.npz'), cams, [15, 3])
    out = LoadCAMs(str(tmp_path))(_results(labels=[3, 15]))
    assert out['cam_labels'] == (15, 3)
    np.testing.assert_allclose(out['cams'], cams, atol=2**-11, rtol=0)


def test_image_without_labels_has_no_cams(tmp_path):
    # an image with no foreground class: K = 0
    save_cam_file(str(tmp_path / 'img_005.npz'), np.zeros((0, H, W)), [])
    out = LoadCAMs(str(tmp_path))(_results('img_005', labels=()))
    assert out['cams'].shape == (0, H, W)
    assert out['cam_labels'] == ()


def test_suffix_and_image_id_from_the_path(tmp_path):
    cams = _cams(1)
    save_cam_file(str(tmp_path / '2007_000032.cam.npz'), cams, [1])
    t = LoadCAMs(str(tmp_path), suffix='.cam.npz')
    out = t(
        dict(
            img_path='/a/b.c/2007_000032.jpg',
            ori_shape=(H, W),
            img_labels=(1, )))
    assert out['cam_labels'] == (1, )
    np.testing.assert_allclose(out['cams'], cams, atol=2**-11, rtol=0)


def test_missing_file_names_the_image_and_the_path(tmp_path):
    t = LoadCAMs(str(tmp_path))
    path = osp.join(str(tmp_path), 'img_001.npz')
    with pytest.raises(FileNotFoundError) as err:
        t(_results())
    msg = str(err.value)
    assert 'img_001' in msg and path in msg
    assert '/data/JPEGImages/img_001.jpg' in msg


def test_wrong_size_or_classes_are_named(tmp_path):
    path = str(tmp_path / 'img_001.npz')
    save_cam_file(path, _cams(2), [3, 15])
    t = LoadCAMs(str(tmp_path))
    with pytest.raises(
            ValueError,
            match=re.escape(path) + r'.*\(5, 7\) does not match the image '
            r'size \(6, 7\)'):
        t(_results(shape=(6, 7)))
    # an image class without a CAM
    with pytest.raises(ValueError,
                       match=re.escape(path) + r'.*no CAM for .*\[7\]'):
        t(_results(labels=(3, 7, 15)))
    # a CAM of a class the image does not have
    with pytest.raises(ValueError,
                       match=re.escape(path) + r'.*classes \[15\] that are '
                       'absent'):
        t(_results(labels=(3, )))


def test_corrupt_file_is_named(tmp_path):
    path = tmp_path / 'img_001.npz'
    path.write_bytes(b'not a zip archive')
    with pytest.raises(ValueError, match=re.escape(str(path))):
        LoadCAMs(str(tmp_path))(_results())


@pytest.mark.parametrize('key', ['img_path', 'ori_shape', 'img_labels'])
def test_missing_required_keys(tmp_path, key):
    save_cam_file(str(tmp_path / 'img_001.npz'), _cams(2), [3, 15])
    results = _results()
    del results[key]
    with pytest.raises(KeyError, match=key):
        LoadCAMs(str(tmp_path))(results)


def test_needs_a_cam_dir_and_repr():
    for bad in ('', None, 3):
        with pytest.raises(ValueError, match='cam_dir'):
            LoadCAMs(bad)
    assert repr(LoadCAMs('/x/cams')) == \
        "LoadCAMs(cam_dir='/x/cams', suffix='.npz')"
    assert repr(LoadCAMs('c', suffix='.cam.npz')) == \
        "LoadCAMs(cam_dir='c', suffix='.cam.npz')"


def test_pipeline_carries_cams_in_the_metainfo(tiny_voc, tmp_path):
    cam_dir = str(tmp_path / 'cams')
    h, w = tiny_voc.img_shape
    written = {}
    for k, img_id in enumerate(tiny_voc.ids):
        labels = tiny_voc.labels[img_id]
        cams = _cams(len(labels), h, w, seed=k)
        save_cam_file(osp.join(cam_dir, img_id + '.npz'), cams, labels)
        written[img_id] = cams
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations'),
        dict(type='LoadCAMs', cam_dir=cam_dir),
        dict(
            type='PackSegInputs',
            meta_keys=('img_path', 'seg_map_path', 'ori_shape', 'img_shape',
                       'img_labels', 'cams', 'cam_labels'))
    ]
    dataset = DATASETS.build(
        dict(
            type='VOCImageLabelDataset',
            data_root=tiny_voc.root,
            data_prefix=dict(
                img_path='JPEGImages', seg_map_path='SegmentationClassAug'),
            ann_file='ImageSets/Segmentation/val.txt',
            label_source='xml',
            pipeline=pipeline))
    assert len(dataset) == 2  # img_004 (bird, car), img_005 (nothing)
    for k, img_id in enumerate(tiny_voc.splits['val']):
        sample = dataset[k]['data_samples']
        meta = sample.metainfo
        assert meta['cam_labels'] == tiny_voc.labels[img_id]
        assert meta['cams'].shape == (len(tiny_voc.labels[img_id]), h, w)
        np.testing.assert_allclose(
            meta['cams'], written[img_id], atol=2**-11, rtol=0)
    # the same through a bare Compose of the registered transforms
    results = Compose([TRANSFORMS.build(t) for t in pipeline])(
        dict(
            img_path=tiny_voc.path('JPEGImages', 'img_001.jpg'),
            seg_map_path=tiny_voc.path('SegmentationClassAug', 'img_001.png'),
            img_labels=tiny_voc.labels['img_001'],
            reduce_zero_label=False,
            seg_fields=[]))
    meta = results['data_samples'].metainfo
    assert meta['cam_labels'] == (1, 12)
    np.testing.assert_allclose(
        meta['cams'], written['img_001'], atol=2**-11, rtol=0)
