# Copyright (c) mmaff contributors. All rights reserved.
import os
import os.path as osp
import re

import numpy as np
import pytest
from mmengine.registry import DefaultScope

import mmaff  # noqa: F401  (environment fixes before mmseg.models)
import mmaff.datasets  # noqa: F401  (registers the dataset)
from mmaff.datasets import VOCImageLabelDataset
from mmaff.registry import DATASETS


@pytest.fixture(autouse=True)
def mmaff_scope():
    with DefaultScope.overwrite_default_scope('mmaff'):
        yield


def _cfg(tiny_voc, split='train', **kwargs):
    cfg = dict(
        type='VOCImageLabelDataset',
        data_root=tiny_voc.root,
        data_prefix=dict(
            img_path='JPEGImages', seg_map_path='SegmentationClassAug'),
        ann_file=f'ImageSets/Segmentation/{split}.txt',
        pipeline=[])
    cfg.update(kwargs)
    return cfg


def _write_label_file(tiny_voc, name='labels.txt', ids=None, classes=None):
    """A label file written from the fixture's truth (by hand)."""
    classes = classes or tiny_voc.classes
    lines = []
    for i in ids or tiny_voc.ids:
        names = [tiny_voc.classes[c] for c in tiny_voc.labels[i]]
        lines.append(' '.join([i] + names))
    with open(tiny_voc.path(name), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return name


@pytest.mark.parametrize('source', ['xml', 'mask', 'file'])
@pytest.mark.parametrize('split', ['train', 'val'])
def test_build_with_each_label_source(tiny_voc, source, split):
    extra = dict(label_source=source)
    if source == 'file':
        extra['label_file'] = _write_label_file(tiny_voc)
    dataset = DATASETS.build(_cfg(tiny_voc, split, **extra))
    assert isinstance(dataset, VOCImageLabelDataset)
    ids = tiny_voc.splits[split]
    assert len(dataset) == len(ids)
    for k, img_id in enumerate(ids):
        info = dataset.get_data_info(k)
        assert info['img_id'] == img_id
        assert info['img_labels'] == tiny_voc.labels[img_id]
        assert isinstance(info['img_labels'], tuple)
        assert info['img_path'] == tiny_voc.path('JPEGImages', f'{img_id}.jpg')
        assert info['seg_map_path'] == tiny_voc.path('SegmentationClassAug',
                                                     f'{img_id}.png')


def test_default_source_is_xml(tiny_voc):
    # without masks at all: labels come from the XML files
    cfg = _cfg(tiny_voc, data_prefix=dict(img_path='JPEGImages'))
    dataset = DATASETS.build(cfg)
    assert dataset.label_source == 'xml'
    assert [
        dataset.get_data_info(k)['img_labels'] for k in range(len(dataset))
    ] == [tiny_voc.labels[i] for i in tiny_voc.splits['train']]


def test_pipeline_carries_img_labels(tiny_voc):
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations'),
        dict(
            type='PackSegInputs',
            meta_keys=('img_path', 'seg_map_path', 'ori_shape', 'img_shape',
                       'img_id', 'img_labels'))
    ]
    dataset = DATASETS.build(
        _cfg(tiny_voc, 'trainaug', label_source='xml', pipeline=pipeline))
    h, w = tiny_voc.img_shape
    for k, img_id in enumerate(tiny_voc.splits['trainaug']):
        out = dataset[k]
        sample = out['data_samples']
        assert out['inputs'].shape == (3, h, w)
        assert sample.metainfo['img_labels'] == tiny_voc.labels[img_id]
        assert sample.metainfo['img_id'] == img_id
        assert tuple(sample.metainfo['ori_shape']) == (h, w)
        np.testing.assert_array_equal(sample.gt_sem_seg.data[0].numpy(),
                                      tiny_voc.masks[img_id])


def test_missing_image(tiny_voc):
    missing = tiny_voc.path('JPEGImages', 'img_002.jpg')
    os.remove(missing)
    with pytest.raises(FileNotFoundError, match=re.escape(missing)):
        DATASETS.build(_cfg(tiny_voc))


def test_empty_and_missing_split_file(tiny_voc):
    split = tiny_voc.path('ImageSets', 'Segmentation', 'empty.txt')
    open(split, 'w').close()
    with pytest.raises(ValueError, match=re.escape(split)):
        DATASETS.build(_cfg(tiny_voc, 'empty'))
    with pytest.raises(FileNotFoundError, match='nosuch.txt'):
        DATASETS.build(_cfg(tiny_voc, 'nosuch'))


def test_split_listing_an_image_twice_is_refused(tiny_voc):
    # the image would be scored (and trained on) twice
    split = tiny_voc.path('ImageSets', 'Segmentation', 'dup.txt')
    with open(split, 'w') as f:
        f.write('img_000\nimg_001\nimg_000\n')
    with pytest.raises(ValueError, match=r'dup\.txt.*more than once.*img_000'):
        DATASETS.build(_cfg(tiny_voc, 'dup'))


def test_label_source_errors(tiny_voc):
    with pytest.raises(ValueError, match='label_source'):
        DATASETS.build(_cfg(tiny_voc, label_source='json'))
    with pytest.raises(ValueError, match='label_file'):
        DATASETS.build(_cfg(tiny_voc, label_source='file'))
    # mask source without masks
    with pytest.raises(ValueError, match='seg_map_path'):
        DATASETS.build(
            _cfg(
                tiny_voc,
                label_source='mask',
                data_prefix=dict(img_path='JPEGImages')))
    # a label file that lacks an image of the split
    name = _write_label_file(tiny_voc, 'short.txt', ids=['img_000'])
    with pytest.raises(KeyError, match='img_001.*short.txt'):
        DATASETS.build(_cfg(tiny_voc, label_source='file', label_file=name))
    # a bad XML file is named
    xml = tiny_voc.path('Annotations', 'img_003.xml')
    with open(xml, 'w') as f:
        f.write('<annotation><object>')
    with pytest.raises(ValueError, match=re.escape(xml)):
        DATASETS.build(_cfg(tiny_voc))


@pytest.mark.parametrize('suffix', [None, '.npz'])
def test_skip_done(tiny_voc, tmp_path, suffix):
    out_dir = tmp_path / 'out'
    out_dir.mkdir()
    done = ['img_000', 'img_002']
    ext = suffix or '.png'
    for i in done:
        (out_dir / f'{i}{ext}').write_bytes(b'x')
    (out_dir / f'img_001{".png" if ext == ".npz" else ".npz"}'
     ).write_bytes(b'other suffix: not done')
    skip = dict(dir=str(out_dir))
    if suffix:
        skip['suffix'] = suffix
    dataset = DATASETS.build(_cfg(tiny_voc, skip_done=skip))
    ids = [dataset.get_data_info(k)['img_id'] for k in range(len(dataset))]
    assert ids == ['img_001', 'img_003']
    assert [
        dataset.get_data_info(k)['img_labels'] for k in range(len(dataset))
    ] == [tiny_voc.labels['img_001'], tiny_voc.labels['img_003']]
    # everything done: a clear error instead of an empty dataset
    for i in tiny_voc.splits['train']:
        (out_dir / f'{i}{ext}').write_bytes(b'x')
    with pytest.raises(ValueError, match='nothing left to do'):
        DATASETS.build(_cfg(tiny_voc, skip_done=skip))


# A reordered subset of VOC's names covering every object of the fixture.
_CUSTOM = ('background', 'tvmonitor', 'person', 'dog', 'cat', 'bottle',
           'aeroplane', 'car', 'bird')


def _custom_ids(tiny_voc, img_id):
    names = [tiny_voc.classes[c] for c in tiny_voc.labels[img_id]]
    return tuple(sorted(_CUSTOM.index(n) for n in names))


@pytest.mark.parametrize('source', ['xml', 'file'])
def test_custom_classes_by_name(tiny_voc, source):
    """XML and label-file names map to the ids of the custom classes."""
    extra = dict(label_source=source, metainfo=dict(classes=_CUSTOM))
    if source == 'file':
        extra['label_file'] = _write_label_file(tiny_voc)
    dataset = DATASETS.build(_cfg(tiny_voc, 'trainaug', **extra))
    assert tuple(dataset.metainfo['classes']) == _CUSTOM
    got = [dataset.get_data_info(k)['img_labels'] for k in range(len(dataset))]
    assert got == [
        _custom_ids(tiny_voc, i) for i in tiny_voc.splits['trainaug']
    ]
    assert got[1] == (3, 6)  # img_001: dog, aeroplane in the new order


def test_custom_classes_mask_ids_are_not_remapped(tiny_voc):
    """Custom classes name the mask ids in order: masks are used as they
    are, and the image labels are the classes of the loaded ground truth."""
    classes = ('background', ) + tuple(f'c{i}' for i in range(1, 21))
    pipeline = [dict(type='LoadAnnotations'), dict(type='PackSegInputs')]
    dataset = DATASETS.build(
        _cfg(
            tiny_voc,
            'trainaug',
            label_source='mask',
            metainfo=dict(classes=classes),
            pipeline=pipeline))
    assert tuple(dataset.metainfo['classes']) == classes
    assert len(dataset.metainfo['palette']) == len(classes)
    for k, img_id in enumerate(tiny_voc.splits['trainaug']):
        labels = dataset.get_data_info(k)['img_labels']
        assert labels == tiny_voc.labels[img_id]
        gt = dataset[k]['data_samples'].gt_sem_seg.data[0].numpy()
        np.testing.assert_array_equal(gt, tiny_voc.masks[img_id])
        present = set(np.unique(gt).tolist()) - {0, 255}
        assert labels == tuple(sorted(present))


def test_custom_classes_mask_out_of_range(tiny_voc):
    """Fewer custom classes than the mask ids: the mask is named."""
    with pytest.raises(ValueError, match=r'img_000.png.*\[15\]'):
        DATASETS.build(
            _cfg(
                tiny_voc, label_source='mask', metainfo=dict(classes=_CUSTOM)))


def test_custom_classes_outside_voc_with_label_file(tiny_voc):
    """Classes unrelated to VOC's (like the demo dataset's) from a file."""
    classes = ('background', 'thing', 'stuff')
    with open(tiny_voc.path('own.txt'), 'w') as f:
        f.write('img_000 thing\nimg_001 stuff thing\nimg_002\n'
                'img_003 stuff\n')
    dataset = DATASETS.build(
        _cfg(
            tiny_voc,
            label_source='file',
            label_file='own.txt',
            metainfo=dict(classes=classes)))
    assert [
        dataset.get_data_info(k)['img_labels'] for k in range(len(dataset))
    ] == [(1, ), (1, 2), (), (2, )]
    assert osp.isfile(dataset.get_data_info(0)['img_path'])


def test_skip_done_tells_the_metrics_what_was_left_out(tiny_voc, tmp_path):
    from mmaff.evaluation.metrics import CAMMetric
    out_dir = tmp_path / 'out'
    out_dir.mkdir()
    (out_dir / 'img_001.npz').write_bytes(b'x')
    skip = dict(dir=str(out_dir), suffix='.npz')
    dataset = DATASETS.build(_cfg(tiny_voc, skip_done=skip))
    assert len(dataset) == 3
    assert dataset.metainfo['skip_done'] == dict(
        dir=str(out_dir), split_size=4, skipped=1)
    # nothing skipped: nothing to tell
    meta = DATASETS.build(_cfg(tiny_voc)).metainfo
    assert 'skip_done' not in meta
    # a metric fed the dataset's metainfo (as mmengine's loops do) says so
    metric = CAMMetric(bg_thresholds=[0.5])
    metric.dataset_meta = dataset.metainfo
    import torch
    for k in range(len(dataset)):
        mask = tiny_voc.masks[dataset.get_data_info(k)['img_id']]
        metric.process({}, [
            dict(
                pred_cams=dict(data=torch.zeros(20, *mask.shape)),
                gt_sem_seg=dict(data=torch.from_numpy(mask)[None]))
        ])
    res = metric.evaluate(len(dataset))
    assert res['num_images'] == 3 and res['subset_of'] == 4


def test_holdout_file_marks_the_held_out_images(tiny_voc):
    """``holdout_file`` (relative to data_root) marks its images, and the
    mark reaches the metrics through PackSegInputs' meta_keys."""
    with open(tiny_voc.path('ImageSets/Segmentation/hold.txt'), 'w') as f:
        f.write(f'{tiny_voc.ids[1]}\n{tiny_voc.ids[5]}\n')  # 5: not in train
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='PackSegInputs', meta_keys=('img_path', 'holdout'))
    ]
    dataset = DATASETS.build(
        _cfg(tiny_voc, holdout_file='ImageSets/Segmentation/hold.txt',
             pipeline=pipeline))
    marks = [dataset[k]['data_samples'].holdout for k in range(len(dataset))]
    assert marks == [i == tiny_voc.ids[1] for i in tiny_voc.splits['train']]
    plain = DATASETS.build(_cfg(tiny_voc))
    assert not any(info['holdout'] for info in plain.data_list)
    with pytest.raises(FileNotFoundError, match='nope.txt'):
        DATASETS.build(_cfg(tiny_voc, holdout_file='nope.txt'))
