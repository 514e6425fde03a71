"""Media I/O: probe, time-exact frame sampling, aligned audio windows, log-mel, images, a writer that
keeps the source's frame rate, time base and audio packets, and ``transform_video`` (decode → a
per-frame function → encode, with the source's timing and audio)."""
from affectlens.media.audio import SAMPLE_RATE, audio_windows, load_audio, log_mel
from affectlens.media.video import MediaInfo, AudioInfo, decoded_frames, frame_times, iter_frames, open_media, probe, sample_frames, writable_planes
from affectlens.media.pipeline import transform_video
from affectlens.media.writer import VideoWriter, write_video

__all__ = [
    "SAMPLE_RATE", "AudioInfo", "MediaInfo", "VideoWriter", "audio_windows", "decoded_frames", "frame_times", "iter_frames",
    "load_audio", "log_mel", "open_media", "probe", "sample_frames", "transform_video", "writable_planes", "write_video",
]
