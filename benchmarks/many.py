"""analyze_many on a real training trajectory: the local engine and a two-node local Ray cluster
side by side, and what the spectra do along the run. Printed tables, not a test.

1. Train train_small.py's TinyGPT (wider and deeper than there, so that analysing one
   checkpoint takes >= ~10 s here) with AdamW on pydoc bytes; save 8 checkpoints along the
   way as checkpoint-<step>/model.safetensors (Llama names: the fused qkv is stored as q, k, v).
2. Analyse the 8 checkpoints with engine="local", then on a Ray cluster started on this
   machine (loopback, small object store) with one node, then two, with the same options.
   Printed: start-up apart (nodes, connect, and each node's first worker importing torch and
   eigenscope), each wall time, the time spent inside the tasks, and Ray's overhead per task:
   (1-node wall - local wall) / tasks, same CPUs and one task at a time as the local engine,
   also as a fraction of the local wall time (target <= 10 %). Every engine uses the same two
   cores, so two nodes give no real speed-up here (on a loaded machine, more runnable threads
   can still win a larger share of it).
3. The trajectory: validation loss, and the median alpha and stable rank of each role by step.

    python benchmarks/many.py [--width 256] [--layers 16] [--steps 0,10,20,40,60,90,120,160]
                              [--out out/many] [--reuse] [--screenshot docs/screenshots/trajectory.png]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")   # Ray on loopback only
# Ray's memory monitor kills workers when the *machine* is 95 % full; on a shared machine that
# is other people's memory, and the retries would be timed as Ray's overhead.
os.environ.setdefault("RAY_memory_monitor_refresh_ms", "0")

import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_small import TinyGPT, batches, byte_splits, make_optimizers, val_loss  # noqa: E402

import eigenscope  # noqa: E402


def checkpoint_tensors(model: TinyGPT) -> dict[str, torch.Tensor]:
    """The model's matrices under Llama names (roles q k v o up down embed head)."""
    sd = {"model.embed_tokens.weight": model.embed.weight,
          "model.embed_positions.weight": model.pos.weight, "lm_head.weight": model.lm_head.weight}
    for i, b in enumerate(model.blocks):
        q, k, v = b.qkv.weight.chunk(3, dim=0)                 # (3d, d) -> 3 x (d, d)
        pre = f"model.layers.{i}"
        sd.update({f"{pre}.self_attn.q_proj.weight": q, f"{pre}.self_attn.k_proj.weight": k,
                   f"{pre}.self_attn.v_proj.weight": v, f"{pre}.self_attn.o_proj.weight": b.proj.weight,
                   f"{pre}.mlp.up_proj.weight": b.fc.weight, f"{pre}.mlp.down_proj.weight": b.out.weight})
    return {n: t.detach().contiguous().clone() for n, t in sd.items()}


def train(args, out: Path) -> tuple[list[Path], dict]:
    """Checkpoint folders at args.steps, and {step: validation loss} (--reuse: from `out`)."""
    import json

    from safetensors.torch import save_file

    saved = out / "losses.json"
    if args.reuse and saved.is_file():
        losses = {int(k): v for k, v in json.loads(saved.read_text()).items()}
        if sorted(losses) == args.steps:
            print(f"reusing the {len(losses)} checkpoints in {out}")
            return [out / f"checkpoint-{s}" for s in args.steps], losses

    torch.manual_seed(0)
    tr, va = byte_splits()
    model = TinyGPT(d=args.width, layers=args.layers, heads=8, ctx=args.seq)
    opt = make_optimizers("adamw", model, args.lr, 0.0)[0]
    it, paths, losses = batches(tr, args.batch, args.seq, seed=0), [], {}
    t0 = time.perf_counter()
    for step in range(max(args.steps) + 1):
        if step in args.steps:
            folder = out / f"checkpoint-{step}"
            folder.mkdir(parents=True, exist_ok=True)
            save_file(checkpoint_tensors(model), str(folder / "model.safetensors"))
            paths.append(folder)
            losses[step] = val_loss(model, va, args.batch, args.seq, n=8)
        if step == max(args.steps):
            break
        x, y = next(it)
        opt.zero_grad()
        F.cross_entropy(model(x).flatten(0, 1), y.flatten()).backward()
        opt.step()
    saved.write_text(json.dumps(losses))
    n = sum(p.numel() for p in model.parameters())
    print(f"trained TinyGPT d={args.width} x{args.layers} ({n / 1e6:.1f} M parameters), "
          f"{max(args.steps)} AdamW steps of {args.batch} x {args.seq} bytes in "
          f"{time.perf_counter() - t0:.0f} s; {len(paths)} checkpoints", flush=True)
    return paths, losses


def start_node(cluster, cpus: int, temp: str):
    """Add a node of `cpus` CPUs to a local Ray cluster (the first one is its head)."""
    node = dict(num_cpus=cpus, object_store_memory=100 * 2**20, temp_dir=temp)
    if cluster is None:
        from ray.cluster_utils import Cluster
        # Cluster writes the head's address under Ray's default temp folder (/tmp/ray, absent
        # on a fresh machine): point it into ours
        os.environ["RAY_TMPDIR"] = temp
        os.makedirs(os.path.join(temp, "ray"), exist_ok=True)
        return Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    cluster.add_node(**node)
    cluster.wait_for_nodes()
    return cluster


def timed(label: str, run, *, slots: int = 1, local: float | None = None) -> tuple:
    """Run, print its wall time, the time inside its tasks and the time outside them per task
    ((slots x wall - time in tasks) / tasks, `slots` tasks running at a time)."""
    t0 = time.perf_counter()
    df = run()
    wall = time.perf_counter() - t0
    inside = sum(t["seconds"] for t in df.attrs["tasks"])
    n = len(df.attrs["tasks"])
    outside = (slots * wall - inside) / n
    ratio = f"{wall / local:>9.2f}" if local else f"{'-':>9}"
    print(f"{label:<24}{wall:>8.1f}{inside:>12.1f}{n:>7}{outside:>15.2f}{ratio}", flush=True)
    return df, wall, outside


def warm_up(path, workers: int, on_ray: bool) -> float:
    """Seconds of one tiny task (one matrix, every metric) in this process or on every Ray
    node: a new process imports torch and eigenscope and pays its first calls once, whatever
    the number of tasks that follow (printed apart, with the start-up)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from eigenscope.engines.tasks import plan_tasks, run_task

    task = plan_tasks([(str(path), "warm-up", None)], layers=r"layers\.0\.self_attn\.q_proj",
                      options={"workers": workers})[0][0]
    t0 = time.perf_counter()
    if not on_ray:
        run_task(task)
    else:
        remote = ray.remote(run_task)
        ray.get([remote.options(num_cpus=workers, scheduling_strategy=NodeAffinitySchedulingStrategy(
            n["NodeID"], soft=False)).remote(task) for n in ray.nodes() if n["Alive"]])
    return time.perf_counter() - t0


def ray_runs(paths, opts, t_local: float, warm: list) -> list:
    """The Ray runs on one node, then two (a node added): [(table, wall, outside per task)]."""
    import ray

    temp, cluster, startup, runs = tempfile.mkdtemp(prefix="es-ray-"), None, [], []
    try:
        for nodes in (1, 2):
            t0 = time.perf_counter()
            cluster = start_node(cluster, opts["workers"], temp)
            if nodes == 1:
                ray.init(address=cluster.address, log_to_driver=False)
            startup.append(time.perf_counter() - t0)
            warm.append(warm_up(paths[0], opts["workers"], on_ray=True))
            runs.append(timed(f"ray, {nodes} node{'s' * (nodes > 1)} x {opts['workers']} CPUs",
                              lambda: eigenscope.analyze_many(paths, engine="ray", **opts),
                              slots=nodes, local=t_local))
    finally:
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
    print(f"  start-up, apart: Ray head node + connect {startup[0]:.1f} s, second node "
          f"{startup[1]:.1f} s", flush=True)
    return runs


def engines(paths, args):
    """Local, Ray on one node, Ray on two, local again (the machine's load drifts), same
    options; prints walls, Ray's overhead per task, and whether the rows are identical."""
    opts = dict(workers=args.workers, split=None)
    print(f"\n{'engine':<24}{'wall s':>8}{'in tasks s':>12}{'tasks':>7}{'outside s/task':>15}"
          f"{'vs local':>9}")
    warm = [warm_up(paths[0], args.workers, on_ray=False)]
    local, t_local, out_local = timed("local", lambda: eigenscope.analyze_many(paths, **opts))
    (one, t_one, out_one), (two, t_two, out_two) = ray_runs(paths, opts, t_local, warm)
    again, t_again, out_again = timed("local, again", lambda: eigenscope.analyze_many(
        paths, **opts), local=t_local)
    per_task = (t_local + t_again) / (2 * len(paths))
    print(f"  warm-up, apart (a process's first task): local {warm[0]:.1f} s, Ray 1 node "
          f"{warm[1]:.1f} s, 2 nodes {warm[2]:.1f} s")
    print(f"Ray's overhead per task, start-up excluded (time outside the tasks, minus the local "
          f"engine's {(out_local + out_again) / 2:.2f} s): 1 node {out_one - (out_local + out_again) / 2:+.2f} s, "
          f"2 nodes {out_two - (out_local + out_again) / 2:+.2f} s = "
          f"{(max(out_one, out_two) - (out_local + out_again) / 2) / per_task:+.1%} of a local "
          f"task ({per_task:.1f} s; target <= 10 %)")
    print(f"wall vs the two local runs' mean: 1 node {2 * t_one / (t_local + t_again):.2f}, "
          f"2 nodes {2 * t_two / (t_local + t_again):.2f} (same two cores: no real speed-up)")
    print(f"one checkpoint analysed locally: {per_task:.1f} s on average; rows identical local vs "
          f"Ray 1 node vs 2 nodes vs local again: "
          f"{local.equals(one) and local.equals(two) and local.equals(again)}")
    return two


def trajectory(table, losses):
    from eigenscope.report.trajectory import role_medians

    x = {"values": {s: step for s, step in zip(table["source"], table["step"])}}
    alpha, srank = role_medians(table, x, "alpha"), role_medians(table, x, "stable_rank")
    roles = [r for r in ("q", "k", "v", "o", "up", "down", "embed", "head") if r in alpha]
    print("\nmedian alpha per role by step (val loss in nats per byte)")
    print(f"{'step':>6}{'loss':>7}" + "".join(f"{r:>7}" for r in roles))
    for step in alpha.index:
        print(f"{step:>6}{losses[step]:>7.3f}" + "".join(f"{alpha.at[step, r]:>7.2f}" for r in roles))
    print("\nmedian stable rank per role by step")
    print(f"{'step':>6}" + "".join(f"{r:>7}" for r in roles))
    for step in srank.index:
        print(f"{step:>6}" + "".join(f"{srank.at[step, r]:>7.1f}" for r in roles))


def screenshot(page: Path, png: Path) -> None:
    """The trajectory view in headless Chromium (as tests/test_report_browser.py drives it)."""
    from selenium import webdriver

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for f in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
              "--disable-background-networking", "--window-size=1300,1900"):
        opts.add_argument(f)
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    driver = webdriver.Chrome(service=service, options=opts)
    try:
        driver.get(page.resolve().as_uri())
        time.sleep(1.0)
        png.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(png))
    finally:
        driver.quit()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--steps", default="0,10,20,40,60,90,120,160")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("out/many"))
    ap.add_argument("--screenshot", type=Path, default=None)
    ap.add_argument("--reuse", action="store_true", help="reuse the checkpoints in --out")
    args = ap.parse_args()
    args.steps = sorted(int(s) for s in args.steps.split(","))
    torch.set_num_threads(1)     # training: one thread (two contend badly on a shared 2-core box)
    paths, losses = train(args, args.out)
    torch.set_num_threads(args.workers)
    table = engines(paths, args)
    trajectory(table, losses)
    page = args.out / "trajectory.html"
    eigenscope.report.build_report(table, out=page, title="eigenscope: TinyGPT training run")
    print(f"\nwrote {page}")
    if args.screenshot:
        screenshot(page, args.screenshot)
        print(f"wrote {args.screenshot}")


if __name__ == "__main__":
    main()
