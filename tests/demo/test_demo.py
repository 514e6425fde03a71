"""The demo's frame: steps run, metrics.json and a self-contained report.html are written.

Each room tests its own demo step; here the media step runs end to end through the CLI."""
import json

from affectlens.cli import main


def test_demo_media_step_writes_report_and_metrics(tmp_path, capsys):
    try:
        main(["demo", "--out", str(tmp_path), "--only", "media"])
    except SystemExit as e:
        assert e.code in (0, None)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["media"]["frames"] == [5, 3, 180, 320]
    assert metrics["media"]["log_mels"] == [5, 1, 128, 251]
    html = (tmp_path / "report.html").read_text()
    assert "media" in html and "data:image/png;base64," in html and "http" not in html.split("<body", 1)[1]
    assert "report.html" in capsys.readouterr().out
