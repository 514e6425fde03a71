"""Multi-label video tagging on YouTube-8M (paper 003: video, audio and text).

Modules: ``tfrecord`` (the TFRecord/protobuf codec, no TensorFlow), ``data`` (shards, splits,
streaming), ``models`` (logistic, mixture of experts, Deep Bag of Frames, LSTM, TextCNN, keyword
classifier), ``text`` (preprocessing, unigram, keyword histogram), ``ensemble`` (mean / max /
random forest), ``recipe`` (train, evaluate, predict, Table 4's ensemble), ``ablation`` (Tables
5–6), ``synth`` (synthetic text, frame-level features, demo data), ``demo``, ``cli``
(``affectlens videotag …``). Metrics live in ``affectlens.metrics.multilabel``.
"""
