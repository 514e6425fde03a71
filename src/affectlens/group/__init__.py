"""Group emotion in the wild from global, privacy-compliant features (paper 000).

``model`` (GroupEmotionNet: audio-only / video-only / fusion), ``data`` (VGAF reader, feature cache),
``synth`` (synthetic videos of §4.3), ``recipe`` (train / eval / predict / Table 2 ablation),
``train_module`` (GroupModule, the room's part of training on the engine), ``cli``.
Never imports the shared faces room or any face, landmark, pose, tracking, diarization or ASR library.
"""
