"""Policy benchmarks (``scripts/bench_policy.py``): figures printed and written as JSON.

* training tokens/s of the policy, and its model FLOP utilisation (MFU): achieved training
  FLOP/s (6 x parameters x tokens, plus attention) over this CPU's measured fp32 matmul peak;
* decisions/s at batch 1 (one episode, KV cache) and batch 32 (``BatchDecider``: the packed
  path, the padded one, and the packed one on all cores), in float32 and bfloat16;
* wall time of evaluating a 1,839-episode split (the size of R2R-CE val-unseen) with
  ``workers`` processes, through ``vlnav.evaluate``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np


def matmul_peak(seconds: float = 2.0, n: int = 1024, device: str = "cpu", dtype=None) -> float:
    """Measured matmul FLOP/s of this process (torch, its current thread count; on a GPU,
    ``n`` = 4096), float32 unless ``dtype`` says otherwise."""
    import torch

    dtype = dtype or torch.float32
    if device != "cpu":
        n = max(n, 4096)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    _sync(device)
    k, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        k += 1
        if device != "cpu" and k % 10 == 0:
            _sync(device)
    _sync(device)
    return 2 * n**3 * k / (time.perf_counter() - t0)


def _sync(device: str) -> None:
    if device != "cpu":
        import torch

        torch.cuda.synchronize(device)


def training_throughput(
    policy: Any, items: list, steps: int = 10, batch: int = 8, device: str = "cpu"
) -> dict:
    import torch

    from vlnav.policy.model import collate

    opt = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    policy.train()
    rng = np.random.default_rng(0)
    tokens, t0 = 0, time.perf_counter()
    attn_flops = 0.0
    cfg = policy.lm.config
    for _ in range(steps):
        idx = rng.choice(len(items), size=min(batch, len(items)), replace=False)
        opt.zero_grad()
        for i in idx:
            b = collate([items[i]], policy.tokenizer.pad_token_id)
            loss, _ = policy({k: v.to(device) for k, v in b.items()})
            loss.backward()
            t = len(items[i]["input_ids"])
            tokens += t
            # causal attention: QK^T and AV, forward + backward (x3), half the T x T matrix
            attn_flops += 3 * 2 * 2 * cfg.num_hidden_layers * t * t * cfg.hidden_size / 2
        opt.step()
    _sync(device)
    dt = time.perf_counter() - t0
    n_params = sum(p.numel() for p in policy.parameters())
    flops = 6 * n_params * tokens + attn_flops
    policy.eval()
    return {"tokens_per_s": tokens / dt, "train_flops_per_s": flops / dt, "params": n_params}


def decision_rate(
    policy: Any, corpus: list, batch: int, rounds: int = 4, packed: bool = True, cpu: bool = False
) -> float:
    """Decisions/s with ``batch`` episodes decided together (rounds of one decision each);
    ``packed=False``: the model's own padded forward instead of ``vlnav.policy.packed``.
    ``cpu``: per second of this process's CPU time instead of wall time (on one thread, the
    rate on a machine whose hypervisor gives every cycle to this guest)."""
    from vlnav.policy.agent import EpisodeContext
    from vlnav.policy.batched import BatchDecider

    eps = [corpus[i % len(corpus)] for i in range(batch)]
    clock = time.process_time if cpu else time.perf_counter
    t0 = clock()
    n = 0
    if batch == 1:
        for instr, ds in eps * 8:
            ctx = EpisodeContext(policy, instr)
            for d in ds[:rounds]:
                ctx.scores(d)
                ctx.commit(d.label)
                n += 1
    else:
        bd = BatchDecider(policy, batch, packed=packed)
        for i, (instr, _) in enumerate(eps):
            bd.start(i, instr)
        for t in range(rounds):
            bd.decide({i: ds[min(t, len(ds) - 1)] for i, (_, ds) in enumerate(eps)})
            n += batch
    return n / (clock() - t0)


def _agreement(policy: Any, corpus: list) -> float:
    """How often the bfloat16 policy takes the float32 policy's decision (teacher-forced)."""
    import torch

    from vlnav.policy.agent import EpisodeContext

    picks: dict[str, list[int]] = {}
    for dt in ("float32", "bfloat16"):
        policy.to(getattr(torch, dt))
        out = picks.setdefault(dt, [])
        for instr, ds in corpus:
            ctx = EpisodeContext(policy, instr)
            for d in ds:
                out.append(int(np.argmax(ctx.scores(d)[0])))
                ctx.commit(d.label)
    a, b = picks["float32"], picks["bfloat16"]
    return float(np.mean([x == y for x, y in zip(a, b)]))


def _steal_note(steal: float | None) -> str:
    if not steal:
        return ""
    return f" (the hypervisor took {100 * steal:.0f} % of the CPU time meanwhile: steal)"


def run(
    checkpoint: str,
    run_dir: str,
    data_dir: str,
    workers: int = 2,
    eval_episodes: int = 1839,
    out: str | None = None,
    batch: int = 32,
    dtype: str = "float32",
    device: str = "cpu",
) -> dict[str, Any]:
    """All the figures; ``device`` ("cuda"): the policy's on a GPU (training, decisions at
    batch 1, 32 and 256, and the evaluation's policy calls), MFU against the GPU's measured
    float32 matmul rate."""
    import torch

    from vlnav.policy.agent import resolve_device

    device = resolve_device(device)
    gpu = device != "cpu"

    from vlnav.config import EnvConfig, load_config
    from vlnav.policy.model import NavPolicy
    from vlnav.train import _json_to_decisions, read_jsonl

    torch.set_num_threads(1)
    res: dict[str, Any] = {"threads": 1}
    from vlnav.bench import cpu_times, machine, steal_fraction

    res["machine"] = machine()
    ticks = cpu_times()
    res["device"] = device
    if gpu:
        res["gpu"] = torch.cuda.get_device_name(device)
    policy, meta = NavPolicy.load(checkpoint)
    policy.to(device)
    corpus = [_json_to_decisions(r) for r in read_jsonl(Path(run_dir) / "data" / "expert.jsonl")]
    corpus = [c for c in corpus if c[1]][:64]
    items = [policy.episode_tensors(i, d) for i, d in corpus]
    peak_key = "matmul_peak_flops_gpu_fp32" if gpu else "matmul_peak_flops_1_thread"
    res[peak_key] = matmul_peak(device=device)
    if gpu:
        res["matmul_peak_flops_gpu_bf16"] = matmul_peak(device=device, dtype=torch.bfloat16)
    training_throughput(policy, items, steps=2, device=device)  # warm-up (kernels, caches)
    res.update(training_throughput(policy, items, device=device))
    res["mfu"] = res["train_flops_per_s"] / res[peak_key]
    print(
        f"training: {res['tokens_per_s']:,.0f} tokens/s, MFU {100 * res['mfu']:.1f}% "
        f"of {res[peak_key] / 1e9:,.0f} GFLOP/s ({res.get('gpu', '1 thread')})"
    )
    cores = os.cpu_count() or 1
    runs = ((1, True, 1), (32, False, 1), (32, True, 1), (32, True, cores))
    if gpu:  # threads do not matter there; larger batches do
        runs = ((1, True, 1), (32, False, 1), (32, True, 1), (256, False, 1), (256, True, 1))
    for dt in ("float32", "bfloat16"):
        policy.to(getattr(torch, dt))
        sfx = "" if dt == "float32" else "_bf16"
        for b, packed, threads in runs:
            if threads != 1 and cores == 1:
                continue
            torch.set_num_threads(threads)
            decision_rate(policy, corpus, b, rounds=1, packed=packed)  # warm-up
            # the best of five: other guests of this machine's host take cores at times
            r = max(decision_rate(policy, corpus, b, packed=packed) for _ in range(5))
            key = f"decisions_per_s_batch{b}{sfx}"
            if b > 1 and not packed:
                key += "_padded"
            if threads > 1:
                key += f"_{threads}threads"
            res[key] = r
            how = "" if b == 1 else (" packed" if packed else " padded")
            print(
                f"decisions ({dt}, {threads} thread{'s' * (threads > 1)}): batch {b}{how}: "
                f"{r:,.1f}/s = {1000 / r:.2f} ms each"
            )
            if threads == 1 and b == 32 and packed:
                c = max(decision_rate(policy, corpus, b, packed=True, cpu=True) for _ in range(3))
                res[key + "_cpu_time"] = c
                print(f"  the same per CPU second (no steal): {c:,.1f}/s = {1000 / c:.2f} ms each")
        torch.set_num_threads(1)
    # the share of the CPU the hypervisor gave to other guests meanwhile (high: slow figures)
    res["steal_training_and_decisions"] = steal_fraction(ticks, ticks := cpu_times())
    if res["steal_training_and_decisions"]:
        print(_steal_note(res["steal_training_and_decisions"]).strip())
    res["bf16_agreement"] = _agreement(policy, corpus)
    print(f"bfloat16 takes the float32 decision {100 * res['bf16_agreement']:.1f}% of the time")
    policy.to(torch.float32)
    if eval_episodes:
        from vlnav.evaluate import evaluate
        from vlnav.sampler import prepare_data

        per = int(np.ceil(eval_episodes / 5))
        env = load_config(
            EnvConfig,
            "envs/procedural.yaml" if Path("envs/procedural.yaml").is_file() else None,
            [
                f"data_dir={data_dir}",
                "scenes.val_unseen=5",
                f"episodes.val_unseen_per_scene={per}",
                "episodes.train_per_scene=1",
                "episodes.val_seen_per_scene=1",
            ],
        )
        prepare_data(env, progress=False)
        t0 = time.perf_counter()
        ticks = cpu_times()
        ev = evaluate(
            env,
            "policy",
            "val_unseen",
            eval_episodes,
            workers,
            Path(data_dir) / "eval",
            agent_kwargs={"checkpoint": checkpoint, "dtype": dtype, "device": device},
            progress=True,
            batch=batch,
        )
        res["eval_episodes"] = ev.metrics["episodes"]
        res["eval_workers"] = workers
        res["eval_batch"] = batch
        res["eval_dtype"] = dtype
        res["eval_device"] = device
        res["eval_wall_s"] = time.perf_counter() - t0
        res["steal_eval"] = steal_fraction(ticks, cpu_times())
        res["eval_metrics"] = ev.metrics
        print(
            f"evaluation of {ev.metrics['episodes']} episodes with {workers} workers: "
            f"{res['eval_wall_s']:.0f} s" + _steal_note(res["steal_eval"])
        )
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(res, indent=2) + "\n")
    return res
