# The AffinityNet recipe on MS-COCO 2014, from the official files to the
# val2014 figure, one command (from the repository root, or a working dir
# where `configs` and `projects` are linked):
#   python tools/run_pipeline.py THIS_CONFIG [--launcher pytorch --gpus 4]
#   python tools/run_pipeline.py THIS_CONFIG --smoke    # minutes: a check
#   python tools/run_pipeline.py THIS_CONFIG --dry-run  # the commands
# Every stage is a standard tool run (finished stages are skipped, an
# interrupted training resumes); the files stages hand over are the
# hand-overs of configs/_base_/handovers.py under work_dir.
_base_ = ['../../../configs/_base_/handovers.py']
work_dir = 'work_dirs/affinitynet_resnet38d_coco2014'
data_root = 'data/coco2014'  # the official files (see the project README)
cam_config = 'projects/coco2014/configs/affinitynet-cam_resnet38d_4xb4-5e_coco2014-448x448.py'  # noqa: E501
aff_config = 'projects/coco2014/configs/affinitynet_resnet38d_4xb2-2e_coco2014-448x448.py'  # noqa: E501
seg_config = 'projects/coco2014/configs/deeplabv3_r101-d8_4xb4-80k_coco2014-512x512_affinitynet-pseudo.py'  # noqa: E501
seg_name = 'seg_deeplabv3_r101'  # names seg_config's stages, work dir, row
seg_work_dir = '{work_dir}/{seg_name}'
workers = 8  # processes of the converter and the data check
# the background threshold the CAM sweep chose, for the walk's CAM column
measured = [
    'handovers.cam_bg_threshold='
    '{metric:{handovers.cam_metrics}:bg_threshold}'
]
stages = [
    # 0. the official instance JSONs -> label maps, split files, image-level
    # labels (resumable: a second run writes nothing)
    dict(
        name='prepare_data',
        script='projects/coco2014/tools/prepare_coco.py',
        args=[
            '{data_root}', '--splits', 'train2014', 'val2014', '--workers',
            '{workers}'
        ]),
    # pre-flight: open every image and mask the CAM config lists once
    dict(
        name='check_data',
        script='tools/misc/check_dataset.py',
        args=['{cam_config}', '--workers', '{workers}']),
    # 1. CAM classifier on train2014 (image-level labels from the label file)
    dict(
        name='cam_train',
        script='tools/train.py',
        args=['{cam_config}', '--work-dir', '{handovers.cam_work_dir}'],
        distributed=True,
        resume=True,
        resume_dir='{handovers.cam_work_dir}'),
    # CAMs and (2.) confident regions of train2014, both scored
    dict(
        name='cam_export_train',
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
    # 3. AffinityNet on the confident regions
    dict(
        name='aff_train',
        script='tools/train.py',
        args=['{aff_config}', '--work-dir', '{handovers.aff_work_dir}'],
        distributed=True,
        resume=True,
        resume_dir='{handovers.aff_work_dir}'),
    # 4. random walk (+ dCRF) pseudo labels of train2014, scored
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
    # 5. segmentation network on the RW + dCRF labels, tested on val2014
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
