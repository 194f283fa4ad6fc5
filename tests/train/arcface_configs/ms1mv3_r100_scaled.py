from easydict import EasyDict as edict

# A learning rate scaled with the batch, an output folder built from pieces, a verbose
# interval written as a power, and a value spread over lines.
config = edict()
config.margin_list = (1.0, 0.5, 0.0)
config.network = "r100"
config.resume = False
config.output = "work_dirs/" + "ms1mv3" + "_" + config.network
config.embedding_size = 512
config.sample_rate = 1.0
config.fp16 = True
config.momentum = 0.9
config.weight_decay = 5e-4
config.batch_size = 128
config.lr = 0.1 * config.batch_size * 8 / 1024
config.verbose = 10 ** 4
config.dali = False

config.rec = "/train_tmp/ms1m-retinaface-t1"
config.num_classes = 93431
config.num_image = 5179510
config.num_epoch = 20
config.warmup_epoch = 0
config.val_targets = ['lfw', 'cfp_fp',
                      "agedb_30"]
config.frequent = (config.verbose
                   // 1000)
