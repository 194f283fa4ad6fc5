from easydict import EasyDict as edict

# In the spirit of arcface_torch's speed-test configs: sizes written as products.
config = edict()
config.network = "r50"
config.resume = False
config.output = None
config.embedding_size = 512
config.sample_rate = 0.1
config.fp16 = True
config.momentum = 0.9
config.weight_decay = 5e-4
config.batch_size = 64  # total_batch_size = batch_size * num_gpus
config.lr = 0.1  # batch size is 512

config.rec = "synthetic"
config.num_classes = 300 * 10000
config.num_image = 30 * 10000
config.num_epoch = 30
config.warmup_epoch = config.num_epoch // 15
config.val_targets = []
