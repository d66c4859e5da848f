# Copyright (c) mmaff contributors. All rights reserved.
"""Tests of ``projects/coco2014/tools/prepare_coco.py`` on a tiny COCO set.

The expected label maps are computed here independently of the converter:
polygons by a brute-force crossing-number test of the pixel centres, RLEs
by an explicit expansion of the runs, compressed RLE strings by an encoder
written here from the format's definition (checked against a string worked
out by hand).
"""
import copy
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from mmaff.datasets.image_labels import read_label_file, write_label_file

REPO = osp.dirname(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
TOOL = osp.join(REPO, 'projects', 'coco2014', 'tools', 'prepare_coco.py')
spec = importlib.util.spec_from_file_location('prepare_coco', TOOL)
prep = importlib.util.module_from_spec(spec)
spec.loader.exec_module(prep)

# Category ids with gaps (like COCO's 1..90 for 80 classes), one name with a
# space; labels follow the ascending id: person 1, car 2, traffic light 3,
# dog 4.
CATEGORIES = [
    dict(id=18, name='dog', supercategory='animal'),
    dict(id=1, name='person', supercategory='person'),
    dict(id=10, name='traffic light', supercategory='outdoor'),
    dict(id=3, name='car', supercategory='vehicle'),
]
CAT_LABEL = {1: 1, 3: 2, 10: 3, 18: 4}
CLASSES = ['background', 'person', 'car', 'traffic_light', 'dog']

# ----------------------------------------------------------------------------
# Independent reference computations
# ----------------------------------------------------------------------------


def encode_rle_string(counts):
    """COCO's compressed RLE string, from the format's definition: each
    number (from the fourth run on, its difference to the run two before)
    in little-endian 5-bit groups, ``chr(48 + group)``, ``0x20`` set on all
    groups but the last, whose bit ``0x10`` is the sign."""
    out = []
    for i, count in enumerate(counts):
        x = count - counts[i - 2] if i > 2 else count
        while True:
            group = x & 0x1f
            x >>= 5  # arithmetic shift: -1 once a negative number is done
            last = x == (-1 if group & 0x10 else 0)
            out.append(chr(48 + group + (0 if last else 0x20)))
            if last:
                break
    return ''.join(out)


def mask_to_runs(mask):
    """Column-major run lengths of a bool mask, zeros first."""
    flat = [int(v) for v in mask.T.reshape(-1)]
    runs, current, length = [], 0, 0
    for v in flat:
        if v == current:
            length += 1
        else:
            runs.append(length)
            current, length = v, 1
    runs.append(length)
    return runs


def expand_runs(runs, height, width):
    """Explicit expansion of run lengths (column-major, zeros first)."""
    mask = np.zeros((height, width), dtype=bool)
    idx = 0
    for k, n in enumerate(runs):
        for _ in range(n):
            if k % 2:
                mask[idx % height, idx // height] = True
            idx += 1
    assert idx == height * width
    return mask


def point_in_polygons(polygons, height, width):
    """Pixels whose centre lies inside any polygon (crossing number)."""
    ys, xs = np.mgrid[0:height, 0:width]
    px, py = xs + 0.5, ys + 0.5
    union = np.zeros((height, width), dtype=bool)
    for flat in polygons:
        pts = np.asarray(flat, dtype=float).reshape(-1, 2)
        inside = np.zeros((height, width), dtype=bool)
        for (x1, y1), (x2, y2) in zip(pts, np.roll(pts, -1, axis=0)):
            if y1 == y2:
                continue
            crosses = (y1 > py) != (y2 > py)
            x_at = x1 + (py - y1) * (x2 - x1) / (y2 - y1)
            inside ^= crosses & (px < x_at)
        union |= inside
    return union


def boundary_distance(polygons, height, width):
    """Distance of every pixel centre to the nearest polygon edge."""
    ys, xs = np.mgrid[0:height, 0:width]
    pts = np.stack([xs + 0.5, ys + 0.5], axis=-1)
    dist = np.full((height, width), np.inf)
    for flat in polygons:
        poly = np.asarray(flat, dtype=float).reshape(-1, 2)
        for a, b in zip(poly, np.roll(poly, -1, axis=0)):
            ab = b - a
            t = np.clip((pts - a) @ ab / max(ab @ ab, 1e-12), 0, 1)
            near = a + t[..., None] * ab
            dist = np.minimum(dist, np.linalg.norm(pts - near, axis=-1))
    return dist


def test_rle_encoder_matches_hand_computed_string():
    # counts 0, 40, 5, 2, 1 of a 6 x 8 mask:
    #   0 -> '0'; 40 = 8 + 1 * 32 -> (8 | 0x20) + 48 = 'X', then '1';
    #   5 -> '5'; run 3 stores 2 - 40 = -38: groups 26 (sign bit set, more
    #   follow: 26 | 0x20 + 48 = 'j') and -2 & 31 = 30 (last: 30 + 48 =
    #   'N'); run 4 stores 1 - 5 = -4: one group 28 + 48 = 'L'.
    assert encode_rle_string([0, 40, 5, 2, 1]) == '0X15jNL'
    assert prep.decode_rle_string('0X15jNL') == [0, 40, 5, 2, 1]
    # the first three runs are stored as they are, deltas from the fourth
    assert encode_rle_string([3, 4, 5, 6]) == '3452'


def test_rle_decoding_round_trips_random_masks():
    rng = np.random.default_rng(0)
    for _ in range(30):
        h, w = rng.integers(1, 40, size=2)
        mask = rng.random((h, w)) < rng.uniform(0.05, 0.95)
        if rng.random() < 0.5:  # long runs: multi-group numbers
            mask = np.zeros((h, w), bool)
            mask[rng.integers(0, h):, rng.integers(0, w):] = True
        runs = mask_to_runs(mask)
        assert prep.decode_rle_string(encode_rle_string(runs)) == runs
        np.testing.assert_array_equal(prep.rle_to_mask(runs, h, w), mask)
        np.testing.assert_array_equal(expand_runs(runs, h, w), mask)
    with pytest.raises(ValueError, match='alphabet'):
        prep.decode_rle_string('0 1')
    with pytest.raises(ValueError, match='ends within'):
        prep.decode_rle_string('0X')
    with pytest.raises(ValueError, match='negative'):
        prep.decode_rle_string('0L')  # run 1 of -4


def test_polygon_fill_against_point_in_polygon():
    """OpenCV's fill = the centre-in-polygon pixels up to a band of at most
    one pixel along the outline; exact for a pixel-aligned rectangle."""
    rng = np.random.default_rng(1)
    h, w = 30, 36
    for _ in range(60):
        n = rng.integers(3, 10)
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        r = rng.uniform(2, 14, n)
        c = rng.uniform(0, 36, 2)  # may leave the image
        flat = (c + np.stack([r * np.cos(ang), r * np.sin(ang)], 1)).ravel()
        got = prep.polygons_to_mask([flat.reshape(-1, 2)], h, w)
        ref = point_in_polygons([flat], h, w)
        dist = boundary_distance([flat], h, w)
        assert not (got != ref)[dist > 1.0].any()
    # a rectangle through pixel centres: the closed set of centres
    got = prep.polygons_to_mask(
        [np.array([[2.5, 3.5], [7.5, 3.5], [7.5, 5.5], [2.5, 5.5]])], 10, 10)
    ref = np.zeros((10, 10), bool)
    ref[3:6, 2:8] = True
    np.testing.assert_array_equal(got, ref)
    # the union of two polygons of one instance
    got = prep.polygons_to_mask([
        np.array([[0.5, 0.5], [2.5, 0.5], [2.5, 2.5], [0.5, 2.5]]),
        np.array([[1.5, 1.5], [4.5, 1.5], [4.5, 4.5], [1.5, 4.5]])
    ], 6, 6)
    assert got.sum() == 9 + 16 - 4


def test_draw_order_smaller_on_top_ties_by_id():
    big = np.zeros((4, 4), bool)
    big[:, :3] = True
    small = np.zeros((4, 4), bool)
    small[1:3, 1:4] = True
    same = small.copy()
    for instances in ([(1, 1, big), (2, 2, small)], [(2, 2, small),
                                                     (1, 1, big)]):
        label = prep.draw_label_map(instances, 4, 4)
        assert (label[small] == 2).all() and (label[big & ~small] == 1).all()
    label = prep.draw_label_map([(7, 3, same), (5, 2, small)], 4, 4)
    assert (label[small] == 3).all()  # equal area: the higher id on top


# ----------------------------------------------------------------------------
# The tiny COCO set
# ----------------------------------------------------------------------------


def _blob(h, w, cy, cx, ry, rx):
    ys, xs = np.mgrid[0:h, 0:w]
    return ((ys - cy) / ry)**2 + ((xs - cx) / rx)**2 <= 1


def make_coco(root, seed=0):
    """Write a tiny COCO 2014 tree; returns {split: json dict}."""
    rng = np.random.default_rng(seed)
    h1, w1 = 30, 40
    crowd = np.zeros((h1, w1), bool)
    crowd[2:12, 22:38] = True
    dog = _blob(h1, w1, 22, 30, 5, 7)
    h4, w4 = 20, 24
    only_crowd = np.zeros((h4, w4), bool)
    only_crowd[5:15, 3:9] = True
    train = dict(
        info={},
        licenses=[],
        categories=copy.deepcopy(CATEGORIES),
        images=[
            dict(
                id=9,
                file_name='COCO_train2014_000000000009.jpg',
                height=h1,
                width=w1),
            dict(
                id=25,
                file_name='COCO_train2014_000000000025.jpg',
                height=6,
                width=8),
            dict(
                id=30,
                file_name='COCO_train2014_000000000030.jpg',
                height=16,
                width=12),  # no instance
            dict(
                id=34,
                file_name='COCO_train2014_000000000034.jpg',
                height=h4,
                width=w4),  # a crowd region only
        ],
        annotations=[
            # a large person (polygon) ...
            dict(
                id=101,
                image_id=9,
                category_id=1,
                iscrowd=0,
                segmentation=[[
                    3.2, 2.7, 30.6, 4.1, 33.4, 26.8, 12.3, 27.9, 4.4, 19.6
                ]]),
            # ... a smaller car on top of it (two polygons) ...
            dict(
                id=102,
                image_id=9,
                category_id=3,
                iscrowd=0,
                segmentation=[[8.3, 8.2, 17.6, 8.9, 16.8, 15.4, 9.1, 16.2],
                              [18.2, 17.4, 21.7, 17.1, 21.3, 21.8]]),
            # ... a crowd of people (uncompressed RLE) over its right part ...
            dict(
                id=103,
                image_id=9,
                category_id=1,
                iscrowd=1,
                segmentation=dict(size=[h1, w1], counts=mask_to_runs(crowd))),
            # ... and a dog (compressed RLE) partly over the person
            dict(
                id=104,
                image_id=9,
                category_id=18,
                iscrowd=0,
                segmentation=dict(
                    size=[h1, w1],
                    counts=encode_rle_string(mask_to_runs(dog)))),
            # the hand-worked compressed RLE, a traffic light
            dict(
                id=201,
                image_id=25,
                category_id=10,
                iscrowd=0,
                segmentation=dict(size=[6, 8], counts='0X15jNL')),
            dict(
                id=401,
                image_id=34,
                category_id=3,
                iscrowd=1,
                segmentation=dict(
                    size=[h4, w4], counts=mask_to_runs(only_crowd))),
        ])
    val = dict(
        categories=copy.deepcopy(CATEGORIES),
        images=[
            dict(
                id=42,
                file_name='COCO_val2014_000000000042.jpg',
                height=18,
                width=22)
        ],
        annotations=[
            dict(
                id=501,
                image_id=42,
                category_id=10,
                iscrowd=0,
                segmentation=[[2.0, 2.0, 12.0, 2.5, 11.0, 14.0]]),
            dict(
                id=502,
                image_id=42,
                category_id=10,
                iscrowd=0,
                segmentation=[[14.0, 3.0, 20.0, 3.0, 20.0, 16.0, 14.0, 16.0]]),
        ])
    coco = dict(train2014=train, val2014=val)
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    for split, data in coco.items():
        os.makedirs(osp.join(root, split), exist_ok=True)
        for img in data['images']:
            pixels = rng.integers(0, 256, (img['height'], img['width'], 3))
            cv2.imwrite(
                osp.join(root, split, img['file_name']),
                pixels.astype(np.uint8))
        with open(
                osp.join(root, 'annotations', f'instances_{split}.json'),
                'w') as f:
            json.dump(data, f)
    return coco


def expected_outputs(data):
    """Label maps, split and labels computed independently of the tool."""
    maps, labels, bands = {}, {}, {}
    for img in data['images']:
        h, w = img['height'], img['width']
        stem = osp.splitext(img['file_name'])[0]
        drawn, band = [], np.zeros((h, w), bool)
        for ann in data['annotations']:
            if ann['image_id'] != img['id']:
                continue
            seg = ann['segmentation']
            if isinstance(seg, list):
                mask = point_in_polygons(seg, h, w)
                band |= boundary_distance(seg, h, w) <= 1.0
            else:
                runs = seg['counts']
                if isinstance(runs, str):
                    runs = prep.decode_rle_string(runs)
                mask = expand_runs(runs, h, w)
            value = 255 if ann['iscrowd'] else CAT_LABEL[ann['category_id']]
            drawn.append((mask.sum(), ann['id'], value, mask))
            if not ann['iscrowd']:
                labels.setdefault(stem, set()).add(value)
        label = np.zeros((h, w), np.uint8)
        for _, _, value, mask in sorted(drawn, key=lambda t: (-t[0], t[1])):
            label[mask] = value
        maps[stem], bands[stem] = label, band
    return maps, {k: sorted(v) for k, v in sorted(labels.items())}, bands


def _outputs(root):
    files = {}
    for folder in ('SegmentationClass', 'ImageSets', 'ImageLabels'):
        for dirpath, _, names in os.walk(osp.join(root, folder)):
            for name in names:
                path = osp.join(dirpath, name)
                files[path] = os.stat(path).st_mtime_ns
    path = osp.join(root, 'classes.txt')
    files[path] = os.stat(path).st_mtime_ns
    return files


@pytest.fixture
def coco(tmp_path):
    root = str(tmp_path / 'coco')
    return root, make_coco(root)


def _read_lines(path):
    with open(path) as f:
        return f.read().split('\n')[:-1]


def check_outputs(root, coco_data):
    assert _read_lines(osp.join(root, 'classes.txt')) == CLASSES
    all_maps = {}
    for split, data in coco_data.items():
        maps, labels, bands = expected_outputs(data)
        all_maps.update(maps)
        assert _read_lines(osp.join(root, 'ImageSets',
                                    f'{split}.txt')) == sorted(labels)
        assert read_label_file(
            osp.join(root, 'ImageLabels', f'{split}.txt'), CLASSES) == labels
        out_dir = osp.join(root, 'SegmentationClass', split)
        assert sorted(os.listdir(out_dir)) == sorted(f'{s}.png' for s in maps)
        for stem, ref in maps.items():
            with Image.open(osp.join(out_dir, f'{stem}.png')) as img:
                assert img.mode == 'P'
                got = np.array(img)
            assert got.shape == ref.shape
            # exact away from the polygon outlines
            np.testing.assert_array_equal(got[~bands[stem]], ref[~bands[stem]])
            # on them, one of the image's values
            assert set(np.unique(got)) <= set(np.unique(ref)) | {0}
    return all_maps


def test_convert_function(coco):
    root, coco_data = coco
    summaries = prep.prepare_coco(root, workers=0, progress=False)
    assert summaries['train2014'] == dict(
        images=4,
        written=4,
        skipped=0,
        in_split=2,
        files=[
            osp.join(root, 'classes.txt'),
            osp.join(root, 'ImageSets', 'train2014.txt'),
            osp.join(root, 'ImageLabels', 'train2014.txt')
        ],
        classes=CLASSES)
    maps = check_outputs(root, coco_data)
    # the special cases are where they should be
    img9 = maps['COCO_train2014_000000000009']
    got9 = np.array(
        Image.open(
            osp.join(root, 'SegmentationClass', 'train2014',
                     'COCO_train2014_000000000009.png')))
    assert set(np.unique(img9)) == {0, 1, 2, 4, 255}
    assert got9[12, 13] == 2  # the car over the person
    assert got9[5, 30] == 255  # the crowd (smaller) over the person
    assert got9[3, 36] == 255  # crowd beyond the person
    assert got9[22, 30] == 4  # the dog over the person
    hand = np.zeros((6, 8), np.uint8)
    hand[:, :6] = 3
    hand[:4, 6] = 3
    hand[3:5, 7] = 3
    np.testing.assert_array_equal(maps['COCO_train2014_000000000025'], hand)
    got25 = np.array(
        Image.open(
            osp.join(root, 'SegmentationClass', 'train2014',
                     'COCO_train2014_000000000025.png')))
    np.testing.assert_array_equal(got25, hand)
    assert not maps['COCO_train2014_000000000030'].any()
    assert set(np.unique(maps['COCO_train2014_000000000034'])) == {0, 255}
    # the label file names the class with a space with an underscore
    with open(osp.join(root, 'ImageLabels', 'train2014.txt')) as f:
        assert f.read() == ('COCO_train2014_000000000009 person car dog\n'
                            'COCO_train2014_000000000025 traffic_light\n')


def test_resume(coco):
    root, coco_data = coco
    prep.prepare_coco(root, workers=0, progress=False)
    before = _outputs(root)
    summaries = prep.prepare_coco(root, workers=0, progress=False)
    for s in summaries.values():
        assert s['written'] == 0 and s['files'] == []
        assert s['skipped'] == s['images']
    assert _outputs(root) == before
    # a deleted map is written again, the same
    path = osp.join(root, 'SegmentationClass', 'train2014',
                    'COCO_train2014_000000000009.png')
    with open(path, 'rb') as f:
        content = f.read()
    os.remove(path)
    summaries = prep.prepare_coco(
        root, splits=['train2014'], workers=0, progress=False)
    assert summaries['train2014']['written'] == 1
    assert summaries['train2014']['files'] == []
    with open(path, 'rb') as f:
        assert f.read() == content
    # a damaged split file is rewritten
    split = osp.join(root, 'ImageSets', 'train2014.txt')
    with open(split, 'w') as f:
        f.write('x\n')
    summaries = prep.prepare_coco(
        root, splits=['train2014'], workers=0, progress=False)
    assert summaries['train2014']['files'] == [split]
    check_outputs(root, coco_data)


def test_cli_subprocess_with_workers(coco):
    root, coco_data = coco
    proc = subprocess.run([sys.executable, TOOL, root, '--workers', '2'],
                          cwd=REPO,
                          capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    assert 'train2014: 4 images, 4 label maps written' in proc.stdout
    check_outputs(root, coco_data)


def test_label_file_round_trips_names_with_spaces(tmp_path):
    """'traffic light' is written as traffic_light and read back in either
    form; two classes that share a token are refused."""
    names = ['background', 'traffic light', 'dog']
    path = str(tmp_path / 'labels.txt')
    write_label_file(path, {'img': [1, 2], 'other': []}, names)
    assert open(path).read().split('\n')[0] == 'img traffic_light dog'
    assert read_label_file(path, names) == {'img': [1, 2], 'other': []}
    # the converter's underscore names read the same file
    under = prep.label_file_class_names(names)
    assert under == ['background', 'traffic_light', 'dog']
    assert read_label_file(path, under) == {'img': [1, 2], 'other': []}
    with pytest.raises(ValueError, match='same label-file token'):
        write_label_file(path, {'img': [1]}, ['background', 'a b', 'a_b'])
    with pytest.raises(ValueError, match='occur twice'):
        prep.label_file_class_names(['a b', 'a_b'])


# ----------------------------------------------------------------------------
# Errors name the JSON entry
# ----------------------------------------------------------------------------


def _break(root, coco_data, edit):
    data = copy.deepcopy(coco_data['train2014'])
    edit(data)
    with open(osp.join(root, 'annotations', 'instances_train2014.json'),
              'w') as f:
        json.dump(data, f)


def _ann(data, ann_id):
    return next(a for a in data['annotations'] if a['id'] == ann_id)


@pytest.mark.parametrize('edit, error, message', [
    (lambda d: _ann(d, 102).update(category_id=99), ValueError,
     r'annotation 102 \(image 9\): unknown category id 99; the categories '
     r'are \[1, 3, 10, 18\]'),
    (lambda d: d['images'][1].update(file_name='missing.jpg'),
     FileNotFoundError, r'image 25 \(missing.jpg\): image file missing'),
    (lambda d: _ann(d, 101)['segmentation'][0].append(5.0), ValueError,
     r'annotation 101 \(image 9\): malformed polygon 0: odd number of '
     r'coordinates \(11\)'),
    (lambda d: _ann(d, 102)['segmentation'][1].__delitem__(slice(4, None)),
     ValueError, r'annotation 102 \(image 9\): malformed polygon 1: fewer '
     r'than 3 points \(2\)'),
    (lambda d: _ann(d, 103)['segmentation'].update(size=[40, 30]), ValueError,
     r'annotation 103 \(image 9\): RLE size \[40, 30\] \(h, w\) '
     r'does not match the image size \[30, 40\]'),
    (lambda d: _ann(d, 201)['segmentation'].update(size=[8, 6]), ValueError,
     r'annotation 201 \(image 25\): RLE size \[8, 6\]'),
    (lambda d: _ann(d, 201)['segmentation'].update(counts='0X15jN'),
     ValueError, r'annotation 201 \(image 25\): malformed RLE: the run '
     r'lengths sum to 47, not h x w = 48'),
    (lambda d: _ann(d, 201).update(image_id=77), ValueError,
     r'annotation 201 \(image 77\): no image with id 77'),
])
def test_errors_name_the_entry(coco, edit, error, message):
    root, coco_data = coco
    _break(root, coco_data, edit)
    with pytest.raises(error, match='instances_train2014.json: ' + message):
        prep.prepare_coco(
            root, splits=['train2014'], workers=0, progress=False)
    # nothing written before the whole JSON is checked
    assert not osp.exists(osp.join(root, 'SegmentationClass'))


def test_image_size_mismatch_is_an_error(coco):
    root, coco_data = coco
    _break(root, coco_data, lambda d: d['images'][2].update(height=17))
    with pytest.raises(
            ValueError,
            match=r'image 30 \(.*000030.jpg\): the '
            r'file is 12 x 16 \(w x h\), the JSON says 12 x 17'):
        prep.prepare_coco(
            root, splits=['train2014'], workers=0, progress=False)


def test_mmaff_dataset_reads_the_output(coco):
    from mmaff.datasets.voc_image_label import VOCImageLabelDataset
    root, coco_data = coco
    prep.prepare_coco(root, workers=0, progress=False)
    with open(osp.join(root, 'classes.txt')) as f:
        classes = f.read().split()
    dataset = VOCImageLabelDataset(
        data_root=root,
        data_prefix=dict(
            img_path='train2014', seg_map_path='SegmentationClass/train2014'),
        ann_file='ImageSets/train2014.txt',
        label_source='file',
        label_file='ImageLabels/train2014.txt',
        metainfo=dict(classes=classes),
        pipeline=[])
    infos = {dataset[i]['img_id']: dataset[i] for i in range(len(dataset))}
    assert {
        k: v['img_labels']
        for k, v in infos.items()
    } == {
        'COCO_train2014_000000000009': (1, 2, 4),
        'COCO_train2014_000000000025': (3, )
    }
    # the label maps agree with the image labels (none is hidden here)
    for img_id, info in infos.items():
        labels = np.unique(np.array(Image.open(info['seg_map_path'])))
        assert tuple(int(v) for v in labels
                     if 0 < v < 255) == info['img_labels']
