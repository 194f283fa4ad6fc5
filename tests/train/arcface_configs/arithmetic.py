from easydict import EasyDict as edict

# Python's arithmetic as the config files may use it: // floors, % takes the divisor's sign,
# / always gives a float, ** of ints stays an int, unary minus binds looser than **.
config = edict()
config.rec = "/data/x"
config.num_classes = 2 ** 10 * 10
config.num_epoch = -7 // 2 + 14
config.warmup_epoch = config.num_epoch % -4 + 4
config.batch_size = (256 + 256) // 2 ** 2
config.frequent = -2 ** 2 + 14
config.verbose = 100 * (1 + 1)
config.seed = 7 % 3 + 2047
config.num_workers = -(-3)
config.lr = 1 / 8
config.momentum = 1 - 0.1
config.weight_decay = 5e-4 * 2 ** -1
config.sample_rate = 3 / 10
config.dropout = -7.5 % 2 / 10
config.interclass_filtering_threshold = 7.5 // -2 + 4
config.embedding_size = 2 ** 7 + 0 * 3
config.margin_list = (1.0, 0.25 * 2, 0.0)
config.val_targets = ['lfw'] + ["cfp" + "_fp"]
config.blocks = (1, 1) + (2 - 1, 1 * 1)
config.width = 2 ** 3
