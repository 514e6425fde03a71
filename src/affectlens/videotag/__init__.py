"""Multi-label video tagging on YouTube-8M (paper 003: video, audio and text).

Modules: ``data`` (TFRecord/protobuf readers and writers, no TensorFlow), ``models`` (logistic,
mixture of experts, Deep Bag of Frames, LSTM), ``text`` (preprocessing, unigram, keyword
histogram, TextCNN), ``ensemble`` (mean / max / random forest), ``recipe`` and ``textrecipe``
(train, evaluate, predict, Tables 4–6), ``synth`` (synthetic text, frame-level features, demo data),
``cli`` (``affectlens videotag …``). Metrics live in ``affectlens.metrics.multilabel``.
"""
