"""Facial expression (paper 002): FER2013 readers, the CNN-BiLSTM and its baselines, recipe, prediction.

    from affectlens.expression.predict import predict_images, ExpressionPredictor
    predict_images([face_rgb_or_grey, ...])   # shipped FER2013 weights → [{"label", "confidence", "probs"}]
"""
