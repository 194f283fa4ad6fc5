from easydict import EasyDict as edict

# base.py's Weights & Biases and DALI keys, set as a user of arcface_torch would: accepted, and
# each one that asks for something facetrain does not do gets one "ignored" note.
config = edict()
config.network = "r18"
config.output = None
config.rec = "/train_tmp/faces_webface_112x112"
config.num_classes = 10572
config.num_image = 490623
config.num_epoch = 34
config.warmup_epoch = 0
config.val_targets = ['lfw']
config.dali = False
config.dali_aug = True
config.wandb_key = "0123456789abcdef"
config.suffix_run_name = "casia_" + config.network
config.using_wandb = True
config.wandb_entity = "entity"
config.wandb_project = "faces"
config.wandb_log_all = True
config.save_artifacts = True
config.wandb_resume = False
config.notes = "first try"
