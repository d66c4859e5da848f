# The demo pipeline: `make demo` runs
#   python tools/run_pipeline.py configs/demo/pipeline_demo.py
# Every stage is a standard tool run; finished stages are skipped. The files
# stages hand over are the hand-overs of configs/_base_/handovers.py; each
# stage runs with handover_root=work_dir.
_base_ = ['../_base_/handovers.py']
work_dir = 'work_dirs/demo'
seg_work_dir = '{work_dir}/seg'  # stage 5: read by the test and the figure
stages = [
    dict(
        name='data',
        script='tools/dataset_converters/make_demo_dataset.py',
        args=[
            'data/demo', '--seed', '0', '--num-train', '800', '--num-val',
            '100'
        ]),
    dict(
        name='cam_baselines',
        script='tools/analysis_tools/cam_baselines.py',
        args=[
            'configs/demo/cam_demo.py', '--out',
            '{work_dir}/cam_baselines.json'
        ],
        summary=dict(
            key='cam_baselines', file='{work_dir}/cam_baselines.json')),
    dict(
        name='cam_train',
        script='tools/train.py',
        args=[
            'configs/demo/cam_demo.py', '--work-dir',
            '{handovers.cam_work_dir}'
        ],
        distributed=True,
        resume=True,
        resume_dir='{handovers.cam_work_dir}'),
    dict(
        name='cam_export',
        script='tools/test.py',
        args=[
            'configs/demo/cam_demo.py', '{handovers.cam_work_dir}',
            '--work-dir', '{handovers.cam_work_dir}', '--metrics-out', '{handovers.cam_metrics}'
        ],
        distributed=True,
        summary=[
            dict(key='cam', fields=['mIoU', 'bg_threshold']),
            dict(
                key='confident_regions',
                fields=[
                    'fg_precision', 'bg_precision', 'unsure_fraction',
                    'fg_recall', 'bg_recall'
                ])
        ]),
    dict(
        name='aff_train',
        script='tools/train.py',
        args=[
            'configs/demo/aff_demo.py', '--work-dir',
            '{handovers.aff_work_dir}'
        ],
        distributed=True,
        resume=True,
        resume_dir='{handovers.aff_work_dir}'),
    dict(
        name='rw_export',
        script='tools/test.py',
        args=[
            'configs/demo/aff_demo.py', '{handovers.aff_work_dir}',
            '--work-dir', '{handovers.aff_work_dir}', '--metrics-out', '{work_dir}/rw_metrics.json', '--cfg-options',
            'handovers.cam_bg_threshold='
            '{metric:{handovers.cam_metrics}:bg_threshold}'
        ],
        distributed=True,
        summary=[
            dict(key=key, fields={f'{name}/mIoU': 'mIoU'})
            for key, name in (('cam_at_rw', 'CAM'), ('rw', 'RW'), ('rw_crf',
                                                                   'RW+dCRF'))
        ]),
    dict(
        name='seg_train',
        script='tools/train.py',
        args=['configs/demo/seg_demo.py', '--work-dir', '{seg_work_dir}'],
        distributed=True,
        resume=True,
        resume_dir='{seg_work_dir}'),
    dict(
        name='seg_test',
        script='tools/test.py',
        args=[
            'configs/demo/seg_demo.py', '{seg_work_dir}', '--work-dir',
            '{seg_work_dir}', '--metrics-out', '{work_dir}/seg_metrics.json'
        ],
        distributed=True,
        summary=dict(key='seg', fields=['mIoU'])),
    dict(
        name='figure',
        script='tools/analysis_tools/visualize_pipeline.py',
        args=[
            'configs/demo/cam_demo.py', '{handovers.cam_work_dir}',
            'configs/demo/aff_demo.py', '{handovers.aff_work_dir}',
            'configs/demo/seg_demo.py', '{seg_work_dir}', '--num', '4',
            '--out', '{work_dir}/pipeline.png'
        ]),
]
