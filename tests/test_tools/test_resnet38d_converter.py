# Copyright (c) mmaff contributors. All rights reserved.
import importlib.util
import os.path as osp

import pytest
import torch

import mmaff  # noqa: F401  (environment fixes before mmseg.models)
import mmaff.models.backbones  # noqa: F401  (registers ResNet38d)
from mmaff.registry import MODELS

_TOOL = osp.join(
    osp.dirname(__file__), '..', '..', 'tools', 'model_converters',
    'resnet38d_mxnet2mmaff.py')


def _load_tool():
    spec = importlib.util.spec_from_file_location('resnet38d_mxnet2mmaff',
                                                  _TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = _load_tool()

# The MXNet layout of ResNet-38 A1, written from the layer table:
# (MXNet unit, torch block, in ch, mid ch, out ch, stride) of basic blocks,
_BASIC = [('2a', 'b2', 64, 128, 128, 2), ('2b1', 'b2_1', 128, 128, 128, 1),
          ('2b2', 'b2_2', 128, 128, 128, 1), ('3a', 'b3', 128, 256, 256, 2),
          ('3b1', 'b3_1', 256, 256, 256, 1), ('3b2', 'b3_2', 256, 256, 256, 1),
          ('4a', 'b4', 256, 512, 512, 2)] + [
              (f'4b{i}', f'b4_{i}', 512, 512, 512, 1) for i in range(1, 6)
          ] + [('5a', 'b5', 512, 512, 1024, 1),
               ('5b1', 'b5_1', 1024, 512, 1024, 1),
               ('5b2', 'b5_2', 1024, 512, 1024, 1)]
# and (MXNet unit, torch block, in ch, (c1, c2, c3)) of the bottlenecks.
_BOTTLENECK = [('6a', 'b6', 1024, (512, 1024, 2048)),
               ('7a', 'b7', 2048, (1024, 2048, 4096))]
_BN_MX = (('gamma', 'weight', 'arg'), ('beta', 'bias', 'arg'),
          ('moving_mean', 'running_mean', 'aux'), ('moving_var',
                                                   'running_var', 'aux'))


def _mxnet_layout():
    """MXNet name (with arg:/aux:) -> (shape, torch module path, attr)."""
    layout = {'arg:conv1a_weight': ((64, 3, 3, 3), 'conv1a', 'weight')}

    def conv(unit, branch, block, shape):
        layout[f'arg:res{unit}_branch{branch}_weight'] = (
            shape, f'{block}.conv_branch{branch}', 'weight')

    def bn(unit, branch, block, channels):
        for mx, pt, kind in _BN_MX:
            name = f'{kind}:bn{unit}_branch{branch}_{mx}'
            layout[name] = ((channels, ), f'{block}.bn_branch{branch}', pt)

    for unit, block, cin, mid, cout, stride in _BASIC:
        bn(unit, '2a', block, cin)
        conv(unit, '2a', block, (mid, cin, 3, 3))
        bn(unit, '2b1', block, mid)
        conv(unit, '2b1', block, (cout, mid, 3, 3))
        if cin != cout or stride != 1:
            conv(unit, '1', block, (cout, cin, 1, 1))
    for unit, block, cin, (c1, c2, c3) in _BOTTLENECK:
        bn(unit, '2a', block, cin)
        conv(unit, '2a', block, (c1, cin, 1, 1))
        bn(unit, '2b1', block, c1)
        conv(unit, '2b1', block, (c2, c1, 3, 3))
        bn(unit, '2b2', block, c2)
        conv(unit, '2b2', block, (c3, c2, 1, 1))
        conv(unit, '1', block, (c3, cin, 1, 1))
    for mx, pt, kind in _BN_MX:
        layout[f'{kind}:bn7_{mx}'] = ((4096, ), 'bn7', pt)
    return layout


@pytest.fixture(scope='module')
def mxnet_weights():
    """A synthetic MXNet-named state dict with the ImageNet classifier."""
    gen = torch.Generator().manual_seed(0)
    layout = _mxnet_layout()
    weights = {}
    for name, (shape, _, attr) in layout.items():
        if attr == 'weight' and len(shape) == 4:  # conv: variance-keeping
            fan_in = shape[1] * shape[2] * shape[3]
            value = torch.randn(shape, generator=gen) / fan_in**0.5
        elif attr == 'running_var':
            value = torch.rand(shape, generator=gen) + 0.5
        elif attr == 'weight':  # BN gamma
            value = torch.rand(shape, generator=gen) + 0.5
        else:
            value = 0.1 * torch.randn(shape, generator=gen)
        weights[name] = value
    weights['arg:linear1000_weight'] = torch.randn(1000, 4096, generator=gen)
    weights['arg:linear1000_bias'] = torch.randn(1000, generator=gen)
    return weights, layout


def _load_by_hand(model, weights, layout):
    with torch.no_grad():
        for name, (_, path, attr) in layout.items():
            module = model
            for part in path.split('.'):
                module = getattr(module, part)
            getattr(module, attr).copy_(weights[name])
    return model


def test_mxnet_names():
    assert tool.mxnet_name('conv1a.weight') == 'conv1a_weight'
    assert tool.mxnet_name('b2.conv_branch1.weight') == 'res2a_branch1_weight'
    assert tool.mxnet_name(
        'b4_3.bn_branch2b1.running_var') == 'bn4b3_branch2b1_moving_var'
    assert tool.mxnet_name('b6.conv_branch2b2.weight') == \
        'res6a_branch2b2_weight'
    assert tool.mxnet_name('b2_1.bn_branch2a.bias') == 'bn2b1_branch2a_beta'
    assert tool.mxnet_name('bn7.weight') == 'bn7_gamma'
    with pytest.raises(KeyError, match='fc8'):
        tool.mxnet_name('fc8.weight')


def test_convert_loads_strictly_and_matches_hand_loading(
        mxnet_weights, tmp_path):
    weights, layout = mxnet_weights
    src, dst = str(tmp_path / 'mx.pth'), str(tmp_path / 'out' / 'r38.pth')
    torch.save(weights, src)
    tool.main([src, dst])
    ckpt = torch.load(dst, map_location='cpu', weights_only=True)
    state_dict = ckpt['state_dict']
    # every source tensor but the classifier, plus num_batches_tracked
    n_bn = sum(1 for n in layout if n.endswith('_moving_mean'))
    assert len(state_dict) == len(layout) + n_bn
    assert not any('linear1000' in k for k in state_dict)
    assert torch.equal(state_dict['b4_3.bn_branch2b1.running_var'],
                       weights['aux:bn4b3_branch2b1_moving_var'])

    torch.manual_seed(0)
    converted = MODELS.build(dict(type='ResNet38d'))
    converted.load_state_dict(state_dict, strict=True)
    torch.manual_seed(1)
    by_hand = _load_by_hand(
        MODELS.build(dict(type='ResNet38d')), weights, layout)
    converted.eval()
    by_hand.eval()
    x = torch.randn(1, 3, 40, 36)
    with torch.no_grad():
        out = converted(x)[0]
        ref = by_hand(x)[0]
    assert out.shape == (1, 4096, 5, 5)
    assert torch.isfinite(out).all() and out.abs().sum() > 0
    torch.testing.assert_close(out, ref, rtol=0, atol=0)

    # The documented init_cfg route loads the same weights.
    pretrained = MODELS.build(
        dict(
            type='ResNet38d',
            init_cfg=dict(type='Pretrained', checkpoint=dst)))
    pretrained.init_weights()
    reference = by_hand.state_dict()
    for key, value in pretrained.state_dict().items():
        if not key.endswith('num_batches_tracked'):
            assert torch.equal(value, reference[key]), key


def test_prefix_for_full_models(mxnet_weights, tmp_path):
    weights, layout = mxnet_weights
    # MXNet names without the arg:/aux: prefixes are accepted as well.
    plain = {k.split(':', 1)[1]: v for k, v in weights.items()}
    src, dst = str(tmp_path / 'mx.pth'), str(tmp_path / 'full.pth')
    torch.save(plain, src)
    tool.main([src, dst, '--prefix', 'backbone.'])
    state_dict = torch.load(dst, weights_only=True)['state_dict']
    assert state_dict and all(k.startswith('backbone.') for k in state_dict)
    assert torch.equal(state_dict['backbone.conv1a.weight'],
                       weights['arg:conv1a_weight'])
    model = MODELS.build(
        dict(
            type='ResNet38d',
            init_cfg=dict(
                type='Pretrained', checkpoint=dst, prefix='backbone.')))
    model.init_weights()
    for name, (_, path, attr) in list(layout.items())[::25]:
        assert torch.equal(model.state_dict()[f'{path}.{attr}'],
                           weights[name]), name


def test_bad_sources_are_errors_listing_the_keys(mxnet_weights, tmp_path):
    weights, _ = mxnet_weights
    broken = dict(weights)
    del broken['aux:bn4b3_branch2b1_moving_var']
    del broken['arg:res5a_branch1_weight']
    broken['arg:res9a_branch2a_weight'] = torch.zeros(1)
    broken['arg:bn3b1_branch2a_gamma'] = torch.ones(3)
    with pytest.raises(ValueError) as err:
        tool.convert(broken)
    msg = str(err.value)
    for name in ('bn4b3_branch2b1_moving_var', 'res5a_branch1_weight',
                 'res9a_branch2a_weight', 'bn3b1_branch2a_gamma'):
        assert name in msg
    assert '2 missing keys' in msg and '1 unknown keys' in msg
    assert '1 shape mismatches' in msg

    # The same key with and without the MXNet prefix.
    twice = dict(weights)
    twice['conv1a_weight'] = weights['arg:conv1a_weight']
    with pytest.raises(ValueError, match='twice'):
        tool.convert(twice)

    # Not a torch file (e.g. an MXNet .params): the error says what to do.
    bad = tmp_path / 'model.params'
    bad.write_bytes(b'\x12\x01\x00\x00not a torch file')
    with pytest.raises(ValueError, match='mxnet'):
        tool.main([str(bad), str(tmp_path / 'x.pth')])
    assert not (tmp_path / 'x.pth').exists()
