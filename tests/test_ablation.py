"""The ablation study (pipeline/ablation.py): variant sections, the oracle fit, the table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.ablation import (
    VARIANTS,
    merged,
    normal_section,
    oracle_fit,
    parse_model,
    table,
    train_section,
)
from pipeline.errors import PipelineError
from pipeline.meshio import write_ply
from tests.cache_fakes import make_subject
from tests.study_fakes import write_report


def test_merged_is_deep_and_leaves_the_base_alone() -> None:
    base = {"model": {"input": "normal", "latent_dim": 16}, "run": {"steps": 500}}
    out = merged(base, {"model": {"input": "image"}})
    assert out == {"model": {"input": "image", "latent_dim": 16}, "run": {"steps": 500}}
    assert base["model"]["input"] == "normal"


def test_variant_sections() -> None:
    train = {"model": {"input": "normal", "masked_input": True}, "run": {"steps": 500}}
    assert train_section(train, "full", None) == train
    assert train_section(train, "no_normal", 300)["model"]["input"] == "image"
    assert train_section(train, "no_normal", 300)["run"]["steps"] == 300
    assert train_section(train, "no_mask", None)["model"]["masked_input"] is False
    assert train_section(train, "oracle_normal", None)["model"]["input"] == "oracle_normal"
    normal = {"model": {"ngf": 4}, "run": {}}
    assert normal_section(normal, "no_mask")["model"] == {"ngf": 4, "masked_input": False}
    assert normal_section(normal, "full")["model"]["masked_input"] is True
    assert [VARIANTS[v].body for v in ("no_refine", "oracle_body")] == ["keypoints_only",
                                                                         "truth"]
    with pytest.raises(PipelineError, match="unknown ablation variant 'nope'"):
        train_section(train, "nope", None)


def _rigid(angle: float, shift: tuple[float, float, float]) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    out = np.eye(4)
    out[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    out[:3, 3] = shift
    return out


def _truth_body(paths: dict[str, Path], scale: float = 1.1) -> tuple[np.ndarray, list]:
    """A truth body (the fake fit's sphere scaled) and a rigid transform per bone/action."""
    with np.load(paths["fit"]) as fit:
        vertices, faces = fit["canonical_vertices"] * scale, fit["faces"]
        actions, bones = fit["actions"].tolist(), fit["bone_names"].tolist()
    write_ply(paths["truth"] / "canonical_body.ply", vertices, faces)
    transforms = []
    for a, action in enumerate(actions):
        bone_t = np.stack([_rigid(0.3 * a, (0.1 * a, 0, 0)), _rigid(-0.2, (0, 0.05, a * 0.1))])
        transforms.append(bone_t)
        (paths["truth"] / action / "body.json").write_text(json.dumps({
            "bone_names": bones, "bone_transforms": bone_t.tolist(),
            "keypoints_coco17_3d": np.full((17, 3), a, dtype=float).tolist()}))
    return vertices, transforms


def test_oracle_fit_poses_the_truth_body(tmp_path: Path) -> None:
    paths = make_subject(tmp_path)
    vertices, transforms = _truth_body(paths)
    output = tmp_path / "oracle.npz"
    oracle_fit(fit=paths["fit"], truth=paths["truth"], output=output)
    with np.load(output) as out, np.load(paths["fit"]) as fit:
        np.testing.assert_allclose(out["canonical_vertices"], vertices, atol=1e-6)
        weights = fit["skinning_weights"]
        for a, bones in enumerate(transforms):
            blend = np.einsum("vb,bij->vij", weights, bones)
            expected = np.einsum("vij,vj->vi", blend[:, :3, :3], vertices) + blend[:, :3, 3]
            np.testing.assert_allclose(out["posed_vertices"][a], expected, atol=1e-5)
            np.testing.assert_allclose(out["bone_transforms"][a], bones, atol=1e-6)
            assert np.all(out["posed_keypoints"][a] == a)
        for key in ("camera_K", "camera_t", "view_ok", "faces", "skinning_weights"):
            np.testing.assert_array_equal(out[key], fit[key])  # cameras and checks kept
        assert "truth" in str(out["body_source"])


def test_oracle_fit_refuses_a_data_set_without_truth_body(tmp_path: Path) -> None:
    paths = make_subject(tmp_path)
    output = tmp_path / "oracle.npz"
    with pytest.raises(PipelineError, match=r"canonical_body\.ply is missing"):
        oracle_fit(fit=paths["fit"], truth=paths["truth"], output=output)
    _truth_body(paths)
    (paths["truth"] / "act01" / "body.json").unlink()
    with pytest.raises(PipelineError, match=r"act01/body.json is missing"):
        oracle_fit(fit=paths["fit"], truth=paths["truth"], output=output)
    assert not output.exists()


def test_oracle_fit_refuses_another_body_model(tmp_path: Path) -> None:
    paths = make_subject(tmp_path)
    _truth_body(paths)
    with np.load(paths["fit"]) as fit:
        faces = fit["faces"][:, ::-1]
        vertices = fit["canonical_vertices"]
    write_ply(paths["truth"] / "canonical_body.ply", vertices, faces)
    with pytest.raises(PipelineError, match="not the same body model"):
        oracle_fit(fit=paths["fit"], truth=paths["truth"], output=tmp_path / "o.npz")


def test_parse_model() -> None:
    assert parse_model("ablation/no_mask/seed2") == ("no_mask", 2)
    for bad in ("pixel2isdf", "ablation/nope/seed1", "ablation/full/seedx"):
        with pytest.raises(PipelineError):
            parse_model(bad)


def _reports(root: Path, chamfers: dict[str, tuple[float, float]]) -> list[Path]:
    out = []
    for variant, per_seed in chamfers.items():
        for seed, chamfer in zip((1, 2), per_seed, strict=True):
            for subject, extra in (("s003", 0.0), ("s004", 1.0)):
                out.append(write_report(root, f"ablation/{variant}/seed{seed}", subject,
                                        chamfer + extra))
    return out


def test_table_means_spread_and_verdicts(tmp_path: Path) -> None:
    reports = _reports(tmp_path, {"full": (10.0, 11.0), "no_mask": (10.1, 10.7),
                                  "no_normal": (14.0, 15.0), "oracle_body": (6.0, 6.4)})
    outputs = {"csv_output": tmp_path / "a.csv", "markdown": tmp_path / "a.md",
               "html_output": tmp_path / "a.html"}
    summary = table(reports=reports[::-1], params={"steps": 300, "seeds": [1, 2]}, **outputs)
    assert summary["full"]["chamfer_cm"] == pytest.approx(11.0)  # (10.5 + 11.5) / 2
    assert summary["full"]["spread"] == pytest.approx(1.0)
    text = outputs["markdown"].read_text()
    rows = [ln for ln in text.splitlines() if ln.startswith("| ")]
    assert [r.split(" | ")[0] for r in rows[1:]] == [
        "| full model", "| w/o mask", "| w/o normal map", "| oracle: truth body",
        "| baseline: fitted naked body (main fit)", "| baseline: truth naked body"]
    assert rows[1].startswith("| full model | 11.00 ± 0.50 |") and "0.9985" in rows[1]
    assert "training seeds 1, 2; 300 training steps" in text
    # full 11.0 ± 0.5; no_mask 10.9 ± 0.3: overlap. no_normal 15.0 ± 0.5, oracle 6.7 ± 0.2.
    assert ("w/o mask: -0.10 cm against the full model (per seed: +0.10, -0.30; the sign "
            "changes with the seed; sign test p = 1.00; about 63 seeds to detect a difference "
            "of this size (α 0.05, power 0.8)); within 0.80 cm, the sum of the two "
            "half-ranges: the ranges overlap") in text
    assert ("w/o normal map: 4.00 cm against the full model (per seed: +4.00, +4.00; worse "
            "with all 2 seeds; sign test p = 0.50; about 6 seeds") in text
    assert ("oracle: truth body: -4.30 cm against the full model (per seed: -4.00, -4.60; "
            "better with all 2 seeds; sign test p = 0.50; about 6 seeds") in text
    lines = outputs["csv_output"].read_text().splitlines()
    assert lines[0].startswith("variant,seed,subjects,n_views,surface,chamfer_cm")
    assert lines[1].startswith("full,1,s003 s004,8,True,10.5,")
    assert "<table>" in outputs["html_output"].read_text()


def test_table_with_one_seed_says_the_spread_is_unknown(tmp_path: Path) -> None:
    reports = [write_report(tmp_path, "ablation/full/seed1", "s003", 9.0)]
    out = tmp_path / "t.md"
    table(reports=reports, csv_output=tmp_path / "t.csv", markdown=out,
          html_output=tmp_path / "t.html", params={"steps": 5, "seeds": [1]})
    assert "One seed: the spread across seeds is not measured" in out.read_text()


def test_sign_test_and_seeds_needed() -> None:
    from pipeline.ablation import seeds_needed, sign_test_p

    assert sign_test_p([1.0, 2.0, 3.0]) == pytest.approx(0.25)  # 2 / 2^3
    assert sign_test_p([1.0] * 6) == pytest.approx(2 / 64)  # the fewest seeds below 0.05
    assert sign_test_p([1.0, -1.0, 2.0, 0.0]) == pytest.approx(1.0)  # 2 of 3, zero dropped
    assert sign_test_p([-1.0, 1.0, 1.0, 1.0, 1.0]) == pytest.approx(12 / 32)
    # spread 0.2828 around a mean of 0.1: 7.85 × 8 = 62.8 → 63 seeds
    assert seeds_needed([0.1, -0.3]) == 63
    assert seeds_needed([4.0, 4.0]) == 6  # no spread: the sign test's minimum
