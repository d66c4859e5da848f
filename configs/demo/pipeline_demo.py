# The demo pipeline: `make demo` runs
#   python tools/run_pipeline.py configs/demo/pipeline_demo.py
# Every stage is a standard tool run; finished stages are skipped. Every
# hand-over (CAM files, confident regions, pseudo labels, checkpoints) lives
# under work_dir and is passed to the stage that reads it.
work_dir = 'work_dirs/demo'
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
        summary=dict(key='cam_baselines', file='{work_dir}/cam_baselines.json')),
    dict(
        name='cam_train',
        script='tools/train.py',
        args=['configs/demo/cam_demo.py', '--work-dir', '{work_dir}/cam'],
        distributed=True,
        resume=True,
        resume_dir='{work_dir}/cam'),
    dict(
        name='cam_export',
        script='tools/test.py',
        args=[
            'configs/demo/cam_demo.py',
            dict(last_checkpoint='{work_dir}/cam'),
            '--work-dir', '{work_dir}/cam', '--out', '{work_dir}/cams',
            '--metrics-out', '{work_dir}/cam_metrics.json'
        ],
        distributed=True,
        summary=dict(
            key='cam',
            file='{work_dir}/cam_metrics.json',
            fields=['mIoU', 'bg_threshold'])),
    dict(
        name='confident_regions',
        script='tools/make_confident_regions.py',
        args=[
            '--config', 'configs/demo/aff_demo.py', '--workers', '2',
            '--stats-out', '{work_dir}/confident_regions_stats.json',
            '--cfg-options', 'confident_regions.cam_dir={work_dir}/cams',
            'confident_regions.out_dir={work_dir}/conf'
        ],
        smoke_args=['confident_regions.dataset.indices={smoke_images}'],
        summary=dict(
            key='confident_regions',
            file='{work_dir}/confident_regions_stats.json',
            fields=[
                'fg_precision', 'bg_precision', 'unsure_fraction',
                'fg_recall', 'bg_recall'
            ])),
    dict(
        name='aff_train',
        script='tools/train.py',
        args=[
            'configs/demo/aff_demo.py', '--work-dir', '{work_dir}/aff',
            '--cfg-options',
            'train_dataloader.dataset.label_dir={work_dir}/conf'
        ],
        distributed=True,
        resume=True,
        resume_dir='{work_dir}/aff'),
    dict(
        name='rw_export',
        script='tools/test.py',
        args=[
            'configs/demo/aff_demo.py',
            dict(last_checkpoint='{work_dir}/aff'), '--work-dir',
            '{work_dir}/aff', '--out', '{work_dir}/pseudo_rw',
            '--metrics-out', '{work_dir}/rw_metrics.json', '--cfg-options',
            'custom_hooks.0.cam_dir={work_dir}/cams',
            'test_evaluator.cam_dir={work_dir}/cams'
        ],
        distributed=True,
        summary=[
            dict(
                key=key,
                file='{work_dir}/rw_metrics.json',
                fields={f'{name}/mIoU': 'mIoU'})
            for key, name in (('cam_at_rw', 'CAM'), ('rw', 'RW'),
                              ('rw_crf', 'RW+dCRF'))
        ]),
    dict(
        name='seg_train',
        script='tools/train.py',
        args=[
            'configs/demo/seg_demo.py', '--work-dir', '{work_dir}/seg',
            '--cfg-options',
            'train_dataloader.dataset.label_dir={work_dir}/pseudo_rw_crf',
            'model.backbone.init_cfg.checkpoint='
            '{last_checkpoint:{work_dir}/cam}'
        ],
        distributed=True,
        resume=True,
        resume_dir='{work_dir}/seg'),
    dict(
        name='seg_test',
        script='tools/test.py',
        args=[
            'configs/demo/seg_demo.py',
            dict(last_checkpoint='{work_dir}/seg'), '--work-dir',
            '{work_dir}/seg', '--metrics-out', '{work_dir}/seg_metrics.json'
        ],
        distributed=True,
        summary=dict(
            key='seg', file='{work_dir}/seg_metrics.json', fields=['mIoU'])),
    dict(
        name='figure',
        script='tools/analysis_tools/visualize_pipeline.py',
        args=[
            'configs/demo/cam_demo.py',
            dict(last_checkpoint='{work_dir}/cam'), 'configs/demo/aff_demo.py',
            dict(last_checkpoint='{work_dir}/aff'), 'configs/demo/seg_demo.py',
            dict(last_checkpoint='{work_dir}/seg'), '--num', '4', '--out',
            '{work_dir}/pipeline.png'
        ]),
]
