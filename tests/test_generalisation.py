"""The generalisation benchmark's table (pipeline/generalisation.py) and the docs writer
(pipeline/results_doc.py), on evaluation reports made here."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from pipeline.errors import PipelineError
from pipeline.evaluate import MESHES, METRIC_FIELDS
from pipeline.generalisation import summarise, table
from pipeline.results_doc import publish


def report(folder: Path, seed: int, subject: str, mesh_cm: float, body_cm: float,
           split: str = "test", variant: str = "full") -> Path:
    """An evaluation report whose model's Chamfer is ``mesh_cm`` and fitted body's
    ``body_cm`` (other scores derived from them)."""
    def scores(chamfer: float) -> dict:
        values = {k: 0.5 for k in METRIC_FIELDS}
        values.update(chamfer_cm=chamfer, p2s_cm=chamfer * 0.9,
                      normal_consistency=1.0 - chamfer / 10, fscore_1cm=1.0 / (1 + chamfer))
        return {**values, "n_samples": 100, "surface": True}
    path = folder / f"seed{seed}_{subject}.json"
    metrics = {m: scores(body_cm if m == "fitted_body" else mesh_cm) for m in MESHES}
    path.write_text(json.dumps({"subject": subject, "split": split,
                                "model": f"ablation/{variant}/seed{seed}",
                                "metrics": metrics, "n_views": 8}))
    return path


def test_summary_pairs_seeds_and_subjects(tmp_path: Path) -> None:
    reports = [report(tmp_path, 1, "a", 1.0, 2.0), report(tmp_path, 1, "b", 1.5, 2.0),
               report(tmp_path, 2, "a", 1.2, 2.0), report(tmp_path, 2, "b", 2.5, 2.0)]
    outputs = {k: tmp_path / f"out.{k}" for k in ("csv", "md", "html", "head")}
    summary = table(reports=reports, csv_output=outputs["csv"], markdown=outputs["md"],
                    html_output=outputs["html"], headline=outputs["head"], steps=500,
                    params={"seed": 0, "seeds": [1, 2]})
    chamfer = summary["chamfer_cm"]
    assert chamfer["mesh"] == pytest.approx(1.55)
    assert chamfer["body"] == pytest.approx(2.0)
    gains = [1.0, 0.5, 0.8, -0.5]
    assert chamfer["gain"] == pytest.approx(sum(gains) / 4)
    assert chamfer["relative"] == pytest.approx(0.45 / 2.0)
    assert chamfer["wins"] == 3 and chamfer["pairs"] == 4
    assert chamfer["sign_p"] == pytest.approx(0.625)  # 2 * P(X <= 1), X ~ Bin(4, 1/2)
    # NC and F@1cm: higher is better, the gain is mesh minus body.
    assert summary["fscore_1cm"]["gain"] > 0 and summary["normal_consistency"]["wins"] == 3
    head = outputs["head"].read_text()
    assert "loses to the fitted body in Chamfer on 1 of 4" in head
    assert outputs["csv"].read_text().count("\n") == 5
    assert "| 2 | b |" in outputs["md"].read_text()


def test_nan_scores_are_left_out_of_the_means(tmp_path: Path) -> None:
    rows = [{"seed": 1, "subject": "a", **{f"{m}/{k}": v for m in ("model", "fitted_body")
                                            for k, v in (("chamfer_cm", 1.0), ("p2s_cm", 1.0),
                                                         ("normal_consistency", 0.9),
                                                         ("fscore_1cm", 0.5))}},
            {"seed": 2, "subject": "a", **{f"{m}/{k}": math.nan
                                            for m in ("model", "fitted_body")
                                            for k in ("chamfer_cm", "p2s_cm",
                                                      "normal_consistency", "fscore_1cm")}}]
    assert summarise(rows)["chamfer_cm"]["mesh"] == pytest.approx(1.0)


@pytest.mark.parametrize("kind", ["val split", "other variant", "missing seed"])
def test_refuses_what_is_not_the_benchmark(tmp_path: Path, kind: str) -> None:
    path = report(tmp_path, 1, "a", 1.0, 2.0, split="val" if kind == "val split" else "test",
                  variant="no_mask" if kind == "other variant" else "full")
    outputs = {k: tmp_path / f"out.{k}" for k in ("csv", "md", "html", "head")}
    with pytest.raises(PipelineError, match={"val split": "test subjects only",
                                             "other variant": "not a run of the full",
                                             "missing seed": r"seed\(s\) \[2\]"}[kind]):
        table(reports=[path], csv_output=outputs["csv"], markdown=outputs["md"],
              html_output=outputs["html"], headline=outputs["head"], steps=10,
              params={"seed": 0, "seeds": [1, 2]})
    assert not outputs["head"].exists()


def test_publish_replaces_only_its_section(tmp_path: Path) -> None:
    doc = tmp_path / "results.md"
    doc.write_text("# Results\n\nintro\n\n<!-- results:one -->\nold\n<!-- /results:one -->\n"
                   "\nbetween\n\n<!-- results:two -->\nkeep\n<!-- /results:two -->\n")
    publish(doc, "one", "| a |\n|---|\n| 1 |", command="bench --write")
    text = doc.read_text()
    assert "old" not in text and "| 1 |" in text and "keep" in text and "between" in text
    assert "Command: `bench --write` · commit" in text
    publish(doc, "three", "new table", command="x")
    assert doc.read_text().rstrip().endswith("new table\n<!-- /results:three -->")
    publish(doc, "one", "second", command="y")
    assert doc.read_text().count("<!-- results:one -->") == 1 and "| 1 |" not in doc.read_text()
    with pytest.raises(ValueError, match="section name"):
        publish(doc, "Bad Name", "x")


def test_export_commit_holds_the_commits_tracked_files(tmp_path: Path) -> None:
    import subprocess

    from pipeline.results_doc import export_commit

    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "a.txt").write_text("first")
    subprocess.run([*git, "add", "a.txt"], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    (repo / "a.txt").write_text("second")  # not committed
    (repo / "untracked.txt").write_text("x")
    tree = export_commit(repo, "HEAD", tmp_path / "out" / "tree")
    assert (tree / "a.txt").read_text() == "first"
    assert sorted(p.name for p in tree.iterdir()) == ["a.txt"]
