"""scripts/learning_curves.py: reading train.py's CSVs and drawing the two-panel PNG."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from scripts.learning_curves import _entry_width, _legend_rows, main, nice_ticks, read_run

EVAL = """steps,wall_time,driving_score,route_completion,infraction_penalty
10000,600.0,5.0,20.0,0.25
20000,1200.0,12.5,40.0,0.3
"""
# As SB3's CSV logger writes it: an evaluation dump without time/* cells, a rollout dump whose
# elapsed time is 0, and rows where no episode ended.
PROGRESS = """time/total_timesteps,time/time_elapsed,eval/driving_score,driving/driving_score
5000,0,,3.0
,,5.0,
10000,590,,
15000,900,,7.5
20000,1190,12.5,
,,,9.0
"""


def _run(folder: Path, eval_csv: str | None = EVAL, progress: str | None = PROGRESS) -> Path:
    folder.mkdir()
    if eval_csv is not None:
        (folder / "eval.csv").write_text(eval_csv)
    if progress is not None:
        (folder / "progress.csv").write_text(progress)
    return folder


def test_read_run_reads_eval_and_training_episodes(tmp_path: Path) -> None:
    run = read_run(_run(tmp_path / "ppo"))
    assert run.label == "ppo"
    np.testing.assert_allclose(run.evaluation.steps, [10000, 20000])
    np.testing.assert_allclose(run.evaluation.hours, [600 / 3600, 1200 / 3600])
    np.testing.assert_allclose(run.evaluation.score, [5.0, 12.5])
    # The last row has no time/* cells: it takes the step count and elapsed time above it.
    np.testing.assert_allclose(run.training.steps, [5000, 15000, 20000])
    np.testing.assert_allclose(run.training.hours, [0.0, 900 / 3600, 1190 / 3600])
    np.testing.assert_allclose(run.training.score, [3.0, 7.5, 9.0])


def test_read_run_without_driving_column_gives_empty_training_curve(tmp_path: Path) -> None:
    run = read_run(_run(tmp_path / "a", progress="time/total_timesteps,time/time_elapsed\n64,7\n"))
    assert run.training.score.shape == (0,)
    assert run.evaluation.score.shape == (2,)


def test_nice_ticks_cover_the_range_in_round_steps() -> None:
    assert nice_ticks(20000) == [0, 5000, 10000, 15000, 20000]
    assert nice_ticks(0.33)[-1] >= 0.33
    assert nice_ticks(0.0) == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])


def test_main_writes_png_of_requested_size(tmp_path: Path) -> None:
    first, second = _run(tmp_path / "a"), _run(tmp_path / "b", progress=None)
    out = tmp_path / "docs" / "curves.png"
    reference = ["--reference", "62.4", "--reference-label", "80 % of autopilot"]
    main([str(first), str(second), "--out", str(out), "--labels", "PPO,DQN", *reference])
    image = cv2.imread(str(out))
    assert image is not None
    assert image.shape == (450, 1200, 3)
    assert (image < 250).any()  # something was drawn


def test_main_names_run_folder_without_csvs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = _run(tmp_path / "empty", eval_csv=None, progress=None)
    with pytest.raises(SystemExit):
        main([str(empty), "--out", str(tmp_path / "x.png")])
    message = capsys.readouterr().err
    assert str(empty) in message and "eval.csv" in message and "progress.csv" in message
    assert not (tmp_path / "x.png").exists()


def test_main_rejects_label_count_mismatch(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main([str(_run(tmp_path / "a")), "--labels", "x,y", "--out", str(tmp_path / "x.png")])


def test_a_long_legend_wraps_inside_the_picture() -> None:
    """Regression: the legend was one row, so long run names ran off the right edge."""
    entries: list[tuple[str, str, tuple]] = [
        (f"a rather long run name number {i} (training episodes)", "train", (0, 0, 0))
        for i in range(6)
    ]
    rows = _legend_rows(entries, 1200)
    assert len(rows) > 1 and sorted(i for row in rows for i in row) == list(range(6))
    for row in rows:
        width = sum(_entry_width(entries[i][0]) for i in row)
        assert width <= 1200 - 20
    assert _legend_rows(entries[:1], 1200) == [[0]]
