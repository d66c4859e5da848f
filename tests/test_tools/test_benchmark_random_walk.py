# Copyright (c) mmaff contributors. All rights reserved.
"""``tools/analysis_tools/benchmark_random_walk.py`` as documented in
``docs/benchmarks.md``: both formulations agree, the report is complete,
and the competing process it starts is bounded and stopped."""
import json
import os.path as osp
import sys
import time

from mmaff_testing import load_tool, run_tool_process

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(REPO, 'tools/analysis_tools/benchmark_random_walk.py')


def test_voc_case_sparse_matches_dense(tmp_path):
    out = tmp_path / 'walk.json'
    text = run_tool_process(
        [TOOL, '--cases', 'voc', '--repeat', '1', '--no-busy', '--out', out],
        cwd=REPO)
    rows = json.loads(out.read_text())
    assert len(rows) == 1
    row = rows[0]
    assert row['load'] == 'quiet' and row['n'] == 47 * 63
    # the sparse walk (a Chebyshev series of T) is the dense T^256 v
    assert row['rel_diff'] < 1e-4 and row['agree'] > 0.999
    assert row['sparse_s'] > 0 and row['dense_s'] > 0
    assert row['dense_matrix'] == 4 * (47 * 63)**2
    # the walk's own thread rule: 4 walked channels at VOC size -> 1
    assert row['threads'] == 1
    assert '| 500x375 image (VOC), grid 47x63 | quiet | 2961 |' in text


def test_busy_process_is_bounded_and_stopped():
    tool = load_tool('tools/analysis_tools/benchmark_random_walk.py',
                     '_mmaff_benchmark_random_walk')
    start = time.perf_counter()
    proc = tool.start_busy(limit=60)
    assert proc.poll() is None  # running beside the measurements
    tool.stop_busy(proc)
    assert proc.poll() is not None
    assert time.perf_counter() - start < 30
    # on its own it ends at its limit
    proc = tool.start_busy(limit=0.5)
    assert proc.wait(timeout=30) == 0
    sys.modules.pop('_mmaff_benchmark_random_walk', None)
