"""analyze_many with the local engine: one table of many sources, split by tensor, streamed to
an atomic table, resumed, failures kept in their own rows. (Ray: tests/test_engines_ray.py.)"""
from __future__ import annotations

import re

import pandas as pd
import pytest

import eigenscope
from eigenscope.analysis.tables import read_table
from eigenscope.cli import main
from eigenscope.engines import analyze_many, plan_tasks, source_entries, step_of, task_resources
from eigenscope.engines import local as local_engine
from eigenscope.engines import tasks as tasks_mod
from eigenscope.errors import ArgumentError
from eigenscope.sources import open_source
from eigenscope.sources.matrices import plan_matrices

from _fixtures_many import assert_same_bits, checkpoints, corrupt

METRICS = "norms,powerlaw,mp"


def _reference(paths, steps, **kw):
    """What analyze gives for each source, with the source and step columns in front."""
    frames = []
    for p, s in zip(paths, steps):
        df = eigenscope.analyze(p, metrics=METRICS, **kw)
        df.insert(0, "step", pd.array([s] * len(df), dtype="Int64"))
        df.insert(0, "source", str(p))
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("path, step", [
    ("runs/a/checkpoint-1500", 1500), ("out/step_20/model.safetensors", 20),
    ("x/global_step300", 300), ("ckpt-7.gguf", 7), ("models/final", None), ("m.gguf", None)])
def test_step_from_checkpoint_names(path, step):
    assert step_of(path) == step


def test_source_entries(tmp_path):
    (tmp_path / "b").mkdir()
    entries = source_entries({20: tmp_path / "b", "3": "minilm-l6"})
    assert entries == [("minilm-l6", "minilm-l6", 3), (str(tmp_path / "b"), str(tmp_path / "b"), 20)]
    for bad, needle in [({"x": "minilm-l6"}, "steps"), (["minilm-l6", "minilm-l6"], "twice"),
                        ([object()], "paths or built-in names"), ([], "no sources")]:
        with pytest.raises(ArgumentError, match=needle):
            source_entries(bad)


def test_rows_equal_analyze_per_source_bit_for_bit(tmp_path):
    paths = checkpoints(tmp_path, [0, 50, 100])
    df = analyze_many(paths[::-1], metrics=METRICS, split=3, out=tmp_path / "t.parquet")
    # a list keeps its order; each source's rows in analyze's order, whatever the split
    assert_same_bits(df, _reference(paths[::-1], [100, 50, 0]))
    assert_same_bits(read_table(tmp_path / "t.parquet"), df)


def test_split_divides_by_tensor_and_keeps_embed_with_head(tmp_path):
    path = checkpoints(tmp_path, [0], blocks=3)[0]
    with open_source(path) as src:
        plan = plan_matrices(src)
    tasks, plans = plan_tasks([(str(path), "a", 0)], split=4, options={"metrics": "norms"})
    assert len(tasks) == 4 and plans["a"] == [m.name for m in plan]
    parts = [[m.name for m in t.metas] for t in tasks]
    assert sorted(n for p in parts for n in p) == sorted(plans["a"])          # each row once
    tied = [i for i, p in enumerate(parts) if {"model.embed_tokens.weight", "lm_head.weight"} & set(p)]
    assert len(tied) == 1
    for t, names in zip(tasks, parts):   # the regex selects exactly the part's rows, from metadata
        with open_source(path) as src:
            assert [m.name for m in plan_matrices(src, layers=t.layers)] == names
        assert t.options == {"metrics": "norms", "workers": t.resources["num_cpus"],
                             "max_memory": t.resources["memory"]}


def test_split_auto_by_bytes(tmp_path, monkeypatch):
    path = checkpoints(tmp_path, [0])[0]
    assert len(plan_tasks([(str(path), "a", 0)])[0]) == 1          # small: one task
    monkeypatch.setattr(tasks_mod, "SPLIT_BYTES", 4 * 48 * 96)        # ~ one matrix per part
    assert len(plan_tasks([(str(path), "a", 0)])[0]) > 5


def test_task_resources_from_analyze_options():
    assert task_resources({"workers": 3, "max_memory": "2GiB", "device": "cuda:1"}) == {
        "num_cpus": 3, "memory": 2 * 2**30, "num_gpus": 1}
    assert task_resources({"max_memory": 5_000_000})["memory"] == 5_000_000
    default = task_resources({})
    assert default["num_gpus"] == 0 and 0 < default["memory"] <= 4 * 2**30
    for bad in ("lots", "-1GB", 0, True, "3 parsecs"):
        with pytest.raises(ArgumentError, match="max_memory"):
            task_resources({"max_memory": bad})
    with pytest.raises(ArgumentError, match="workers"):
        task_resources({"workers": -2})


def test_a_failing_source_gets_failed_rows_and_the_others_complete(tmp_path):
    good = checkpoints(tmp_path, [5])[0]
    garbage, cut = corrupt(tmp_path)
    df = analyze_many([garbage, good, cut], metrics=METRICS)
    by = {s: g for s, g in df.groupby("source", sort=False)}
    bad_file = by[str(garbage)]
    assert len(bad_file) == 1 and bad_file["status"].item() == "failed"
    assert str(garbage) in bad_file["warning"].item() and bad_file["name"].item() == ""
    cut_rows = by[str(cut)]
    assert cut_rows["status"].tolist() == ["failed"] and "checkpoint-7" in cut_rows["warning"].item()
    assert_same_bits(by[str(good)].reset_index(drop=True), _reference([good], [5]))


def test_a_task_that_fails_after_planning_lists_its_planned_matrices(tmp_path):
    path = checkpoints(tmp_path, [0])[0]
    task = plan_tasks([(str(path), "a", 0)], split=2)[0][1]
    for shard in path.glob("*.safetensors"):    # gone between planning and running
        shard.unlink()
    rows = tasks_mod.run_task(task)
    assert rows["name"].tolist() == [m.name for m in task.metas] and len(rows) >= 5
    assert (rows["status"] == "failed").all() and rows["source"].eq("a").all()
    assert rows["warning"].str.contains(str(path)).all() and rows["alpha"].isna().all()


def test_cli_several_sources_exit_code_says_some_failed(tmp_path, capsys):
    good = checkpoints(tmp_path, [1, 2])
    garbage, _ = corrupt(tmp_path)
    out = tmp_path / "t.csv"
    assert main(["analyze", *map(str, good), "--out", str(out), "-m", "norms"]) == 0
    assert read_table(out)["step"].tolist() == [1] * 12 + [2] * 12
    assert main(["analyze", str(good[0]), str(garbage), "--out", str(out), "-m", "norms"]) == 1
    captured = capsys.readouterr()
    assert "1 source(s) failed" in captured.err and str(garbage) in captured.err
    assert main(["analyze", str(good[0]), str(garbage), "--save-spectra", "s.safetensors"]) == 2


def test_interrupted_run_resumes_without_redoing_or_duplicating(tmp_path, monkeypatch):
    paths = checkpoints(tmp_path, [0, 10, 20, 30])
    out = tmp_path / "t.parquet"
    ran, real = [], tasks_mod.run_task

    def interrupted(task):
        if len(ran) == 2:
            raise KeyboardInterrupt              # Ctrl-C during the third source
        ran.append(task.label)
        return real(task)

    monkeypatch.setattr(local_engine, "run_task", interrupted)
    with pytest.raises(KeyboardInterrupt):
        analyze_many(paths, metrics=METRICS, out=out)
    assert read_table(out)["source"].unique().tolist() == [str(p) for p in paths[:2]]
    ran.clear()
    monkeypatch.setattr(local_engine, "run_task", lambda t: ran.append(t.label) or real(t))
    df = analyze_many(paths, metrics=METRICS, out=out, resume=True)
    assert ran == [str(p) for p in paths[2:]]                 # only the missing sources
    assert_same_bits(df, _reference(paths, [0, 10, 20, 30]))
    assert_same_bits(read_table(out), df)


def test_resume_retries_failed_and_missing_matrices_only(tmp_path, monkeypatch):
    paths = checkpoints(tmp_path, [0, 1])
    out = tmp_path / "t.csv"
    full = analyze_many(paths, metrics=METRICS, out=out)
    partial = full.drop(index=[3, 4, 15]).copy()                # lost rows...
    partial.loc[7, ["status", "alpha"]] = ["failed", float("nan")]   # ...and one that failed
    partial.to_csv(out, index=False)
    seen = []
    monkeypatch.setattr(local_engine, "run_task", lambda t: seen.append(t) or tasks_mod.run_task(t))
    df = analyze_many(paths, metrics=METRICS, out=out, resume=True)
    redo = {m.name for t in seen for m in t.metas}
    assert set(full.loc[[3, 4, 7, 15], "name"]) <= redo and len(redo) <= 5
    assert_same_bits(df.drop(columns="warning"), full.drop(columns="warning"))


def test_bad_options_fail_before_any_task(tmp_path):
    with pytest.raises(ArgumentError, match="engine"):
        analyze_many(["minilm-l6"], engine="spark")
    with pytest.raises(ArgumentError, match="'bogus'"):
        analyze_many(["minilm-l6"], bogus=1)
    with pytest.raises(ArgumentError, match="layers"):
        analyze_many(["minilm-l6"], layers="(")
    with pytest.raises(ArgumentError, match="split"):
        analyze_many(["/not/reachable/here"], split=0)
    with pytest.raises(ArgumentError, match="address"):
        analyze_many(["minilm-l6"], address="127.0.0.1:6379")
    with pytest.raises(ArgumentError, match="resume"):
        analyze_many(["minilm-l6"], resume=True)
    single = tmp_path / "one.csv"
    eigenscope.analyze("minilm-l6", metrics="norms", layers="pooler").to_csv(single, index=False)
    with pytest.raises(ArgumentError, match="no 'source' column"):
        analyze_many(["minilm-l6"], out=single, resume=True)


def test_a_crash_while_writing_leaves_the_previous_table(tmp_path, monkeypatch):
    from eigenscope.analysis import tables

    paths = checkpoints(tmp_path, [0, 1])
    out = tmp_path / "t.json"
    before = analyze_many(paths[:1], metrics="norms", out=out)
    text = out.read_text()

    def half_then_crash(df, p):
        open(p, "w").write(df.to_json()[:100])
        raise OSError("disk full")

    monkeypatch.setitem(tables.WRITERS, ".json", half_then_crash)
    with pytest.raises(OSError):
        analyze_many(paths, metrics="norms", out=out)
    assert out.read_text() == text and len(before) == 12
    assert [p.name for p in tmp_path.iterdir() if re.match(r"\.t\.json\..*\.tmp", p.name)] == []
