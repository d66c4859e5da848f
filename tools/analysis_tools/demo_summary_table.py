# Copyright (c) mmaff contributors. All rights reserved.
"""The README's demo table, printed from a demo run's ``summary.json``.

Usage::

    python tools/analysis_tools/demo_summary_table.py \\
        work_dirs/demo/summary.json

The README's table is this command's output for the run it reports (a copy
of that run's summary is ``docs/demo_summary.json``; a test checks that the
README holds this tool's table of it).
"""
import argparse
import json
from typing import Optional, Sequence

SCORED = 'train images less the held-out ones, real masks'


def _pct(value: float) -> str:
    return f'{100 * value:.1f} %'


def summary_table(summary: dict) -> str:
    """Markdown table of a demo summary (mIoU in %).

    Args:
        summary (dict): ``summary.json`` of the demo pipeline.

    Returns:
        str: The table, one row per stage that the summary has.
    """
    rows = ['| stage | measured on | summary key | figure |',
            '| --- | --- | --- | --- |']

    def row(stage, where, key, figure):
        rows.append(f'| {stage} | {where} | `{key}` | {figure} |')

    base = summary.get('cam_baselines', {})
    if base:
        row('trivial: all background', SCORED,
            'cam_baselines.all_background', f"{base['all_background']:.2f}")
        row('trivial: centred blob of the image\'s classes (knows the '
            'labels)', 'same', 'cam_baselines.centre_blob',
            f"{base['centre_blob']:.2f}")
    cam = summary.get('cam')
    if cam:
        row(f"1 CAM (background threshold {cam['bg_threshold']:.2f}, chosen "
            'on the held-out images)', 'same', 'cam', f"**{cam['mIoU']:.2f}**")
    conf = summary.get('confident_regions')
    if conf:
        row('2 confident regions: precision of confident fg / bg; recall of '
            'fg / bg; unsure fraction', 'same', 'confident_regions',
            ' / '.join(
                _pct(conf[k])
                for k in ('fg_precision', 'bg_precision', 'fg_recall',
                          'bg_recall', 'unsure_fraction')))
    tune = summary.get('rw_tune')
    if tune:
        row('4 the walk\'s settings, chosen on the held-out images (their '
            'best mIoU, in brackets)', 'held-out train images', 'rw_tune',
            f"alpha {tune['alpha']:g}, beta {tune['beta']:g}, "
            f"{tune['steps']} steps ({tune['mIoU']:.2f})")
    for key, stage in (('cam_at_rw', '4 CAM, from the CAM files, as the '
                        'walk starts from it'),
                       ('rw', '4 CAM + random walk'),
                       ('rw_crf',
                        '4 CAM + random walk + dCRF (the pseudo labels)')):
        if key in summary:
            figure = f"{summary[key]['mIoU']:.2f}"
            if key != 'cam_at_rw':
                figure = f'**{figure}**'
            row(stage, 'same', key, figure)
    if 'cam_at_rw' in summary and 'rw' in summary:
        ratio = summary['rw']['mIoU'] / summary['cam_at_rw']['mIoU']
        row('4 RW / CAM', 'same', 'rw / cam_at_rw', f'{ratio:.3f}')
    seg = summary.get('seg')
    if seg:
        row('5 segmentation network trained on the pseudo labels',
            'val images, real masks', 'seg', f"**{seg['mIoU']:.2f}**")
    return '\n'.join(rows)


def main(argv: Optional[Sequence[str]] = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('summary', help='summary.json of a demo run')
    args = parser.parse_args(argv)
    with open(args.summary, encoding='utf-8') as f:
        table = summary_table(json.load(f))
    print(table)
    return table


if __name__ == '__main__':
    main()
