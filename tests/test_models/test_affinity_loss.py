# Copyright (c) mmaff contributors. All rights reserved.
"""AffinityLoss vs the formula computed element by element."""
import math

import pytest
import torch

import mmaff  # noqa: F401  (applies the environment fixes first)
from mmaff.models.losses import AffinityLoss
from mmaff.ops import affinity_from_features, affinity_labels
from mmaff.registry import MODELS

EPS = 1e-5


def formula(aff, bg_pos, fg_pos, neg):
    """L_bg+/4 + L_fg+/4 + L_neg/2 with plain Python sums over elements."""
    a = aff.detach().double().flatten().tolist()
    terms = {}
    for name, mask, nll in (
        ('bg_pos', bg_pos, lambda v: -math.log(v + EPS)),
        ('fg_pos', fg_pos, lambda v: -math.log(v + EPS)),
        ('neg', neg, lambda v: -math.log(1 - v + EPS)),
    ):
        m = mask.flatten().tolist()
        total = sum(nll(v) for v, keep in zip(a, m) if keep)
        terms[name] = total / (sum(m) + EPS)
    loss = terms['bg_pos'] / 4 + terms['fg_pos'] / 4 + terms['neg'] / 2
    return loss, terms


def random_case(seed, shape=(2, 34, 4, 5)):
    g = torch.Generator().manual_seed(seed)
    aff = torch.rand(shape, generator=g, dtype=torch.float64)
    kind = torch.randint(0, 4, shape, generator=g)  # 3: no label
    return aff, kind == 0, kind == 1, kind == 2


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_matches_formula_random(seed):
    aff, bg_pos, fg_pos, neg = random_case(seed)
    loss_fn = AffinityLoss()
    loss, parts = loss_fn(aff, bg_pos, fg_pos, neg, return_parts=True)
    expected, terms = formula(aff, bg_pos, fg_pos, neg)
    assert loss.dim() == 0
    assert loss.item() == pytest.approx(expected, rel=1e-10)
    for name in ('bg_pos', 'fg_pos', 'neg'):
        assert parts[name].item() == pytest.approx(terms[name], rel=1e-10)
    torch.testing.assert_close(loss_fn(aff, bg_pos, fg_pos, neg), loss)


def test_counts_over_whole_batch():
    """One mean over all pairs of the batch, not a mean of image means."""
    aff, bg_pos, fg_pos, neg = random_case(5)
    bg_pos[1] = False  # image 1 has far fewer bg pairs than image 0
    bg_pos[1, 0, 0, 0] = True
    loss, parts = AffinityLoss()(aff, bg_pos, fg_pos, neg, return_parts=True)
    expected, terms = formula(aff, bg_pos, fg_pos, neg)
    assert parts['bg_pos'].item() == pytest.approx(terms['bg_pos'], rel=1e-10)
    assert loss.item() == pytest.approx(expected, rel=1e-10)


def test_no_foreground_pairs():
    torch.manual_seed(0)
    feats = torch.randn(2, 8, 6, 6, requires_grad=True)
    aff = affinity_from_features(feats)
    label_map = torch.zeros(2, 6, 6, dtype=torch.long)
    label_map[:, 2:4] = 255  # background and unsure only
    bg_pos, fg_pos, neg = affinity_labels(label_map)
    assert not fg_pos.any() and not neg.any() and bg_pos.any()
    loss, parts = AffinityLoss()(aff, bg_pos, fg_pos, neg, return_parts=True)
    assert torch.isfinite(loss)
    assert parts['fg_pos'].item() == 0 and parts['neg'].item() == 0
    expected, _ = formula(aff, bg_pos, fg_pos, neg)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert torch.isfinite(feats.grad).all() and feats.grad.abs().sum() > 0


def test_with_real_labels_and_weight():
    torch.manual_seed(1)
    aff = affinity_from_features(torch.randn(2, 4, 7, 6))
    values = torch.tensor([0, 1, 2, 255])
    label_map = values[torch.randint(0, 4, (2, 7, 6))]
    masks = affinity_labels(label_map)
    expected, _ = formula(aff, *masks)
    loss_fn = MODELS.build(
        dict(type='AffinityLoss', loss_weight=0.5, loss_name='loss_pair'))
    assert isinstance(loss_fn, AffinityLoss)
    assert loss_fn.loss_name == 'loss_pair'
    assert loss_fn(aff, *masks).item() == pytest.approx(
        0.5 * expected, rel=1e-5)
    assert AffinityLoss().loss_name == 'loss_aff'


def test_errors():
    aff, bg_pos, fg_pos, neg = random_case(0)
    loss_fn = AffinityLoss()
    with pytest.raises(ValueError, match='fg_pos'):
        loss_fn(aff, bg_pos, fg_pos[:1], neg)
    with pytest.raises(TypeError, match='neg must be a bool'):
        loss_fn(aff, bg_pos, fg_pos, neg.float())
    with pytest.raises(TypeError, match='floating'):
        loss_fn(aff.long(), bg_pos, fg_pos, neg)
    with pytest.raises(ValueError, match='eps'):
        AffinityLoss(eps=0)
