# The paper's recipe on VOC 2012 + SBD, ResNet-38 throughout, one command:
#   python tools/run_pipeline.py THIS_CONFIG [--launcher pytorch --gpus 4]
#   python tools/run_pipeline.py THIS_CONFIG --smoke    # minutes: a check
#   python tools/run_pipeline.py THIS_CONFIG --dry-run  # the commands
# Every stage is a standard tool run. The files stages hand over are the
# hand-overs of configs/_base_/handovers.py; each stage runs with
# handover_root=work_dir, so another work_dir moves them all.
_base_ = ['../_base_/handovers.py']
work_dir = 'work_dirs/affinitynet_resnet38d_voc12aug'
cam_config = 'configs/affinitynet/affinitynet-cam_resnet38d_4xb4-15e_voc12aug-448x448.py'  # noqa: E501
aff_config = 'configs/affinitynet/affinitynet_resnet38d_4xb2-8e_voc12aug-448x448.py'  # noqa: E501
seg_config = 'configs/affinitynet/affinitynet-seg_resnet38d_4xb4-40k_voc12aug-512x512_affinitynet-pseudo.py'  # noqa: E501
seg_name = 'seg_resnet38d'  # names seg_config's stages, work dir and row
seg_work_dir = '{work_dir}/{seg_name}'
workers = 8  # processes of the data check
trainaug = ('test_dataloader.dataset.ann_file='
            'ImageSets/Segmentation/trainaug.txt '
            'test_dataloader.dataset.data_prefix.seg_map_path='
            'SegmentationClassAug').split()
# the background threshold the CAM sweep chose, for the stages that use it
measured = [
    'handovers.cam_bg_threshold='
    '{metric:{handovers.cam_metrics}:bg_threshold}'
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
        args=['{cam_config}', '--work-dir', '{handovers.cam_work_dir}'],
        distributed=True,
        resume=True,
        resume_dir='{handovers.cam_work_dir}'),
    # CAMs (and confident regions) of the 1,464 train images, scored
    # (threshold sweep)
    dict(
        name='cam_export_train',
        script='tools/test.py',
        args=[
            '{cam_config}', '{handovers.cam_work_dir}', '--work-dir',
            '{handovers.cam_work_dir}', '--metrics-out',
            '{handovers.cam_metrics}'
        ],
        distributed=True,
        summary=dict(key='cam', fields=['mIoU', 'bg_threshold'])),
    # CAMs and (2.) confident regions of train_aug, the regions scored
    # (SBD images have masks in SegmentationClassAug only)
    dict(
        name='cam_export_trainaug',
        script='tools/test.py',
        args=[
            '{cam_config}', '{handovers.cam_work_dir}', '--work-dir',
            '{handovers.cam_work_dir}', '--metrics-out',
            '{work_dir}/cam_trainaug_metrics.json', '--cfg-options'
        ] + trainaug,
        distributed=True,
        summary=dict(
            key='confident_regions',
            fields=[
                'fg_precision', 'bg_precision', 'unsure_fraction',
                'fg_recall', 'bg_recall'
            ])),
    # 3. AffinityNet on the confident regions
    dict(
        name='aff_train',
        script='tools/train.py',
        args=['{aff_config}', '--work-dir', '{handovers.aff_work_dir}'],
        distributed=True,
        resume=True,
        resume_dir='{handovers.aff_work_dir}'),
    # 4. random walk (+ dCRF) pseudo labels of train, scored
    dict(
        name='rw_export_train',
        script='tools/test.py',
        args=[
            '{aff_config}', '{handovers.aff_work_dir}', '--work-dir',
            '{handovers.aff_work_dir}', '--metrics-out',
            '{work_dir}/rw_metrics.json', '--cfg-options'
        ] + measured,
        distributed=True,
        summary=[
            dict(key=key, fields={f'{name}/mIoU': 'mIoU'})
            for key, name in (('cam_at_rw', 'CAM'), ('rw', 'RW'), ('rw_crf',
                                                                   'RW+dCRF'))
        ]),
    # ... and of train_aug (finished train images are skipped)
    dict(
        name='rw_export_trainaug',
        script='tools/test.py',
        args=[
            '{aff_config}', '{handovers.aff_work_dir}', '--work-dir',
            '{handovers.aff_work_dir}', '--cfg-options'
        ] + measured + trainaug,
        distributed=True),
    # 5. segmentation network on the RW + dCRF labels, tested on val
    dict(
        name='{seg_name}_train',
        script='tools/train.py',
        args=['{seg_config}', '--work-dir', '{seg_work_dir}'],
        distributed=True,
        resume=True,
        resume_dir='{seg_work_dir}'),
    dict(
        name='{seg_name}_test',
        script='tools/test.py',
        args=[
            '{seg_config}', '{seg_work_dir}', '--work-dir', '{seg_work_dir}',
            '--metrics-out', '{work_dir}/{seg_name}_metrics.json'
        ],
        distributed=True,
        summary=dict(key='{seg_name}', fields=['mIoU'])),
]
