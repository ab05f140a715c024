"""Class 2 (the user's model overwritten) and class 8 (leftovers): no output may be a source,
lie inside a source folder or contain one (symlinks and hard links resolved); temporary files
of a killed save are removed at the next save, and by SIGTERM itself."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import eigenscope
from _fixtures_hostile import assert_user_error, run_cli
from eigenscope import _io
from eigenscope.errors import ArgumentError


def _model_file(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "m.safetensors"
    save_file({"layers.0.mlp.up_proj.weight": torch.randn(24, 16)}, str(path))
    return path


def _hf_folder(folder: Path) -> Path:
    _model_file(folder)
    (folder / "config.json").write_text('{"model_type": "llama"}')
    return folder


def _file_with_config(folder: Path) -> Path:
    src = _model_file(folder)
    (folder / "config.json").write_text('{"model_type": "llama"}')   # read for its flags
    return src


# case -> (source maker, CLI args with {src} and {tmp}, words of the error)
CASES = {
    "save_spectra_is_the_source": (_model_file, ["analyze", "{src}", "--save-spectra", "{src}"], "is the source"),
    "table_is_the_config_read": (_file_with_config, ["analyze", "{src}", "--out", "{tmp}/m/config.json"], "config.json"),
    "compress_out_is_the_folder": (_hf_folder, ["compress", "{src}", "--ratio", "0.5", "--out", "{src}"], "is the source"),
    "compress_out_inside_folder": (_hf_folder, ["compress", "{src}", "--ratio", "0.5", "--out", "{src}/sub"], "inside"),
    "compress_out_contains_source": (_model_file, ["compress", "{src}", "--ratio", "0.5", "--out", "{tmp}"], "contains"),
    "report_inside_folder": (_hf_folder, ["report", "{src}", "--out", "{src}/r.html"], "inside"),
    "compare_page_inside_b": (_hf_folder, ["compare", "{src}/m.safetensors", "{src}", "--out", "{src}/c.html"], "inside"),
    "symlink_to_source": (_model_file, ["analyze", "{src}", "--save-spectra", "{tmp}/link-sym.safetensors"], "is the source"),
    "hard_link_to_source": (_model_file, ["analyze", "{src}", "--save-spectra", "{tmp}/link-hard.safetensors"], "is the source"),
    "dotdot_path_to_source": (_model_file, ["analyze", "{src}", "--save-spectra", "{tmp}/m/../m/m.safetensors"], "is the source"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_output_over_a_source_is_refused(case, tmp_path):
    make, args, needle = CASES[case]
    src = make(tmp_path / "m")
    if src.is_file():
        os.symlink(src, tmp_path / "link-sym.safetensors")
        os.link(src, tmp_path / "link-hard.safetensors")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    argv = [a.format(src=src, tmp=tmp_path) for a in args]
    assert_user_error(*run_cli(*argv)[::2], needle)
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before       # nothing written, nothing changed


def test_api_verbs_refuse_too(tmp_path):
    src = _model_file(tmp_path / "m")
    with pytest.raises(ArgumentError, match="save_spectra"):
        eigenscope.analyze(str(src), save_spectra=src, metrics="norms")
    folder = _hf_folder(tmp_path / "hf")
    model = torch.nn.Linear(4, 4)
    model.config = type("C", (), {"_name_or_path": str(folder)})()   # "loaded from" folder
    with pytest.raises(ArgumentError, match="^path: "):
        eigenscope.save(model, folder / "c")


def test_writing_beside_a_source_file_is_fine(tmp_path):
    src = _model_file(tmp_path / "m")
    code, out, err = run_cli("analyze", src, "--out", tmp_path / "m" / "rows.csv", "--rows", 0)
    assert code == 0, err
    assert (tmp_path / "m" / "rows.csv").is_file()


# --- leftovers of a killed save -----------------------------------------------------------
SLOW_SAVE = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from eigenscope._io import atomic_write
    def write(tmp):
        Path(tmp).write_text("partial")
        print("writing", flush=True)
        time.sleep(60)
    atomic_write(sys.argv[1], write)
""")


def _start_slow_save(target: Path):
    env = {**os.environ, "PYTHONPATH": str(Path(_io.__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", SLOW_SAVE, str(target)], env=env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    return proc


def _temps(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_sigkill_leftover_is_removed_at_the_next_save(tmp_path):
    target = tmp_path / "model.safetensors"
    target.write_text("previous save")
    proc = _start_slow_save(target)
    proc.kill()
    proc.wait(timeout=30)
    assert len(_temps(tmp_path)) == 1 and target.read_text() == "previous save"
    _io.atomic_write(tmp_path / "other.csv", lambda tmp: Path(tmp).write_text("x"))
    assert _temps(tmp_path) == [] and target.read_text() == "previous save"


def test_sigterm_removes_the_temporary_file(tmp_path):
    target = tmp_path / "model.safetensors"
    target.write_text("previous save")
    proc = _start_slow_save(target)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == -signal.SIGTERM     # still ends as SIGTERM does
    assert _temps(tmp_path) == [] and target.read_text() == "previous save"


def test_a_live_writer_and_foreign_files_are_left_alone(tmp_path):
    target = tmp_path / "model.safetensors"
    proc = _start_slow_save(target)
    try:
        mine = _temps(tmp_path)
        (tmp_path / ".notes.txt.tmp").write_text("someone else's")
        old = tmp_path / ".model.safetensors.ab12CD34.tmp"          # older format, fresh
        old.write_text("x")
        assert _io.remove_stale_temps(tmp_path) == []
        assert _temps(tmp_path) == sorted(mine + [tmp_path / ".notes.txt.tmp", old])
        past = time.time() - 2 * _io.LEGACY_STALE_SECONDS             # older format, stale
        os.utime(old, (past, past))
        assert _io.remove_stale_temps(tmp_path) == [old]
    finally:
        proc.kill()
        proc.wait(timeout=30)
