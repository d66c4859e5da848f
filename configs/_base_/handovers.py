# The files one stage hands to the next, one key each (see docs/method.md,
# "Hand-overs"). Stage configs refer to them as '{handovers.NAME}'; mmaff's
# tools fill them in after --cfg-options, so
#   --cfg-options handover_root=DIR      moves all of them (a pipeline
#                                        passes its work_dir), and
#   --cfg-options handovers.cams=DIR     moves one.
handover_root = 'work_dirs/affinitynet_resnet38d_voc12aug'
handovers = dict(
    # stage 1: the CAM classifier's work dir (a work dir stands for the
    # checkpoint it saved last), its CAM files and the background threshold
    # its sweep chose (tools/run_pipeline.py passes the measured one)
    cam_work_dir='{handover_root}/cam',
    cams='{handover_root}/cams',
    cam_metrics='{handover_root}/cam_metrics.json',
    cam_bg_threshold=0.2,
    # stage 2: confident-region maps (fg ids, 0 bg, 255 unsure)
    conf='{handover_root}/conf',
    # stage 3: AffinityNet's work dir
    aff_work_dir='{handover_root}/aff',
    # stage 4: random-walk labels, and after the dCRF (stage 5 trains on it)
    pseudo_rw='{handover_root}/pseudo_rw',
    pseudo_rw_crf='{handover_root}/pseudo_rw_crf')
