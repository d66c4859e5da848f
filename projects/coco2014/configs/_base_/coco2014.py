# MS-COCO 2014 as projects/coco2014/tools/prepare_coco.py writes it (see the
# project README). Names are prefixed with `coco_` so that this base can sit
# next to a VOC stage config in a `_base_` list (mmengine refuses a key that
# two bases define); the stage configs use them as {{_base_.coco_*}}.
coco_data_root = 'data/coco2014'
# background + the 80 categories in ascending COCO category id: the order of
# the label maps' ids and the spelling of the converter's classes.txt (a
# space written as '_', as the label files write it).
coco_classes = ('background', 'person', 'bicycle', 'car', 'motorcycle',
                'airplane', 'bus', 'train', 'truck', 'boat', 'traffic_light',
                'fire_hydrant', 'stop_sign', 'parking_meter', 'bench', 'bird',
                'cat', 'dog', 'horse', 'sheep', 'cow', 'elephant', 'bear',
                'zebra', 'giraffe', 'backpack', 'umbrella', 'handbag', 'tie',
                'suitcase', 'frisbee', 'skis', 'snowboard', 'sports_ball',
                'kite', 'baseball_bat', 'baseball_glove', 'skateboard',
                'surfboard', 'tennis_racket', 'bottle', 'wine_glass', 'cup',
                'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple',
                'sandwich', 'orange', 'broccoli', 'carrot', 'hot_dog', 'pizza',
                'donut', 'cake', 'chair', 'couch', 'potted_plant', 'bed',
                'dining_table', 'toilet', 'tv', 'laptop', 'mouse', 'remote',
                'keyboard', 'cell_phone', 'microwave', 'oven', 'toaster',
                'sink', 'refrigerator', 'book', 'clock', 'vase', 'scissors',
                'teddy_bear', 'hair_drier', 'toothbrush')
coco_metainfo = dict(classes=coco_classes)
# The WSSS training set: the train2014 images with at least one non-crowd
# instance (82,081 of 82,783; the converter's ImageSets/train2014.txt), with
# their image-level labels and (for scoring only) the converter's masks.
coco_train = dict(
    type='VOCImageLabelDataset',
    data_root=coco_data_root,
    data_prefix=dict(
        img_path='train2014', seg_map_path='SegmentationClass/train2014'),
    img_suffix='.jpg',
    seg_map_suffix='.png',
    ann_file='ImageSets/train2014.txt',
    label_source='file',
    label_file='ImageLabels/train2014.txt',
    metainfo=coco_metainfo)
# The evaluation set of every COCO WSSS paper: val2014 (40,137 of 40,504
# images have a non-crowd instance), scored on the converter's masks.
coco_val = dict(
    type='VOCImageLabelDataset',
    data_root=coco_data_root,
    data_prefix=dict(
        img_path='val2014', seg_map_path='SegmentationClass/val2014'),
    img_suffix='.jpg',
    seg_map_suffix='.png',
    ann_file='ImageSets/val2014.txt',
    label_source='file',
    label_file='ImageLabels/val2014.txt',
    metainfo=coco_metainfo)
# Where a stage config alone (outside the pipeline) hands over its files;
# the pipeline passes its own work_dir instead.
coco_handover_root = 'work_dirs/affinitynet_resnet38d_coco2014'
