# Copyright (c) mmaff contributors. All rights reserved.
import importlib.util
import os.path as osp
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from mmaff.datasets.image_labels import (labels_from_mask, labels_from_xml,
                                         read_label_file, write_label_file)
from mmaff.utils.io import save_label_png

_DEMO_TOOL = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'tools',
    'dataset_converters', 'make_demo_dataset.py')


def _import_demo_tool():
    spec = importlib.util.spec_from_file_location('_mmaff_make_demo_dataset',
                                                  _DEMO_TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _names(classes, ids):
    return ' '.join(classes[i] for i in ids)


# ------------------------------------------------------------ the readers


def test_labels_from_xml(tiny_voc):
    for img_id in tiny_voc.ids:
        path = tiny_voc.path('Annotations', f'{img_id}.xml')
        assert labels_from_xml(path, tiny_voc.classes) == list(
            tiny_voc.labels[img_id]), img_id
    # img_003's bottle is only a difficult object: it still counts
    assert 5 in labels_from_xml(
        tiny_voc.path('Annotations', 'img_003.xml'), tiny_voc.classes)


@pytest.mark.parametrize('mask_dir',
                         ['SegmentationClass', 'SegmentationClassAug'])
def test_labels_from_mask(tiny_voc, mask_dir):
    for img_id in tiny_voc.ids:
        path = tiny_voc.path(mask_dir, f'{img_id}.png')
        assert labels_from_mask(path, 21) == list(tiny_voc.labels[img_id])
        # independent: the ids present other than background and 255
        present = set(np.unique(tiny_voc.masks[img_id]).tolist()) - {0, 255}
        assert labels_from_mask(path, 21) == sorted(present)


def test_labels_from_mask_custom_ignore(tmp_path):
    mask = np.array([[0, 3, 7], [7, 9, 0]], np.uint8)
    path = str(tmp_path / 'm.png')
    save_label_png(path, mask)
    # with ignore 9 and 10 classes, 9 is neither background nor a class
    assert labels_from_mask(path, 10, ignore_index=9) == [3, 7]
    assert labels_from_mask(path, 10) == [3, 7, 9]


def test_read_label_file(tmp_path):
    classes = ('background', 'cat', 'dog', 'person')
    path = tmp_path / 'labels.txt'
    path.write_text('# a comment line\n'
                    'a person cat\n'
                    '\n'
                    'b\n'
                    'c   dog\tdog  \n'
                    'd cat\n')
    assert read_label_file(str(path), classes) == {
        'a': [1, 3],
        'b': [],
        'c': [2],
        'd': [1]
    }


def test_write_label_file_format_and_round_trip(tmp_path):
    classes = ('background', 'cat', 'dog', 'person')
    labels = {'x1': [3, 1], 'x2': [], 'x3': (2, )}
    path = str(tmp_path / 'out' / 'labels.txt')
    write_label_file(path, labels, classes)
    with open(path) as f:
        assert f.read() == 'x1 cat person\nx2\nx3 dog\n'
    assert read_label_file(path, classes) == {
        'x1': [1, 3],
        'x2': [],
        'x3': [2]
    }


# -------------------------------------------------- the sources agree


def _check_sources_agree(root, ids, classes, mask_dirs, tmp_path):
    from_xml = {
        i: labels_from_xml(osp.join(root, 'Annotations', f'{i}.xml'), classes)
        for i in ids
    }
    for mask_dir in mask_dirs:
        from_mask = {
            i: labels_from_mask(
                osp.join(root, mask_dir, f'{i}.png'), len(classes))
            for i in ids
        }
        assert from_mask == from_xml, mask_dir
    # a label file written by hand (independently of write_label_file)
    hand = tmp_path / 'hand_labels.txt'
    hand.write_text(''.join(f'{i} {_names(classes, from_xml[i])}\n'
                            for i in reversed(ids)))
    assert read_label_file(str(hand), classes) == from_xml
    written = str(tmp_path / 'written_labels.txt')
    write_label_file(written, from_xml, classes)
    assert read_label_file(written, classes) == from_xml
    return from_xml


def test_sources_agree_on_fixture(tiny_voc, tmp_path):
    labels = _check_sources_agree(
        tiny_voc.root, tiny_voc.ids, tiny_voc.classes,
        ['SegmentationClass', 'SegmentationClassAug'], tmp_path)
    assert labels == {i: list(v) for i, v in tiny_voc.labels.items()}


@pytest.mark.skipif(
    not osp.isfile(_DEMO_TOOL),
    reason='tools/dataset_converters/make_demo_dataset.py does not exist '
    'yet')
def test_sources_agree_on_demo_dataset(tmp_path):
    demo = _import_demo_tool()
    root = str(tmp_path / 'demo')
    demo.generate(
        root, seed=3, num_train=5, num_val=3, size=64, show_progress=False)
    with open(osp.join(root, 'classes.txt')) as f:
        classes = [line.strip() for line in f if line.strip()]
    with open(osp.join(root, 'ImageSets', 'Segmentation',
                       'trainval.txt')) as f:
        ids = [line.strip() for line in f if line.strip()]
    assert len(ids) == 8
    labels = _check_sources_agree(
        root, ids, classes, ['SegmentationClass', 'SegmentationClassAug'],
        tmp_path)
    assert all(labels[i] for i in ids)  # 1-3 objects in every demo image


# --------------------------------------------------------------- errors


def test_read_label_file_unknown_class(tmp_path):
    path = tmp_path / 'labels.txt'
    path.write_text('a cat\nb cat zebra\n')
    with pytest.raises(ValueError) as err:
        read_label_file(str(path), ('background', 'cat'))
    assert f'{path}:2' in str(err.value)
    assert 'zebra' in str(err.value)


def test_read_label_file_background_is_not_a_label(tmp_path):
    path = tmp_path / 'labels.txt'
    path.write_text('a background\n')
    with pytest.raises(ValueError, match=re.escape(f'{path}:1')):
        read_label_file(str(path), ('background', 'cat'))


def test_read_label_file_duplicate_and_missing(tmp_path):
    path = tmp_path / 'labels.txt'
    path.write_text('a cat\n# note\na\n')
    with pytest.raises(ValueError, match=re.escape(f'{path}:3') + ".*'a'"):
        read_label_file(str(path), ('background', 'cat'))
    with pytest.raises(FileNotFoundError, match='nothere.txt'):
        read_label_file(str(tmp_path / 'nothere.txt'), ('background', ))


def test_labels_from_mask_out_of_range(tiny_voc):
    path = tiny_voc.path('SegmentationClass', 'img_001.png')
    with pytest.raises(ValueError, match=r'img_001.png.*\[12\]'):
        labels_from_mask(path, 12)  # dog (12) is beyond 0..11
    assert labels_from_mask(path, 13) == [1, 12]


def test_labels_from_mask_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match='gone.png'):
        labels_from_mask(str(tmp_path / 'gone.png'), 21)
    rgb = str(tmp_path / 'rgb.png')
    Image.fromarray(np.zeros((3, 4, 3), np.uint8)).save(rgb)
    with pytest.raises(ValueError, match='rgb.png'):
        labels_from_mask(rgb, 21)
    corrupt = tmp_path / 'corrupt.png'
    corrupt.write_bytes(b'not an image')
    with pytest.raises(ValueError, match='corrupt.png'):
        labels_from_mask(str(corrupt), 21)


def test_labels_from_xml_errors(tiny_voc, tmp_path):
    good = tiny_voc.path('Annotations', 'img_000.xml')
    corrupt = tmp_path / 'corrupt.xml'
    corrupt.write_text(open(good).read()[:-40])
    with pytest.raises(ValueError, match='corrupt.xml'):
        labels_from_xml(str(corrupt), tiny_voc.classes)
    with pytest.raises(FileNotFoundError, match='none.xml'):
        labels_from_xml(str(tmp_path / 'none.xml'), tiny_voc.classes)
    # an object whose class the dataset does not know
    unknown = tmp_path / 'unknown.xml'
    unknown.write_text(open(good).read().replace('>person<', '>zebra<'))
    with pytest.raises(ValueError, match="unknown.xml.*'zebra'"):
        labels_from_xml(str(unknown), tiny_voc.classes)
    # the same file is fine with classes that know the name
    shutil.copyfile(str(unknown), str(tmp_path / 'ok.xml'))
    assert labels_from_xml(str(tmp_path / 'ok.xml'),
                           ('background', 'zebra')) == [1]


# ------------------------------------------------ malformed label files


@pytest.mark.parametrize(
    'text', [
        '{"a": ["cat"], "b": []}\n',
        '{\n  "a": ["cat"],\n  "b": []\n}\n',
        '[["a", "cat"]]\n',
        '# labels\n\n  {"a": ["cat"]}\n',
    ],
    ids=['one-line', 'pretty', 'list', 'after-comment'])
def test_read_label_file_json_is_named(tmp_path, text):
    path = tmp_path / 'labels.json'
    path.write_text(text)
    with pytest.raises(ValueError) as err:
        read_label_file(str(path), ('background', 'cat'))
    msg = str(err.value)
    assert str(path) in msg and 'JSON' in msg
    assert '<image id> <class name>' in msg  # the expected format
    assert 'unknown class' not in msg


@pytest.mark.parametrize('text', ['a,cat\nb\n', 'a cat\nb;cat\n'])
def test_read_label_file_csv_is_named(tmp_path, text):
    # 'a,cat' would otherwise be an image id with no label at all
    path = tmp_path / 'labels.csv'
    path.write_text(text)
    with pytest.raises(ValueError) as err:
        read_label_file(str(path), ('background', 'cat'))
    assert str(path) in str(err.value)
    assert '<image id> <class name>' in str(err.value)


def test_read_label_file_binary_or_empty_is_named(tmp_path):
    path = tmp_path / 'labels.npy'
    path.write_bytes(b'\x93NUMPY\x01\x00\xff\xfe\x00binary')
    with pytest.raises(ValueError, match=re.escape(str(path))):
        read_label_file(str(path), ('background', 'cat'))
    empty = tmp_path / 'empty.txt'
    empty.write_text('# only a comment\n\n')
    with pytest.raises(ValueError, match=re.escape(str(empty)) + '.*no image'):
        read_label_file(str(empty), ('background', 'cat'))
