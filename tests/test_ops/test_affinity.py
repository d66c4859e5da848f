# Copyright (c) mmaff contributors. All rights reserved.
"""Pair enumeration, affinity labels and affinities vs brute force."""
import math

import pytest
import torch

import mmaff  # noqa: F401  (applies the environment fixes first)
from mmaff.ops import (affinity_from_features, affinity_labels, pair_offsets,
                       pair_valid_mask)

# (h, w, radius): square, non-square, tiny grids smaller than the radius, 1x1
GRIDS = [(1, 1, 5), (1, 4, 5), (3, 1, 5), (2, 3, 5), (4, 4, 5), (7, 5, 5),
         (9, 11, 5), (6, 8, 3), (5, 4, 2), (4, 3, 1), (3, 7, 7)]


def brute_pairs(h, w, radius):
    """All unordered pixel pairs (i, j), i before j in raster order, within
    the radius: a double loop over every pair of grid pixels."""
    pixels = [(y, x) for y in range(h) for x in range(w)]
    pairs = []
    for i, (yi, xi) in enumerate(pixels):
        for j, (yj, xj) in enumerate(pixels):
            if i < j and (yi - yj)**2 + (xi - xj)**2 < radius**2:
                pairs.append(((yi, xi), (yj, xj)))
    return pairs


def stored_entries(h, w, radius):
    """Map each valid (p, y, x) entry to the pair of pixels it relates."""
    offsets = pair_offsets(radius)
    mask = pair_valid_mask(h, w, radius)
    assert mask.shape == (len(offsets), h, w)
    assert mask.dtype == torch.bool
    entries = {}
    for p, y, x in mask.nonzero().tolist():
        dy, dx = offsets[p]
        yj, xj = y + dy, x + dx
        assert 0 <= yj < h and 0 <= xj < w, 'valid entry leaves the grid'
        entries[(p, y, x)] = frozenset([(y, x), (yj, xj)])
    return entries


@pytest.mark.parametrize('radius', [1, 2, 3, 4, 5, 6, 8])
def test_pair_offsets(radius):
    offsets = pair_offsets(radius)
    assert len(offsets) == len(set(offsets))
    # Brute force: all non-zero integer vectors within the radius.
    vectors = {(dy, dx)
               for dy in range(-radius, radius + 1)
               for dx in range(-radius, radius + 1)
               if 0 < dy * dy + dx * dx < radius * radius}
    assert len(offsets) * 2 == len(vectors)
    for dy, dx in offsets:
        assert (-dy, -dx) not in offsets, 'pair listed in both directions'
    assert set(offsets) | {(-dy, -dx) for dy, dx in offsets} == vectors
    # The documented order: (0, dx) first, then rows with dx ascending.
    assert offsets == sorted(offsets, key=lambda o: (o[0], o[1]))
    assert all(dy > 0 or dx > 0 for dy, dx in offsets)


def test_pair_offsets_radius5():
    offsets = pair_offsets(5)
    assert len(offsets) == 34
    assert offsets[:4] == [(0, 1), (0, 2), (0, 3), (0, 4)]
    assert pair_offsets() == offsets


@pytest.mark.parametrize('h,w,radius', GRIDS)
def test_pair_enumeration_covers_every_pair_once(h, w, radius):
    entries = stored_entries(h, w, radius)
    pairs = [frozenset(p) for p in brute_pairs(h, w, radius)]
    # Each stored entry is a distinct in-radius pair and every in-radius
    # pair is stored: a bijection.
    assert len(set(entries.values())) == len(entries)
    assert set(entries.values()) == set(pairs)
    assert len(entries) == len(pairs)
    # Every in-image neighbour of every pixel, borders included.
    for y in range(h):
        for x in range(w):
            neighbours = {(yy, xx)
                          for yy in range(h)
                          for xx in range(w)
                          if 0 < (yy - y)**2 + (xx - x)**2 < radius**2}
            covered = {
                q
                for pair in entries.values() if (y, x) in pair for q in pair
                if q != (y, x)
            }
            assert covered == neighbours, f'pixel {(y, x)} of {h}x{w}'


def test_pair_valid_mask_device_and_errors():
    assert pair_valid_mask(3, 4, 2, device='cpu').device.type == 'cpu'
    with pytest.raises(ValueError, match='radius'):
        pair_valid_mask(3, 4, 0)
    with pytest.raises(ValueError, match='non-empty'):
        pair_valid_mask(0, 4, 5)


@pytest.mark.parametrize('h,w,radius', GRIDS)
def test_affinity_from_features_brute_force(h, w, radius):
    torch.manual_seed(h * 100 + w * 10 + radius)
    b, k = 2, 6
    feats = torch.randn(b, k, h, w, dtype=torch.float64)
    aff = affinity_from_features(feats, radius)
    offsets = pair_offsets(radius)
    assert aff.shape == (b, len(offsets), h, w)
    assert aff.dtype == feats.dtype
    pair_at = {pair: key for key, pair in stored_entries(h, w, radius).items()}
    seen = torch.zeros_like(aff, dtype=torch.bool)
    for (yi, xi), (yj, xj) in brute_pairs(h, w, radius):
        p, y, x = pair_at[frozenset([(yi, xi), (yj, xj)])]
        for n in range(b):
            diff = [
                abs(feats[n, c, yi, xi].item() - feats[n, c, yj, xj].item())
                for c in range(k)
            ]
            expected = math.exp(-sum(diff) / k)
            assert aff[n, p, y, x].item() == pytest.approx(expected, rel=1e-12)
        seen[:, p, y, x] = True
    # Entries without an in-grid partner are exactly 0.
    assert (aff[~seen] == 0).all()
    assert (aff[seen] > 0).all() and (aff <= 1).all()


def test_affinity_from_features_identical_features():
    feats = torch.ones(1, 3, 6, 6)
    aff = affinity_from_features(feats)
    assert torch.equal(aff, pair_valid_mask(6, 6)[None].float())


def test_affinity_from_features_gradcheck():
    torch.manual_seed(0)
    cases = [((2, 3, 4, 5), 3), ((1, 2, 3, 2), 5), ((1, 2, 1, 1), 5)]
    for shape, radius in cases:
        feats = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(
            lambda f, r=radius: affinity_from_features(f, r), (feats, ))


def test_affinity_from_features_grad_matches_naive_autograd():
    """The hand-written backward equals autograd through a per-pair loop."""
    torch.manual_seed(1)
    h, w, k, radius = 5, 6, 4, 5
    feats = torch.randn(2, k, h, w, dtype=torch.float64, requires_grad=True)
    weight = torch.rand(
        2, len(pair_offsets(radius)), h, w, dtype=torch.float64)
    (affinity_from_features(feats, radius) * weight).sum().backward()
    grad = feats.grad.clone()

    feats2 = feats.detach().clone().requires_grad_(True)
    total = feats2.new_zeros(())
    for key, pair in stored_entries(h, w, radius).items():
        p, y, x = key
        (yi, xi), (yj, xj) = sorted(pair)
        a = torch.exp(-(feats2[:, :, yi, xi] -
                        feats2[:, :, yj, xj]).abs().mean(1))
        total = total + (a * weight[:, p, y, x]).sum()
    total.backward()
    torch.testing.assert_close(grad, feats2.grad, rtol=1e-10, atol=1e-12)


def test_affinity_from_features_errors():
    with pytest.raises(ValueError, match=r'\(B, K, h, w\)'):
        affinity_from_features(torch.rand(3, 4, 4))
    with pytest.raises(TypeError, match='floating'):
        affinity_from_features(torch.ones(1, 2, 3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match='radius'):
        affinity_from_features(torch.rand(1, 2, 3, 3), radius=0)
    with pytest.raises(ValueError, match='non-empty'):
        affinity_from_features(torch.rand(1, 2, 0, 3))
    with pytest.raises(ValueError, match='channel'):
        affinity_from_features(torch.rand(1, 0, 3, 3))


def _label_maps():
    g = torch.Generator().manual_seed(3)
    values = torch.tensor([0, 0, 1, 2, 255])
    yield values[torch.randint(0, 5, (2, 7, 6), generator=g)]  # with 255s
    yield values[torch.randint(0, 5, (1, 3, 9), generator=g)]
    yield torch.zeros(2, 5, 4, dtype=torch.long)  # all background
    yield torch.full((1, 4, 4), 255, dtype=torch.uint8)  # all ignore
    yield torch.tensor([[[3, 3], [0, 255]]], dtype=torch.int32)  # tiny
    yield torch.tensor([[[7]]])  # 1x1


@pytest.mark.parametrize('radius', [5, 3])
@pytest.mark.parametrize('label_map', list(_label_maps()))
def test_affinity_labels_brute_force(label_map, radius):
    b, h, w = label_map.shape
    bg_pos, fg_pos, neg = affinity_labels(label_map, radius)
    shape = (b, len(pair_offsets(radius)), h, w)
    for t in (bg_pos, fg_pos, neg):
        assert t.shape == shape and t.dtype == torch.bool
    pair_at = {pair: key for key, pair in stored_entries(h, w, radius).items()}
    expected = torch.zeros((3, ) + shape, dtype=torch.bool)
    for (yi, xi), (yj, xj) in brute_pairs(h, w, radius):
        p, y, x = pair_at[frozenset([(yi, xi), (yj, xj)])]
        for n in range(b):
            li = int(label_map[n, yi, xi])
            lj = int(label_map[n, yj, xj])
            if li == 255 or lj == 255:
                continue
            if li == lj:
                expected[0 if li == 0 else 1, n, p, y, x] = True
            else:
                expected[2, n, p, y, x] = True
    assert torch.equal(bg_pos, expected[0])
    assert torch.equal(fg_pos, expected[1])
    assert torch.equal(neg, expected[2])
    # The three kinds never overlap.
    assert not (bg_pos & fg_pos).any() and not (bg_pos & neg).any()
    assert not (fg_pos & neg).any()


def test_affinity_labels_all_background_and_custom_ignore():
    label_map = torch.zeros(1, 6, 6, dtype=torch.long)
    bg_pos, fg_pos, neg = affinity_labels(label_map)
    assert torch.equal(bg_pos[0], pair_valid_mask(6, 6))
    assert not fg_pos.any() and not neg.any()
    label_map[0, 0, 0] = 9
    bg_pos, fg_pos, neg = affinity_labels(label_map, ignore_index=9)
    assert not bg_pos[0, :, 0, 0].any() and not neg.any()


def test_affinity_labels_errors():
    with pytest.raises(ValueError, match=r'\(B, h, w\)'):
        affinity_labels(torch.zeros(4, 4, dtype=torch.long))
    with pytest.raises(TypeError, match='integer'):
        affinity_labels(torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match='radius'):
        affinity_labels(torch.zeros(1, 4, 4, dtype=torch.long), radius=-1)
    with pytest.raises(ValueError, match='non-empty'):
        affinity_labels(torch.zeros(1, 4, 0, dtype=torch.long))
