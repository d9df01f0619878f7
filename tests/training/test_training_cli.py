from pathlib import Path

import pytest

from training.__main__ import main
from training.checkpoint import load_checkpoint


def test_cli_smoke_run_prints_metrics_and_writes_a_loadable_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model.pt"
    main(
        [
            "--epochs",
            "1",
            "--conditioning",
            "additive",
            "--seed",
            "2",
            "--samples-per-class",
            "5",
            "--out",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert "epoch   1/1" in printed and "conditional accuracy" in printed
    loaded = load_checkpoint(out.read_bytes())
    assert loaded.cfg.conditioning == "additive" and loaded.cfg.seed == 2
    assert loaded.classifier is not None and 0.0 <= loaded.metrics["conditional_accuracy"] <= 1.0
