"""The ``learned`` captioner: pixels -> text, trained here on the semantic captions.

A small CNN turns a 64 x 64 RGB frame into an 8 x 8 grid of feature vectors; a 2-layer
transformer decoder writes the caption word by word, attending to that grid. Targets are the
semantic captions of the same frames (``vlnav.perception.semantic``), tokenised with a word
vocabulary built from them. Two auxiliary heads make the encoder learn *what* is in view
before the decoder learns to say it: one on the pooled grid predicts the caption's object
categories (multi-label) and room type; one on each grid cell predicts the mix of pixel
classes under it (object category, room floor, wall, ...), read from the instance-id image of
the same frame during training only. At inference the captioner reads RGB alone. (At equal
training time, 96 x 96 input scored lower on unseen houses than 64 x 64: fewer steps.)

``vlnav perception train-captioner`` renders frames at random poses in the env's train
houses, trains for a time budget, evaluates on ``val_unseen`` houses (object-mention P/R/F1,
room accuracy, BLEU-4) and writes a checkpoint folder::

    runs/captioner/
      model.pt         state_dict (torch.save)
      vocab.json       the word list (ids 0..3: <pad> <bos> <eos> <unk>)
      config.json      architecture, image size, object and room vocabularies
      train_state.pt   optimizer, step, elapsed time: rerunning the command resumes
      eval.json        scores on unseen houses, training time, examples

Example:
    >>> cap = LearnedCaptioner("runs/captioner")
    >>> cap.caption([View(rgb=frame)])[0].text
    'A kitchen with a silver fridge ahead.'
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from vlnav import VlnavError
from vlnav.config import ConfigError, EnvConfig, check_range
from vlnav.perception.base import Caption, View
from vlnav.perception.text import WordVocab, caption_scores, parse_caption, text_vocabulary

FORMAT = "vlnav-learned-captioner-v1"
DEFAULT_CHECKPOINT = "runs/captioner"
MEAN, STD = 0.5, 0.25  # pixel normalisation after /255


# --------------------------------------------------------------------------- configs
@dataclasses.dataclass
class CaptionModelConfig:
    """Architecture; saved in ``config.json`` so a checkpoint rebuilds its own model."""

    image_size: int = 64
    channels: list[int] = dataclasses.field(default_factory=lambda: [32, 64, 128])
    d_model: int = 128
    layers: int = 2
    heads: int = 4
    max_len: int = 40  # tokens including <bos> and <eos>
    dropout: float = 0.1

    def __post_init__(self) -> None:
        check_range("image_size", self.image_size, 16, 512)
        check_range("d_model", self.d_model, 16, 2048)
        check_range("layers", self.layers, 1, 12)
        check_range("heads", self.heads, 1, 32)
        check_range("max_len", self.max_len, 8, 256)
        check_range("dropout", self.dropout, 0.0, 0.9)
        if self.d_model % self.heads:
            raise ConfigError(f"d_model={self.d_model} must be a multiple of heads={self.heads}")
        if not self.channels:
            raise ConfigError("channels must list at least one stage width")

    @property
    def grid(self) -> int:
        """Side of the feature grid: each stage halves the image (and so does the stem)."""
        return self.image_size // 2 ** len(self.channels)


@dataclasses.dataclass
class TrainCaptionerConfig:
    """``vlnav perception train-captioner`` settings (``--set key=value`` overrides them)."""

    frames: int = 24000  # training frames rendered in the train houses
    eval_frames: int = 1200  # frames rendered in the val_unseen houses
    minutes: float = 10.0  # wall-clock training budget (rendering and evaluation excluded)
    max_steps: int = 0  # 0: until the time budget is spent
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    aux_weight: float = 0.5  # auxiliary object / room head
    seg_weight: float = 1.0  # auxiliary per-grid-cell class mix (from the instance ids)
    flip: bool = True  # mirror frames, swapping "left" and "right" in the target
    seed: int = 0
    save_every_s: float = 60.0
    eval_every_s: float = 120.0  # quick val_unseen scores (240 frames) on the way; 0: never
    threads: int = 0  # torch threads; 0: auto (one per idle core, see auto_threads)
    model: CaptionModelConfig = dataclasses.field(default_factory=CaptionModelConfig)

    def __post_init__(self) -> None:
        check_range("frames", self.frames, 1, 10_000_000)
        check_range("eval_frames", self.eval_frames, 0, 1_000_000)
        check_range("minutes", self.minutes, 0.0, 10_000)
        check_range("max_steps", self.max_steps, 0, 100_000_000)
        check_range("batch_size", self.batch_size, 1, 4096)
        check_range("lr", self.lr, 1e-6, 1.0)
        check_range("aux_weight", self.aux_weight, 0.0, 10.0)
        check_range("seg_weight", self.seg_weight, 0.0, 10.0)
        check_range("threads", self.threads, 0, 1024)
        if self.minutes == 0 and self.max_steps == 0:
            raise ConfigError("set minutes > 0 or max_steps > 0 (or both)")


# --------------------------------------------------------------------------- the model
def _build_model(
    cfg: CaptionModelConfig, vocab_size: int, n_categories: int, n_rooms: int, n_classes: int = 0
):
    """The torch module (built lazily so that importing this file needs no torch)."""
    import torch
    from torch import nn

    def conv(cin: int, cout: int, stride: int) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)
        )

    class ImageEncoder(nn.Module):
        """(B, 3, S, S) -> grid tokens (B, G*G, d) and a pooled vector (B, d)."""

        def __init__(self) -> None:
            super().__init__()
            c = cfg.channels
            stages = [conv(3, c[0], 2)]  # stem: S/2
            for cin, cout in zip(c[:-1], c[1:]):
                stages += [conv(cin, cout, 2), conv(cout, cout, 1)]
            stages += [conv(c[-1], c[-1], 2 if len(c) == 1 else 1)]
            self.body = nn.Sequential(*stages)
            self.proj = nn.Linear(c[-1], cfg.d_model)
            self.pos = nn.Parameter(torch.zeros(1, cfg.grid * cfg.grid, cfg.d_model))
            nn.init.normal_(self.pos, std=0.02)

        def forward(self, x):
            f = self.body(x)  # (B, C, G, G)
            f = f.flatten(2).transpose(1, 2)  # (B, G*G, C)
            tokens = self.proj(f) + self.pos  # (B, G*G, d)
            return tokens, tokens.mean(dim=1)  # (B, G*G, d), (B, d)

    class CaptionNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            d = cfg.d_model
            self.encoder = ImageEncoder()
            self.embed = nn.Embedding(vocab_size, d)
            self.pos = nn.Parameter(torch.zeros(1, cfg.max_len, d))
            nn.init.normal_(self.pos, std=0.02)
            layer = nn.TransformerDecoderLayer(
                d, cfg.heads, 4 * d, cfg.dropout, batch_first=True, norm_first=True
            )
            self.decoder = nn.TransformerDecoder(layer, cfg.layers)
            self.norm = nn.LayerNorm(d)
            self.head = nn.Linear(d, vocab_size, bias=False)
            self.head.weight = self.embed.weight  # tied
            self.aux_objects = nn.Linear(d, n_categories)
            self.aux_room = nn.Linear(d, n_rooms + 1)  # + "no room in view"
            self.aux_seg = nn.Linear(d, n_classes) if n_classes else None

        def decode(self, memory, tokens):
            """memory (B, M, d), tokens (B, T) -> logits (B, T, V)."""
            t = tokens.shape[1]
            x = self.embed(tokens) + self.pos[:, :t]  # (B, T, d)
            causal = torch.triu(torch.full((t, t), float("-inf"), device=x.device), 1)
            x = self.decoder(x, memory, tgt_mask=causal)
            return self.head(self.norm(x))

        def forward(self, images, tokens):
            memory, pooled = self.encoder(images)  # (B, G*G, d), (B, d)
            seg = self.aux_seg(memory) if self.aux_seg is not None else None  # (B, G*G, K)
            return (
                self.decode(memory, tokens),
                self.aux_objects(pooled),
                self.aux_room(pooled),
                seg,
            )

        @torch.no_grad()
        def generate(self, images, bos: int, eos: int):
            """Greedy decoding: (B, 3, S, S) -> token ids (B, <= max_len)."""
            memory, _ = self.encoder(images)
            out = torch.full((images.shape[0], 1), bos, dtype=torch.long, device=images.device)
            done = torch.zeros(images.shape[0], dtype=torch.bool, device=images.device)
            for _ in range(cfg.max_len - 1):
                nxt = self.decode(memory, out)[:, -1].argmax(-1)  # (B,)
                nxt = torch.where(done, torch.full_like(nxt, eos), nxt)
                out = torch.cat([out, nxt[:, None]], dim=1)
                done |= nxt == eos
                if bool(done.all()):
                    break
            return out

    return CaptionNet()


def preprocess(frames: list[np.ndarray] | np.ndarray, size: int):
    """RGB uint8 frames of any size -> normalised tensor (B, 3, size, size): centre crop to a
    square, resize (area interpolation), scale to about [-2, 2]."""
    import cv2
    import torch

    out = np.empty((len(frames), size, size, 3), np.uint8)
    for i, f in enumerate(frames):
        f = np.asarray(f)
        if f.ndim == 2:
            f = np.repeat(f[:, :, None], 3, axis=2)
        f = f[:, :, :3]
        h, w = f.shape[:2]
        s = min(h, w)
        f = f[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
        if s != size:
            interp = cv2.INTER_AREA if s > size else cv2.INTER_LINEAR
            f = cv2.resize(np.ascontiguousarray(f), (size, size), interpolation=interp)
        out[i] = f
    x = torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255.0)
    return (x - MEAN) / STD


# --------------------------------------------------------------------------- checkpoint
def _file_digest(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:12]


def save_checkpoint(out: Path, model: Any, vocab: WordVocab, meta: dict[str, Any]) -> None:
    """Write model.pt, vocab.json and config.json atomically (each via a temporary file)."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "model.pt.tmp"
    torch.save(model.state_dict(), tmp)
    tmp.replace(out / "model.pt")
    for name, data in (("vocab.json", vocab.itos), ("config.json", meta)):
        t = out / (name + ".tmp")
        t.write_text(json.dumps(data, indent=1))
        t.replace(out / name)


def load_checkpoint(path: str | Path) -> tuple[Any, WordVocab, dict[str, Any], str]:
    """(model in eval mode, vocab, config.json, weights digest); one-line VlnavError naming
    the path if the folder is missing, incomplete or corrupt."""
    path = Path(path)
    if not path.is_dir():
        raise VlnavError(
            f"learned captioner checkpoint not found: {path} "
            f"(train one with: vlnav perception train-captioner --out {path})"
        )
    try:
        import torch
    except ImportError:
        raise VlnavError("the learned captioner needs torch: pip install -e '.[torch]'") from None
    for name in ("model.pt", "vocab.json", "config.json"):
        if not (path / name).is_file():
            raise VlnavError(f"corrupt learned captioner checkpoint {path}: {name} is missing")
    try:
        meta = json.loads((path / "config.json").read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"config.json format is {meta.get('format')!r}, not {FORMAT!r}")
        mcfg = CaptionModelConfig(**meta["model"])
        vocab = WordVocab(json.loads((path / "vocab.json").read_text()))
        model = _build_model(
            mcfg,
            len(vocab),
            len(meta["categories"]),
            len(meta["rooms"]),
            int(meta.get("seg_classes", 0)),
        )
        state = torch.load(path / "model.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as e:  # noqa: BLE001 - any failure here means an unusable checkpoint
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise VlnavError(f"corrupt learned captioner checkpoint {path}: {reason[:200]}") from None
    model.eval()
    return model, vocab, meta, _file_digest(path / "model.pt")


# --------------------------------------------------------------------------- captioner
class LearnedCaptioner:
    """Pixels -> text with a checkpoint written by ``vlnav perception train-captioner``.

    Example:
        >>> captioner = make_captioner("learned:runs/captioner")
    """

    name = "learned"
    needs = ("rgb",)

    def __init__(self, checkpoint: str | Path = DEFAULT_CHECKPOINT, batch_size: int = 64):
        self.checkpoint = Path(checkpoint)
        self.model, self.vocab, self.meta, self._digest = load_checkpoint(self.checkpoint)
        self.image_size = int(self.meta["model"]["image_size"])
        self.batch_size = batch_size

    @property
    def identity(self) -> str:
        return f"learned-{self._digest}"

    def describe(self, frames: list[np.ndarray]) -> list[str]:
        """Free-text captions of RGB frames (any size; centre-cropped and resized)."""
        import torch

        texts: list[str] = []
        with torch.inference_mode():
            for i in range(0, len(frames), self.batch_size):
                x = preprocess(frames[i : i + self.batch_size], self.image_size)
                ids = self.model.generate(x, self.vocab.bos, self.vocab.eos)
                texts += [self.vocab.decode(row[1:].tolist()) for row in ids]
        return texts

    def caption(self, views: list[View]) -> list[Caption]:
        frames = []
        for v in views:
            if v.rgb is None:
                raise ValueError("the learned captioner needs the rgb sensor")
            frames.append(v.rgb)
        vocab = text_vocabulary()
        return [parse_caption(t, vocab) for t in self.describe(frames)]

    def encode(self, frames: list[np.ndarray]) -> np.ndarray:
        """Pooled image-encoder features (N, d_model) float32: the visual features for fusion."""
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(frames), self.batch_size):
                x = preprocess(frames[i : i + self.batch_size], self.image_size)
                out.append(self.model.encoder(x)[1].numpy())
        d = int(self.meta["model"]["d_model"])
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, d), np.float32)


# --------------------------------------------------------------------------- training
def _targets(
    captions: list[Caption], vocab: WordVocab, max_len: int, cats: list[str], rooms: list[str]
):
    tokens = np.zeros((len(captions), max_len), np.int64)
    objects = np.zeros((len(captions), len(cats)), np.float32)
    room = np.zeros(len(captions), np.int64)
    ci = {c: i for i, c in enumerate(cats)}
    ri = {r: i + 1 for i, r in enumerate(rooms)}  # 0: no room in view
    for n, c in enumerate(captions):
        ids = vocab.encode(c.text, max_len)
        tokens[n, : len(ids)] = ids
        for m in c.mentions:
            if m.category in ci:
                objects[n, ci[m.category]] = 1.0
        room[n] = ri.get(c.room or "", 0)
    return tokens, objects, room


def _sample_batch(data: dict[str, Any], rng: np.random.Generator, size: int, swap: Any) -> dict:
    """A random batch; with ``swap`` (a token-id permutation exchanging "left" and "right")
    half of it is mirrored, targets included."""
    import torch

    idx = torch.from_numpy(rng.integers(0, len(data["x"]), size))
    b = {k: v[idx] for k, v in data.items()}
    b["x"] = b["x"].permute(0, 3, 1, 2).float().div_(255.0).sub_(MEAN).div_(STD)  # (B, 3, S, S)
    b["tok"] = b["tok"][:, : int((b["tok"] != 0).sum(1).max())]  # trim the batch's padding
    if swap is not None:
        flip = torch.from_numpy(rng.random(size) < 0.5)
        b["x"][flip] = b["x"][flip].flip(-1)
        b["tok"][flip] = swap[b["tok"][flip]]
        if "lab" in b:
            b["lab"][flip] = b["lab"][flip].flip(-1)
    return b


def _loss(model: Any, b: dict[str, Any], cfg: TrainCaptionerConfig, n_classes: int, cell: int):
    """Next-word cross-entropy + the auxiliary object / room / grid-class losses."""
    import torch.nn.functional as F

    logits, obj_logits, room_logits, seg_logits = model(b["x"], b["tok"][:, :-1])
    loss = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), b["tok"][:, 1:].reshape(-1), ignore_index=0
    )
    if cfg.aux_weight:
        aux = F.binary_cross_entropy_with_logits(obj_logits, b["obj"]) * 10.0
        aux = aux + F.cross_entropy(room_logits, b["room"])
        loss = loss + cfg.aux_weight * aux
    if seg_logits is not None and "lab" in b:
        # soft target: the mix of pixel classes in each grid cell, (B, G*G, K)
        mix = F.one_hot(b["lab"].long(), n_classes).permute(0, 3, 1, 2).float()  # (B, K, S, S)
        mix = F.avg_pool2d(mix, cell).flatten(2).transpose(1, 2)  # (B, G*G, K)
        loss = loss + cfg.seg_weight * -(mix * F.log_softmax(seg_logits, -1)).sum(-1).mean()
    return loss


def _lr_factor(step: int, progress: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay over the budget's progress (time or steps) to 5%."""
    warm = min(1.0, (step + 1) / max(1, warmup))
    return warm * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def auto_threads() -> int:
    """One torch thread per idle core (by the 1-minute load average), at least one.

    On a shared 2-core machine, two threads contending with another busy process run several
    times slower than one thread (each parallel region waits for its slowest thread).
    """
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except OSError:
        busy = 0.0
    return max(1, min(cores, int(cores - busy + 0.5)))


def machine() -> dict[str, Any]:
    """The benchmark machine (``vlnav.bench.machine``) plus torch's version and threads."""
    import torch

    from vlnav.bench import machine as base

    return base() | {"torch": torch.__version__, "threads": torch.get_num_threads()}


def evaluate_captioner(
    describe: Any, frames: Any, batch: int = 256, progress: bool = False
) -> tuple[dict[str, Any], list[str]]:
    """Scores of ``describe(list of rgb) -> list of str`` against the frames' semantic captions."""
    from tqdm import tqdm

    hyps: list[str] = []
    for i in tqdm(
        range(0, len(frames), batch), desc="evaluating", disable=not progress, leave=False
    ):
        hyps += describe(list(frames.rgb[i : i + batch]))
    return caption_scores(hyps, frames.captions), hyps


def train_captioner(
    env: EnvConfig,
    cfg: TrainCaptionerConfig,
    out: str | Path = DEFAULT_CHECKPOINT,
    progress: bool = True,
    resume: bool = True,
) -> dict[str, Any]:
    """Render frames, train, evaluate on unseen houses; returns (and writes) ``eval.json``.

    Rerunning with the same ``out`` resumes from ``train_state.pt`` until the budget is spent.
    """
    import torch
    from tqdm import tqdm

    from vlnav.perception.frames import frames_summary, label_classes, render_frames
    from vlnav.sampler import prepare_data, scene_ids

    out = Path(out)
    torch.set_num_threads(cfg.threads or auto_threads())
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    mc = cfg.model
    if env.scenes.procedural:
        prepare_data(env, progress=progress)
    train_scenes, val_scenes = scene_ids(env, "train"), scene_ids(env, "val_unseen")
    t_data = time.perf_counter()
    train = render_frames(
        env, train_scenes, cfg.frames, mc.image_size, cfg.seed, progress, "train frames",
        labels=cfg.seg_weight > 0,
    )  # fmt: skip
    val = None
    if cfg.eval_frames and val_scenes:
        val = render_frames(
            env,
            val_scenes,
            cfg.eval_frames,
            mc.image_size,
            cfg.seed + 1,
            progress,
            "val_unseen frames",
        )
    t_data = time.perf_counter() - t_data

    tv = text_vocabulary()
    cats = sorted(" ".join(c) for c in tv.categories)
    rooms = sorted(" ".join(r) for r in tv.rooms)
    state_path = out / "train_state.pt"
    resuming = resume and state_path.is_file() and (out / "vocab.json").is_file()
    vocab = (
        WordVocab(json.loads((out / "vocab.json").read_text()))
        if resuming
        else WordVocab.build(c.text for c in train.captions)
    )
    tokens, objects, room = _targets(train.captions, vocab, mc.max_len, cats, rooms)
    swap = torch.arange(len(vocab))
    if "left" in vocab.stoi and "right" in vocab.stoi:
        swap[vocab.stoi["left"]], swap[vocab.stoi["right"]] = (
            vocab.stoi["right"],
            vocab.stoi["left"],
        )

    n_classes = len(label_classes()) if cfg.seg_weight > 0 else 0
    model = _build_model(mc, len(vocab), len(cats), len(rooms), n_classes)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "pos" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "pos" not in n)]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.lr,
        betas=(0.9, 0.98),
    )
    step, elapsed = 0, 0.0
    if resuming:
        try:
            st = torch.load(state_path, map_location="cpu", weights_only=False)
            model.load_state_dict(st["model"])
            opt.load_state_dict(st["optimizer"])
            step, elapsed = int(st["step"]), float(st["elapsed"])
        except Exception as e:  # noqa: BLE001
            raise VlnavError(
                f"cannot resume from {state_path}: {e} (delete it to start over)"
            ) from None

    meta = {
        "format": FORMAT,
        "model": dataclasses.asdict(mc),
        "categories": cats,
        "rooms": rooms,
        "seg_classes": n_classes,
        "train": dataclasses.asdict(cfg) | {"env": env.name, "scenes": train_scenes},
    }
    budget_s = cfg.minutes * 60.0
    data = {  # uint8 frames are converted per batch
        "x": torch.from_numpy(train.rgb),  # (N, S, S, 3)
        "tok": torch.from_numpy(tokens),  # (N, max_len)
        "obj": torch.from_numpy(objects),  # (N, categories)
        "room": torch.from_numpy(room),  # (N,)
    }
    if train.labels is not None:
        data["lab"] = torch.from_numpy(train.labels)  # (N, S, S)
    cell = mc.image_size // mc.grid

    def progress_of(step: int, elapsed: float) -> float:
        p = [elapsed / budget_s] if budget_s > 0 else []
        p += [step / cfg.max_steps] if cfg.max_steps else []
        return max(p)

    def save_state() -> None:
        save_checkpoint(out, model, vocab, meta)
        tmp = out / "train_state.pt.tmp"
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "step": step,
                "elapsed": elapsed,
            },
            tmp,
        )
        tmp.replace(state_path)

    model.train()
    total = int(budget_s) if budget_s else cfg.max_steps
    bar = tqdm(
        total=total,
        initial=min(int(elapsed) if budget_s else step, total),
        desc="training captioner",
        unit="s" if budget_s else "step",
        disable=not progress,
    )
    last_save = last_eval = elapsed
    loss_ema = None
    curve: list[dict[str, Any]] = []

    def quick_eval() -> dict[str, Any]:
        model.eval()
        pick = np.linspace(0, len(val) - 1, min(240, len(val))).astype(int)  # all houses
        with torch.inference_mode():
            x = preprocess(val.rgb[pick], mc.image_size)
            ids = model.generate(x, vocab.bos, vocab.eos)
        hyps = [vocab.decode(r[1:].tolist()) for r in ids]
        model.train()
        s = caption_scores(hyps, [val.captions[i] for i in pick])
        return {"step": step, "minutes": round(elapsed / 60, 2), "loss": loss_ema} | {
            key: round(s[key], 4) for key in ("object_f1", "room_accuracy", "bleu4")
        }

    while progress_of(step, elapsed) < 1.0:
        t0 = time.perf_counter()
        batch = _sample_batch(data, rng, cfg.batch_size, swap if cfg.flip else None)
        for g in opt.param_groups:
            g["lr"] = cfg.lr * _lr_factor(step, progress_of(step, elapsed), cfg.warmup_steps)
        loss = _loss(model, batch, cfg, n_classes, cell)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        dt = time.perf_counter() - t0
        elapsed += dt
        lv = float(loss.detach())
        loss_ema = lv if loss_ema is None else 0.98 * loss_ema + 0.02 * lv
        bar.update(min(int(elapsed), total) - bar.n if budget_s else 1)  # seconds or steps
        bar.set_postfix(step=step, loss=f"{loss_ema:.3f}", refresh=False)
        if elapsed - last_save >= cfg.save_every_s:
            save_state()
            last_save = elapsed
        if val is not None and cfg.eval_every_s and elapsed - last_eval >= cfg.eval_every_s:
            curve.append(quick_eval())
            last_eval = elapsed
            bar.write(
                f"step {step} ({elapsed / 60:.1f} min): val_unseen object F1 "
                f"{curve[-1]['object_f1']:.3f}, room {curve[-1]['room_accuracy']:.3f}"
            )
    bar.close()
    model.eval()
    save_state()

    result: dict[str, Any] = {
        "checkpoint": str(out),
        "train_seconds": round(elapsed, 1),
        "data_seconds": round(t_data, 1),
        "steps": step,
        "train_frames": frames_summary(train),
        "final_loss": loss_ema,
        "curve": curve,
        "machine": machine(),
        "config": meta["train"],
    }
    if val is not None:
        captioner = LearnedCaptioner(out)
        t0 = time.perf_counter()
        scores, hyps = evaluate_captioner(captioner.describe, val, progress=progress)
        result["eval_seconds"] = round(time.perf_counter() - t0, 1)
        result["val_unseen"] = scores | {"scenes": val_scenes}
        pick = rng.choice(len(val), size=min(8, len(val)), replace=False)
        result["examples"] = [
            {"scene": val.scenes[i], "generated": hyps[i], "semantic": val.captions[i].text}
            for i in pick.tolist()
        ]
    (out / "eval.json").write_text(json.dumps(result, indent=1))
    return result
