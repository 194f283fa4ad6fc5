from easydict import EasyDict as edict

# A small IResNet on an ft-synth dataset, for the demo and the end-to-end tests: trains on a
# couple of CPU cores in a few minutes and verifies on the held-out pairs of lfw.bin,
# cfp_fp.bin and agedb_30.bin.
#   ft-synth data/synth --classes 128 --per-class 20 --seed 1
#   ft-ingest data/synth data/synth/train.lmdb --shuffle --seed 7
#   ft-train configs/synth_r18.py rec=data/synth output=work_dirs/synth_r18

config = edict()
config.margin_list = (1.0, 0.5, 0.0)
config.network = "r18"
config.width = 8                 # base channels (64 in the real r18)
config.blocks = (1, 1, 1, 1)     # IBasicBlocks per stage (r18: (2, 2, 2, 2))
config.resume = False
config.save_all_states = True
config.output = None
config.embedding_size = 128
config.sample_rate = 1.0
config.fp16 = False
config.momentum = 0.9
config.weight_decay = 5e-4
config.batch_size = 32
config.lr = 0.1
config.verbose = 100
config.frequent = 10
config.dali = False
config.seed = 2048
config.num_workers = 2

config.rec = "data/synth"
config.num_classes = 128
config.num_image = None          # taken from the dataset
config.num_epoch = 4
config.warmup_epoch = 0
config.val_targets = ['lfw', 'cfp_fp', "agedb_30"]
