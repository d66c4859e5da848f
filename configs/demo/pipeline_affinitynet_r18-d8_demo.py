# The demo pipeline; `make demo` runs
#   python tools/run_pipeline.py THIS_CONFIG
# Every stage is a standard tool run; finished stages are skipped. The files
# stages hand over are the hand-overs of configs/_base_/handovers.py; each
# stage runs with handover_root=work_dir.
_base_ = ['../_base_/handovers.py']
work_dir = 'work_dirs/demo'
cam_config = 'configs/demo/affinitynet-cam_r18-d8_1xb16-3k_demo-112x112.py'  # noqa: E501
aff_config = 'configs/demo/affinitynet_r18-d8_1xb8-1k_demo-96x96.py'  # noqa: E501
seg_config = 'configs/demo/fcn_r18-d8_1xb8-1.5k_demo-112x112_affinitynet-pseudo.py'  # noqa: E501
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
        args=['{cam_config}', '--out', '{work_dir}/cam_baselines.json'],
        summary=dict(
            key='cam_baselines', file='{work_dir}/cam_baselines.json')),
    dict(
        name='cam_train',
        script='tools/train.py',
        args=['{cam_config}', '--work-dir', '{handovers.cam_work_dir}'],
        distributed=True,
        resume=True,
        resume_dir='{handovers.cam_work_dir}'),
    dict(
        name='cam_export',
        script='tools/test.py',
        args=[
            '{cam_config}', '{handovers.cam_work_dir}', '--work-dir',
            '{handovers.cam_work_dir}', '--metrics-out',
            '{handovers.cam_metrics}'
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
        args=['{aff_config}', '--work-dir', '{handovers.aff_work_dir}'],
        distributed=True,
        resume=True,
        resume_dir='{handovers.aff_work_dir}'),
    # The walk's alpha, beta and steps: those whose random-walk labels are
    # best on the held-out images (labelled, never scored in the table),
    # with the learnt affinities; the export below walks with them (the
    # dCRF after the walk keeps its fixed, image-size-scaled parameters).
    dict(
        name='rw_tune',
        script='tools/analysis_tools/diagnose_random_walk.py',
        args=[
            '{aff_config}', '{handovers.aff_work_dir}', '--held-out',
            '--walk-only', '--tune-on', 'rw', '--alphas', '1,2,3,4',
            '--betas', '8,16,32', '--steps', '2,4,8,16,32,64', '--out',
            '{work_dir}/rw_tune.json', '--cfg-options',
            'handover_root={work_dir}', 'handovers.cam_bg_threshold='
            '{metric:{handovers.cam_metrics}:bg_threshold}'
        ],
        smoke_args=['test_dataloader.dataset.indices={smoke_images}'],
        summary=dict(
            key='rw_tune',
            file='{work_dir}/rw_tune.json',
            fields=['alpha', 'beta', 'steps', 'mIoU'])),
    dict(
        name='rw_export',
        script='tools/test.py',
        args=[
            '{aff_config}', '{handovers.aff_work_dir}', '--work-dir',
            '{handovers.aff_work_dir}', '--metrics-out',
            '{work_dir}/rw_metrics.json', '--cfg-options',
            'handovers.cam_bg_threshold='
            '{metric:{handovers.cam_metrics}:bg_threshold}',
            'model.test_cfg.alpha={metric:{work_dir}/rw_tune.json:alpha}',
            'model.test_cfg.beta={metric:{work_dir}/rw_tune.json:beta}',
            'model.test_cfg.steps={metric:{work_dir}/rw_tune.json:steps}'
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
        args=['{seg_config}', '--work-dir', '{seg_work_dir}'],
        distributed=True,
        resume=True,
        resume_dir='{seg_work_dir}'),
    dict(
        name='seg_test',
        script='tools/test.py',
        args=[
            '{seg_config}', '{seg_work_dir}', '--work-dir', '{seg_work_dir}',
            '--metrics-out', '{work_dir}/seg_metrics.json'
        ],
        distributed=True,
        summary=dict(key='seg', fields=['mIoU'])),
    dict(
        name='figure',
        script='tools/analysis_tools/visualize_pipeline.py',
        args=[
            '{cam_config}', '{handovers.cam_work_dir}', '{aff_config}',
            '{handovers.aff_work_dir}', '{seg_config}', '{seg_work_dir}',
            '--num', '4', '--out', '{work_dir}/pipeline.png',
            '--cam-bg-threshold',
            '{metric:{handovers.cam_metrics}:bg_threshold}',
            '--aff-cfg-options',
            'model.test_cfg.alpha={metric:{work_dir}/rw_tune.json:alpha}',
            'model.test_cfg.beta={metric:{work_dir}/rw_tune.json:beta}',
            'model.test_cfg.steps={metric:{work_dir}/rw_tune.json:steps}'
        ]),
]
