# Copyright (c) mmaff contributors. All rights reserved.
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import mmaff  # noqa: F401  (environment fixes before mmseg.models)
import mmaff.models.backbones  # noqa: F401  (registers ResNet38d)
from mmaff.registry import MODELS

# The layer table of ResNet-38 (model A1), written from the paper/spec:
# (block name, kind, in ch, mid ch, out ch, stride).
_BASIC = [('b2', 64, 128, 128, 2), ('b2_1', 128, 128, 128, 1),
          ('b2_2', 128, 128, 128, 1), ('b3', 128, 256, 256, 2),
          ('b3_1', 256, 256, 256, 1), ('b3_2', 256, 256, 256, 1),
          ('b4', 256, 512, 512, 2)] + [
              (f'b4_{i}', 512, 512, 512, 1) for i in range(1, 6)
          ] + [('b5', 512, 512, 1024, 1), ('b5_1', 1024, 512, 1024, 1),
               ('b5_2', 1024, 512, 1024, 1)]
# (block name, in ch, (c1, c2, c3)) for 1x1 -> 3x3 -> 1x1.
_BOTTLENECK = [('b6', 1024, (512, 1024, 2048)),
               ('b7', 2048, (1024, 2048, 4096))]
_FROZEN_BY_DEFAULT = ('conv1a', 'b2', 'b2_1', 'b2_2')
# tap -> (channels, total stride)
_TAPS = {
    'conv1a': (64, 1),
    'b2': (128, 2),
    'b3': (256, 4),
    'b4': (512, 8),
    'b4_act': (512, 8),
    'b5': (1024, 8),
    'b5_act': (1024, 8),
    'b6': (2048, 8),
    'b7': (4096, 8),
    'bn7': (4096, 8),
}


def _conv(k, cin, cout):
    return k * k * cin * cout


def _expected_param_count():
    """Parameters of ResNet-38 from the layer table (convs + BN affine)."""
    total = _conv(3, 3, 64)  # conv1a
    for _, cin, mid, cout, stride in _BASIC:
        total += 2 * cin + _conv(3, cin, mid) + 2 * mid + _conv(3, mid, cout)
        if cin != cout or stride != 1:
            total += _conv(1, cin, cout)
    for _, cin, (c1, c2, c3) in _BOTTLENECK:
        total += 2 * cin + _conv(1, cin, c1) + 2 * c1 + _conv(3, c1, c2)
        total += 2 * c2 + _conv(1, c2, c3)
        if cin != c3:
            total += _conv(1, cin, c3)
    return total + 2 * 4096  # bn7


def _top(name):
    return name.split('.')[0]


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    return MODELS.build(
        dict(type='ResNet38d', out_keys=tuple(_TAPS), init_cfg=None))


def test_build_from_config_defaults():
    torch.manual_seed(0)
    m = MODELS.build(dict(type='ResNet38d'))
    assert type(m).__name__ == 'ResNet38d'
    assert m.out_keys == ('bn7', )
    m.eval()
    with torch.no_grad():
        out = m(torch.randn(1, 3, 33, 20))
    # mmseg backbones return tuples: the default is the final map only.
    assert isinstance(out, tuple) and len(out) == 1
    assert out[0].shape == (1, 4096, 5, 3)
    assert (out[0] >= 0).all()  # after bn7 + ReLU


def test_bad_config_is_an_error():
    with pytest.raises(ValueError, match='conv9'):
        MODELS.build(dict(type='ResNet38d', out_keys=('bn7', 'conv9')))
    with pytest.raises(ValueError, match='frozen_stages'):
        MODELS.build(dict(type='ResNet38d', frozen_stages=7))
    with pytest.raises(ValueError, match='dropout_ratios'):
        MODELS.build(dict(type='ResNet38d', dropout_ratios=(0.3, )))


def test_layer_table(model):
    # Every conv is bias-free; dilations and strides as in the table.
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(c.bias is None for c in convs)
    assert model.conv1a.stride == (1, 1)
    for name, cin, mid, cout, stride in _BASIC:
        block = getattr(model, name)
        assert block.conv_branch2a.weight.shape == (mid, cin, 3, 3)
        assert block.conv_branch2b1.weight.shape == (cout, mid, 3, 3)
        assert block.conv_branch2a.stride == (stride, stride)
        has_shortcut = cin != cout or stride != 1
        assert hasattr(block, 'conv_branch1') == has_shortcut
    for name in ('b5_1', 'b5_2'):
        assert getattr(model, name).conv_branch2a.dilation == (2, 2)
        assert getattr(model, name).conv_branch2b1.dilation == (2, 2)
    assert model.b5.conv_branch2a.dilation == (1, 1)
    assert model.b5.conv_branch2b1.dilation == (2, 2)
    assert model.b4_5.conv_branch2b1.dilation == (1, 1)
    for (name, cin, (c1, c2, c3)), p in zip(_BOTTLENECK, (0.3, 0.5)):
        block = getattr(model, name)
        assert block.conv_branch2a.weight.shape == (c1, cin, 1, 1)
        assert block.conv_branch2b1.weight.shape == (c2, c1, 3, 3)
        assert block.conv_branch2b1.dilation == (4, 4)
        assert block.conv_branch2b2.weight.shape == (c3, c2, 1, 1)
        assert block.dropout_2b1.p == p and block.dropout_2b2.p == p
        assert isinstance(block.dropout_2b1, nn.Dropout2d)


def test_parameter_count(model):
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == _expected_param_count()
    bn_channels = sum(
        m.num_features for m in model.modules()
        if isinstance(m, nn.BatchNorm2d))
    n_running = sum(
        b.numel() for n, b in model.named_buffers()
        if n.endswith(('running_mean', 'running_var')))
    assert n_running == 2 * bn_channels


@pytest.mark.parametrize('shape', [(1, 3, 97, 61), (2, 3, 64, 48)])
def test_tap_shapes_at_odd_sizes(model, shape):
    model.eval()
    torch.manual_seed(1)
    x = torch.randn(*shape)
    with torch.no_grad():
        outs = model(x)
    assert len(outs) == len(_TAPS)
    n, _, h, w = shape
    for (key, (channels, stride)), out in zip(_TAPS.items(), outs):
        # stride-2 convs (3x3 pad 1 / 1x1 pad 0) give ceil(size / 2)
        eh, ew = h, w
        for _ in range(int(math.log2(stride))):
            eh, ew = math.ceil(eh / 2), math.ceil(ew / 2)
        assert eh == math.ceil(h / stride) and ew == math.ceil(w / stride)
        assert out.shape == (n, channels, eh, ew), key
        assert torch.isfinite(out).all(), key
    taps = dict(zip(_TAPS, outs))
    # The activated taps are the BN + ReLU pre-activation of the next stage.
    torch.testing.assert_close(taps['b4_act'],
                               F.relu(model.b5.bn_branch2a(taps['b4'])))
    torch.testing.assert_close(taps['b5_act'],
                               F.relu(model.b6.bn_branch2a(taps['b5'])))
    torch.testing.assert_close(taps['bn7'], F.relu(model.bn7(taps['b7'])))


def _reference_forward(sd, x, dropout_training, ratios=(0.3, 0.5)):
    """ResNet-38 from the formulas with plain functional ops."""

    def bn(name, t):
        return F.relu(
            F.batch_norm(t, sd[f'{name}.running_mean'],
                         sd[f'{name}.running_var'], sd[f'{name}.weight'],
                         sd[f'{name}.bias'], False, 0., 1e-5))

    x = F.conv2d(x, sd['conv1a.weight'], padding=1)
    for name, cin, mid, cout, stride in _BASIC:
        d1 = 2 if name in ('b5_1', 'b5_2') else 1
        d2 = 2 if name.startswith('b5') else 1
        a = bn(f'{name}.bn_branch2a', x)
        if cin == cout and stride == 1:
            shortcut = x
        else:
            shortcut = F.conv2d(a, sd[f'{name}.conv_branch1.weight'],
                                stride=stride)
        h = F.conv2d(a, sd[f'{name}.conv_branch2a.weight'], stride=stride,
                     padding=d1, dilation=d1)
        h = bn(f'{name}.bn_branch2b1', h)
        h = F.conv2d(h, sd[f'{name}.conv_branch2b1.weight'], padding=d2,
                     dilation=d2)
        x = shortcut + h
    for (name, _, _), p in zip(_BOTTLENECK, ratios):
        a = bn(f'{name}.bn_branch2a', x)
        shortcut = F.conv2d(a, sd[f'{name}.conv_branch1.weight'])
        h = F.conv2d(a, sd[f'{name}.conv_branch2a.weight'])
        h = F.dropout2d(bn(f'{name}.bn_branch2b1', h), p, dropout_training)
        h = F.conv2d(h, sd[f'{name}.conv_branch2b1.weight'], padding=4,
                     dilation=4)
        h = F.dropout2d(bn(f'{name}.bn_branch2b2', h), p, dropout_training)
        h = F.conv2d(h, sd[f'{name}.conv_branch2b2.weight'])
        x = shortcut + h
    return bn('bn7', x)


def test_forward_matches_the_formulas():
    torch.manual_seed(4)
    m = MODELS.build(dict(type='ResNet38d'))
    with torch.no_grad():  # non-trivial BN statistics and affine params
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.normal_(0, 0.1)
                mod.running_mean.normal_(0, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
    sd = m.state_dict()
    x = torch.randn(1, 3, 27, 21)
    with torch.no_grad():
        m.eval()
        out_eval = m(x)[0]
        torch.testing.assert_close(out_eval, _reference_forward(sd, x, False))
        # Train mode (BNs frozen by norm_eval): same dropout masks when the
        # random generator starts from the same state.
        m.train()
        torch.manual_seed(5)
        out_train = m(x)[0]
        torch.manual_seed(5)
        ref_train = _reference_forward(sd, x, True)
    torch.testing.assert_close(out_train, ref_train)
    assert not torch.allclose(out_train, out_eval)


def test_subset_of_taps_in_requested_order(model):
    torch.manual_seed(2)
    x = torch.randn(1, 3, 40, 24)
    model.eval()
    with torch.no_grad():
        full = dict(zip(_TAPS, model(x)))
    shallow = MODELS.build(
        dict(type='ResNet38d', out_keys=('b4', 'conv1a', 'b3')))
    shallow.load_state_dict(model.state_dict())
    shallow.eval()
    with torch.no_grad():
        outs = shallow(x)
    assert len(outs) == 3
    for key, out in zip(('b4', 'conv1a', 'b3'), outs):
        torch.testing.assert_close(out, full[key])


def test_default_freezing_and_norm_eval():
    m = MODELS.build(dict(type='ResNet38d'))
    m.train()
    bn_params = set()
    for mod_name, mod in m.named_modules():
        if isinstance(mod, nn.BatchNorm2d):
            assert not mod.training, mod_name
            bn_params.update(f'{mod_name}.{p}'
                             for p, _ in mod.named_parameters())
    assert bn_params
    n_trainable = 0
    for name, param in m.named_parameters():
        frozen = _top(name) in _FROZEN_BY_DEFAULT or name in bn_params
        assert param.requires_grad == (not frozen), name
        n_trainable += param.requires_grad
    assert n_trainable > 0
    # Frozen stages stay in eval mode; the rest trains (dropout active).
    for name in _FROZEN_BY_DEFAULT:
        assert not getattr(m, name).training
    assert m.b3.training and m.b7.training and m.b7.dropout_2b2.training
    # train() after eval() and train(False) keep the rules.
    m.eval()
    m.train(True)
    assert not m.b2_1.bn_branch2b1.training and not m.b6.bn_branch2a.training
    assert not m.b6.bn_branch2a.weight.requires_grad

    # Gradients reach only the trainable parameters.
    x = torch.randn(1, 3, 24, 24)
    m(x)[0].mean().backward()
    assert m.conv1a.weight.grad is None
    assert m.b2_2.conv_branch2b1.weight.grad is None
    assert m.b5.bn_branch2a.weight.grad is None
    assert m.b3.conv_branch2a.weight.grad is not None
    assert m.b7.conv_branch2b2.weight.grad.abs().sum() > 0


def test_everything_trains_without_freezing():
    m = MODELS.build(dict(type='ResNet38d', norm_eval=False,
                          frozen_stages=-1))
    m.train()
    assert all(p.requires_grad for p in m.parameters())
    assert all(mod.training for mod in m.modules())


def test_frozen_stages_option():
    m = MODELS.build(dict(type='ResNet38d', frozen_stages=3,
                          norm_eval=False))
    m.train()
    frozen = {'conv1a', 'b2', 'b2_1', 'b2_2', 'b3', 'b3_1', 'b3_2', 'b4'
              } | {f'b4_{i}'
                   for i in range(1, 6)}
    for name, param in m.named_parameters():
        assert param.requires_grad == (_top(name) not in frozen), name
    # BN of frozen stages in eval, of trainable stages in train mode.
    assert not m.b4_5.bn_branch2a.training
    assert m.b5.bn_branch2a.training and m.bn7.training


def test_dropout_only_in_train_mode():
    torch.manual_seed(3)
    m = MODELS.build(dict(type='ResNet38d'))
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        m.train()
        a, b = m(x)[0], m(x)[0]
        assert not torch.allclose(a, b)
        m.eval()
        c, d = m(x)[0], m(x)[0]
        assert torch.equal(c, d)
        # With zero dropout the train-mode passes agree (BNs are frozen by
        # norm_eval), so the difference above came from the dropouts.
        m.b6.dropout_2b1.p = m.b6.dropout_2b2.p = 0.
        m.b7.dropout_2b1.p = m.b7.dropout_2b2.p = 0.
        m.train()
        e, f = m(x)[0], m(x)[0]
        assert torch.equal(e, f)
        torch.testing.assert_close(e, c)


def test_bad_input_is_an_error(model):
    with pytest.raises(ValueError, match='ResNet38d'):
        model(torch.randn(1, 1, 16, 16))
