# Copyright (c) mmaff contributors. All rights reserved.
from collections import OrderedDict

import pytest
import torch
from mmengine.registry import DefaultScope

import mmaff  # noqa: F401  (environment fixes before mmseg.models)
import mmaff.registry as reg
from mmaff.utils import register_all_modules


@pytest.fixture
def fresh_scopes(monkeypatch):
    """An empty DefaultScope table, restored after the test."""
    monkeypatch.setattr(DefaultScope, '_instance_dict', OrderedDict())
    yield


@pytest.fixture
def mmaff_scope(fresh_scopes):
    register_all_modules(init_default_scope=True)
    yield


def _tiny_resnet():
    return dict(
        type='ResNetV1c',
        depth=18,
        stem_channels=8,
        base_channels=4,
        strides=(1, 2, 1, 1),
        dilations=(1, 1, 2, 4),
        out_indices=(3, ),
        norm_cfg=dict(type='BN', requires_grad=True))


def test_register_all_modules_sets_scope(fresh_scopes):
    assert DefaultScope.get_current_instance() is None
    register_all_modules(init_default_scope=False)
    assert DefaultScope.get_current_instance() is None
    register_all_modules()
    assert DefaultScope.get_current_instance().scope_name == 'mmaff'
    # another scope became current: register_all_modules takes it back
    DefaultScope.get_instance('other', scope_name='mmseg')
    assert DefaultScope.get_current_instance().scope_name == 'mmseg'
    with pytest.warns(UserWarning, match='mmaff'):
        register_all_modules()
    assert DefaultScope.get_current_instance().scope_name == 'mmaff'


def test_registries_are_children_of_mmsegs():
    import mmseg.registry as mmseg_reg
    for name in ('MODELS', 'DATASETS', 'TRANSFORMS', 'METRICS', 'HOOKS',
                 'RUNNERS', 'LOOPS', 'OPTIMIZERS', 'PARAM_SCHEDULERS',
                 'VISUALIZERS', 'EVALUATOR', 'DATA_SAMPLERS'):
        child = getattr(reg, name)
        assert child.scope == 'mmaff', name
        assert child.parent is getattr(mmseg_reg, name), name


def test_build_mmaff_components(mmaff_scope, tmp_path, tiny_voc):
    from mmaff.datasets import VOCImageLabelDataset
    from mmaff.engine.hooks import CAMExportHook
    from mmaff.evaluation.metrics import CAMMetric
    from mmaff.models.heads import CAMHead
    from mmaff.models.segmentors import CAMClassifier

    head = reg.MODELS.build(
        dict(type='CAMHead', in_channels=32, num_classes=5))
    assert isinstance(head, CAMHead)
    assert head.conv_cls.weight.shape == (5, 32, 1, 1)
    assert head.conv_cls.bias is None

    model = reg.MODELS.build(
        dict(
            type='CAMClassifier',
            backbone=_tiny_resnet(),
            cam_head=dict(type='CAMHead', in_channels=32, num_classes=5),
            data_preprocessor=dict(type='SegDataPreProcessor')))
    from mmseg.models.backbones import ResNetV1c
    assert isinstance(model, CAMClassifier)
    assert isinstance(model.backbone, ResNetV1c)
    model.eval()
    with torch.no_grad():
        cams = model.encode_decode(torch.rand(2, 3, 32, 40))
        logits = model._forward(torch.rand(2, 3, 32, 40))
    assert cams.shape == (2, 5, 4, 5)  # stride 8
    assert logits.shape == (2, 5)

    metric = reg.METRICS.build(dict(type='CAMMetric', bg_thresholds=[0.2]))
    assert isinstance(metric, CAMMetric)

    dataset = reg.DATASETS.build(
        dict(
            type='VOCImageLabelDataset',
            data_root=tiny_voc.root,
            data_prefix=dict(img_path='JPEGImages'),
            ann_file='ImageSets/Segmentation/train.txt',
            pipeline=[]))
    assert isinstance(dataset, VOCImageLabelDataset)
    assert len(dataset) == len(tiny_voc.splits['train'])

    hook = reg.HOOKS.build(
        dict(type='CAMExportHook', out_dir=str(tmp_path / 'cams')))
    assert isinstance(hook, CAMExportHook)


def test_root_registries_find_mmaff_in_its_scope(mmaff_scope):
    """What the Runner does: build through mmengine's root registries with
    ``default_scope='mmaff'``."""
    from mmengine.registry import METRICS, MODELS
    from mmaff.models.heads import CAMHead
    head = MODELS.build(dict(type='CAMHead', in_channels=4, num_classes=2))
    assert isinstance(head, CAMHead)
    metric = METRICS.build(dict(type='CAMMetric'))
    assert type(metric).__name__ == 'CAMMetric'


def test_mmseg_and_mmpretrain_names_resolve(mmaff_scope):
    from mmseg.datasets.transforms import PackSegInputs
    from mmseg.models.segmentors import EncoderDecoder
    assert reg.MODELS.get('EncoderDecoder') is EncoderDecoder
    assert reg.TRANSFORMS.get('PackSegInputs') is PackSegInputs
    pack = reg.TRANSFORMS.build(
        dict(type='PackSegInputs', meta_keys=('img_path', 'img_labels')))
    assert isinstance(pack, PackSegInputs)
    assert reg.DATASETS.get('PascalVOCDataset').__module__.startswith('mmseg.')
    assert reg.METRICS.get('IoUMetric').__module__.startswith('mmseg.')
    from mmpretrain.datasets.transforms import ColorJitter
    assert reg.TRANSFORMS.get('mmpretrain.ColorJitter') is ColorJitter
    jitter = reg.TRANSFORMS.build(
        dict(
            type='mmpretrain.ColorJitter',
            brightness=0.3,
            contrast=0.3,
            saturation=0.3,
            hue=0.1))
    assert isinstance(jitter, ColorJitter)


def test_unknown_name_fails(mmaff_scope):
    with pytest.raises(KeyError, match='NoSuchHead'):
        reg.MODELS.build(dict(type='NoSuchHead'))


def test_mmaff_components_are_found_from_the_mmseg_scope(fresh_scopes):
    """Configs inheriting mmseg's bases build some parts in mmseg's scope
    (a loop tagged ``_scope_='mmseg'`` builds its dataloader there)."""
    import mmseg.registry as mmseg_reg
    from mmengine.registry import DATASETS as ROOT_DATASETS
    from mmengine.registry import LOOPS as ROOT_LOOPS
    register_all_modules(init_default_scope=False)
    for name, registry in (('PseudoLabelDataset', 'DATASETS'),
                           ('VOCImageLabelDataset', 'DATASETS'),
                           ('ColorJitter', 'TRANSFORMS'),
                           ('ResNet38d', 'MODELS'), ('CAMMetric', 'METRICS'),
                           ('RandomWalkHook', 'HOOKS')):
        ours = getattr(reg, registry).get(name)
        assert ours is not None and ours.__module__.startswith('mmaff.')
        assert getattr(mmseg_reg, registry).get(name) is ours
    # mmseg's own components keep priority in mmseg's scope
    assert mmseg_reg.TRANSFORMS.get('RandomFlip').__module__.startswith(
        'mmseg.')
    # as the Runner does it: the default scope switched to mmseg
    with ROOT_LOOPS.switch_scope_and_registry('mmseg') as loops:
        assert loops.scope == 'mmseg'
        with ROOT_DATASETS.switch_scope_and_registry(None) as datasets:
            assert datasets.get('PseudoLabelDataset') is \
                reg.DATASETS.get('PseudoLabelDataset')
