# The paper's recipe on VOC 2012 + SBD, ResNet-38 throughout, one command:
#   python tools/run_pipeline.py THIS_CONFIG [--launcher pytorch --gpus 4]
#   python tools/run_pipeline.py THIS_CONFIG --smoke    # minutes: a check
#   python tools/run_pipeline.py THIS_CONFIG --dry-run  # the commands
# Every stage is a standard tool run; every hand-over (CAM files, confident
# regions, pseudo labels, checkpoints) lives under work_dir and is passed
# to the stage that reads it, so another work_dir moves them all.
work_dir = 'work_dirs/affinitynet_resnet38d_voc12aug'
cam_config = 'configs/affinitynet/affinitynet-cam_resnet38d_4xb4-15e_voc12aug-448x448.py'  # noqa: E501
aff_config = 'configs/affinitynet/affinitynet_resnet38d_4xb2-8e_voc12aug-448x448.py'  # noqa: E501
seg_config = 'configs/affinitynet/affinitynet-seg_resnet38d_4xb4-40k_voc12aug-512x512_affinitynet-pseudo.py'  # noqa: E501
seg_name = 'seg_resnet38d'  # names seg_config's stages, work dir and row
workers = 8  # processes of the data check and the confident regions
trainaug = ('test_dataloader.dataset.ann_file='
            'ImageSets/Segmentation/trainaug.txt '
            'test_dataloader.dataset.data_prefix.seg_map_path='
            'SegmentationClassAug').split()
rw_inputs = [
    'custom_hooks.0.cam_dir={work_dir}/cams',
    'test_evaluator.cam_dir={work_dir}/cams'
]
stages = [
    # 0. pre-flight: open every image, mask and annotation the stage-1
    # config lists once and report all problems before hours of training
    dict(
        name='check_data',
        script='tools/misc/check_dataset.py',
        args=['{cam_config}', '--workers', '{workers}']),
    # 1. CAM classifier on train_aug (image-level labels from the XML)
    dict(
        name='cam_train',
        script='tools/train.py',
        args=['{cam_config}', '--work-dir', '{work_dir}/cam'],
        distributed=True,
        resume=True,
        resume_dir='{work_dir}/cam'),
    # CAMs of the 1,464 train images, scored (threshold sweep)
    dict(
        name='cam_export_train',
        script='tools/test.py',
        args=[
            '{cam_config}', '{last_checkpoint:{work_dir}/cam}', '--work-dir',
            '{work_dir}/cam', '--out', '{work_dir}/cams', '--metrics-out',
            '{work_dir}/cam_metrics.json'
        ],
        distributed=True,
        summary=dict(
            key='cam',
            file='{work_dir}/cam_metrics.json',
            fields=['mIoU', 'bg_threshold'])),
    # CAMs of train_aug (SBD images have masks in SegmentationClassAug only)
    dict(
        name='cam_export_trainaug',
        script='tools/test.py',
        args=[
            '{cam_config}', '{last_checkpoint:{work_dir}/cam}', '--work-dir',
            '{work_dir}/cam', '--out', '{work_dir}/cams', '--cfg-options'
        ] + trainaug,
        distributed=True),
    # 2. confident regions of train_aug (alphas, dCRF: aff_config)
    dict(
        name='confident_regions',
        script='tools/make_confident_regions.py',
        args=[
            '--config', '{aff_config}', '--workers', '{workers}',
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
    # 3. AffinityNet on the confident regions
    dict(
        name='aff_train',
        script='tools/train.py',
        args=[
            '{aff_config}', '--work-dir', '{work_dir}/aff', '--cfg-options',
            'train_dataloader.dataset.label_dir={work_dir}/conf'
        ],
        distributed=True,
        resume=True,
        resume_dir='{work_dir}/aff'),
    # 4. random walk (+ dCRF) pseudo labels of train, scored
    dict(
        name='rw_export_train',
        script='tools/test.py',
        args=[
            '{aff_config}', '{last_checkpoint:{work_dir}/aff}', '--work-dir',
            '{work_dir}/aff', '--out', '{work_dir}/pseudo_rw',
            '--metrics-out', '{work_dir}/rw_metrics.json', '--cfg-options'
        ] + rw_inputs,
        distributed=True,
        summary=[
            dict(
                key=key,
                file='{work_dir}/rw_metrics.json',
                fields={f'{name}/mIoU': 'mIoU'})
            for key, name in (('cam_at_rw', 'CAM'), ('rw', 'RW'),
                              ('rw_crf', 'RW+dCRF'))
        ]),
    # ... and of train_aug (finished train images are skipped)
    dict(
        name='rw_export_trainaug',
        script='tools/test.py',
        args=[
            '{aff_config}', '{last_checkpoint:{work_dir}/aff}', '--work-dir',
            '{work_dir}/aff', '--out', '{work_dir}/pseudo_rw', '--cfg-options'
        ] + rw_inputs + trainaug,
        distributed=True),
    # 5. segmentation network on the RW + dCRF labels, tested on val
    dict(
        name='{seg_name}_train',
        script='tools/train.py',
        args=[
            '{seg_config}', '--work-dir', '{work_dir}/{seg_name}',
            '--cfg-options',
            'train_dataloader.dataset.label_dir={work_dir}/pseudo_rw_crf'
        ],
        distributed=True,
        resume=True,
        resume_dir='{work_dir}/{seg_name}'),
    dict(
        name='{seg_name}_test',
        script='tools/test.py',
        args=[
            '{seg_config}', '{last_checkpoint:{work_dir}/{seg_name}}',
            '--work-dir', '{work_dir}/{seg_name}', '--metrics-out',
            '{work_dir}/{seg_name}_metrics.json'
        ],
        distributed=True,
        summary=dict(
            key='{seg_name}',
            file='{work_dir}/{seg_name}_metrics.json',
            fields=['mIoU'])),
]
