"""Fine-tune a target model on one subset: TRL ``SFTTrainer``, loss on assistant tokens, LoRA by default.

- Library: TRL's ``SFTTrainer`` (trl >= 1.16) on a pre-tokenized dataset whose
  ``assistant_masks`` column (``mads_core.validate.chat``) makes TRL put the loss on the
  assistant's tokens only; ``peft`` LoRA adapters (Hu et al. 2021, arXiv 2106.09685) on every
  linear layer by default, or full fine-tuning (``TrainSettings.method="full"``, for small models).
- How much training: ``schedule="steps"`` (default) gives every cell the same number of
  optimizer steps (``steps`` × ``batch_size`` × ``grad_accum`` samples drawn, cycling through
  the subset in a seed-shuffled order), so cells differ in *which* samples they saw, not in
  how much compute they got, and the whole-pool reference costs the same as a 5% cell.
  ``schedule="epochs"`` gives every cell ``epochs`` passes over its subset (the selection
  papers' rule: a larger subset also gets more updates).
- Seeds: the seed sets LoRA initialisation and the training order (Trainer ``seed`` and
  ``data_seed``); the subset's rank order never matters (the sampler shuffles).

``TRAINER_RUNS`` counts ``trainer.train()`` calls in this process (the grid's cache tests
read it). Nothing is downloaded: the model comes from ``mads_core.model.models.model_source``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mads_core.config import ModelSpec, settings_hash
from mads_core.validate.chat import encode_chat

TRAINER_RUNS = 0
ADAPTER_DIR = "adapter"
_TRL_DEPRECATIONS = ".*deprecated and will be removed in v6"  # transformers APIs TRL still calls


@dataclass(frozen=True)
class TrainSettings:
    """Training settings shared by every cell of a grid (all enter the cache key but ``device``).

    method: ``"lora"`` (peft LoRA on ``lora_targets``) or ``"full"`` (every weight).
    schedule: ``"steps"`` (``steps`` optimizer steps per cell) or ``"epochs"`` (``epochs`` passes).
    batch_size / grad_accum: samples per forward pass / passes per optimizer step.
    learning_rate: peak rate (5e-4: LoRA with few steps; use ~1e-5..5e-5 for ``"full"``);
        lr_scheduler: a transformers scheduler name; warmup_steps.
    lora_r / lora_alpha / lora_dropout / lora_targets: peft ``LoraConfig`` fields.
    max_length: tokens per sample (longer ones keep their opening and their end).
    dtype: ``"auto"`` (bf16 autocast on CUDA, float32 on CPU), ``"float32"``, ``"bfloat16"``.
    device: ``"auto"``, ``"cpu"``, ``"cuda"`` (not in the cache key).
    """

    method: str = "lora"
    schedule: str = "steps"
    steps: int = 8
    epochs: float = 1.0
    batch_size: int = 4
    grad_accum: int = 1
    learning_rate: float = 5e-4
    lr_scheduler: str = "constant"
    warmup_steps: int = 0
    weight_decay: float = 0.0
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_targets: str = "all-linear"
    max_length: int = 96
    dtype: str = "auto"
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.method not in ("lora", "full"):
            raise ValueError(f"training method must be 'lora' or 'full', got {self.method!r}")
        if self.schedule not in ("steps", "epochs"):
            raise ValueError(f"schedule must be 'steps' or 'epochs', got {self.schedule!r}")
        if self.steps < 1 or self.epochs <= 0 or self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("steps, batch_size and grad_accum must be >= 1 and epochs > 0")
        if self.max_length < 16:
            raise ValueError(f"max_length must be >= 16, got {self.max_length}")
        if self.dtype not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"training dtype must be auto, float32 or bfloat16, got {self.dtype!r}")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ValueError(f"training device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if not self.learning_rate > 0 or self.lora_r < 1 or not self.lora_alpha > 0:
            raise ValueError("learning rate, LoRA rank and LoRA alpha must be > 0 "
                             f"(got {self.learning_rate}, {self.lora_r}, {self.lora_alpha})")

    def cache_hash(self) -> str:
        return settings_hash(self, exclude=("device",))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve(settings: TrainSettings) -> tuple[str, bool]:
    """(device, bf16?) for these settings on this machine."""
    import torch

    device = settings.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("training device 'cuda' requested but no CUDA GPU is available (use --train-device cpu)")
    bf16 = settings.dtype == "bfloat16" or (settings.dtype == "auto" and device.startswith("cuda"))
    return device, bf16


def load_base(spec: ModelSpec, settings: TrainSettings) -> tuple[Any, Any]:
    """(model, tokenizer) of the target model, float32 weights (bf16 runs as autocast), on the device."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mads_core.model.models import model_source

    source = model_source(spec)
    kwargs = {"trust_remote_code": spec.trust_remote_code, "local_files_only": True}
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    device, bf16 = resolve(settings)
    dtype = torch.bfloat16 if (bf16 and device.startswith("cuda") and settings.method == "lora") else torch.float32
    with _quiet_loading():
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs)
    model.to(device)
    return model, tokenizer


@contextlib.contextmanager
def _quiet_loading():
    """No "Loading weights" bar per cell: the grid prints its own progress line for each."""
    from transformers.utils import logging as tf_logging

    bars = tf_logging.is_progress_bar_enabled()
    tf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if bars:
            tf_logging.enable_progress_bar()


def tokenized_subset(tokenizer: Any, turns_list: Sequence[Sequence[Sequence[str]]], max_length: int) -> tuple[Any, int]:
    """A ``datasets.Dataset`` of input_ids + assistant_masks, and how many samples had no loss token (dropped)."""
    from datasets import Dataset as HFDataset

    rows = {"input_ids": [], "assistant_masks": []}
    dropped = 0
    for turns in turns_list:
        e = encode_chat(tokenizer, turns, max_length)
        if not any(e.assistant_masks):
            dropped += 1
            continue
        rows["input_ids"].append(e.input_ids)
        rows["assistant_masks"].append(e.assistant_masks)
    return HFDataset.from_dict(rows), dropped


@dataclass(frozen=True)
class TrainResult:
    """What one training run did: steps, samples seen, first/last logged loss, seconds, dropped samples."""

    steps: int
    samples_seen: int
    first_loss: float
    last_loss: float
    seconds: float
    dropped: int


def train_subset(spec: ModelSpec, turns_list: Sequence[Sequence[Sequence[str]]], settings: TrainSettings,
                 seed: int, out_dir: str | Path | None = None,
                 step_callback: Callable[[int, int], None] | None = None) -> tuple[Any, Any, TrainResult]:
    """Fine-tune on the conversations ``turns_list``; returns (model, tokenizer, TrainResult).

    ``out_dir``: where the LoRA adapter (or, for ``method="full"``, the whole model) is saved
    (``<out_dir>/adapter``). ``step_callback(step, total_steps)`` after each optimizer step.
    Raises ValueError when no sample has an assistant token to learn from.
    """
    with warnings.catch_warnings():
        # transformers APIs that TRL/peft still call: deprecation notices no user can act on
        warnings.filterwarnings("ignore", message=_TRL_DEPRECATIONS, category=FutureWarning)
        return _train_subset(spec, turns_list, settings, seed, out_dir, step_callback)


def _train_subset(spec: ModelSpec, turns_list: Sequence[Sequence[Sequence[str]]], settings: TrainSettings,
                  seed: int, out_dir: str | Path | None,
                  step_callback: Callable[[int, int], None] | None) -> tuple[Any, Any, TrainResult]:
    global TRAINER_RUNS
    import tempfile

    import torch
    from datasets.utils import logging as ds_logging
    from transformers import TrainerCallback, set_seed
    from trl import SFTConfig, SFTTrainer

    device, bf16 = resolve(settings)
    set_seed(seed)
    model, tokenizer = load_base(spec, settings)
    bars = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()  # TRL's dataset preparation bars would flood the grid's progress lines
    data, dropped = tokenized_subset(tokenizer, turns_list, settings.max_length)
    if len(data) == 0:
        raise ValueError("no training sample has an assistant turn left after truncation; raise max_length")
    if settings.method == "lora":
        from peft import LoraConfig, get_peft_model

        targets: Any = settings.lora_targets
        if targets != "all-linear":
            targets = [t.strip() for t in targets.split(",") if t.strip()]
        config = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
                            target_modules=targets, task_type="CAUSAL_LM")
        model = get_peft_model(model, config)
    per_step = settings.batch_size * settings.grad_accum
    if settings.schedule == "steps":
        total_steps = settings.steps
    else:
        total_steps = max(1, int(-(-settings.epochs * len(data) // per_step)))

    class _Steps(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            if step_callback is not None:
                step_callback(state.global_step, total_steps)

    with tempfile.TemporaryDirectory(prefix="mads-train-") as tmp:
        args = SFTConfig(
            output_dir=tmp, max_steps=total_steps, per_device_train_batch_size=settings.batch_size,
            gradient_accumulation_steps=settings.grad_accum, learning_rate=settings.learning_rate,
            lr_scheduler_type=settings.lr_scheduler, warmup_steps=settings.warmup_steps,
            weight_decay=settings.weight_decay, max_length=settings.max_length, seed=seed, data_seed=seed,
            bf16=bf16, use_cpu=device == "cpu", logging_steps=1, save_strategy="no", report_to="none",
            disable_tqdm=True, dataloader_num_workers=0,
        )
        quiet = logging.getLogger("transformers.trainer")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                                 callbacks=[_Steps()])
            start = time.perf_counter()
            TRAINER_RUNS += 1
            with torch.enable_grad(), contextlib.redirect_stdout(io.StringIO()):
                trainer.train()
            seconds = time.perf_counter() - start
        finally:
            quiet.setLevel(level)
            if bars:
                ds_logging.enable_progress_bar()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    model = trainer.model
    model.eval()
    if out_dir is not None:
        model.save_pretrained(Path(out_dir) / ADAPTER_DIR)
    result = TrainResult(trainer.state.global_step, trainer.state.global_step * per_step,
                         float(losses[0]) if losses else float("nan"), float(losses[-1]) if losses else float("nan"),
                         seconds, dropped)
    return model, tokenizer, result


def load_trained(spec: ModelSpec, settings: TrainSettings, folder: str | Path | None) -> tuple[Any, Any]:
    """(model, tokenizer) of a trained cell from its saved adapter (``folder=None``: the base model)."""
    model, tokenizer = load_base(spec, settings)
    if folder is None:
        model.eval()
        return model, tokenizer
    path = Path(folder) / ADAPTER_DIR
    if settings.method == "lora":
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, path)
    else:
        from transformers import AutoModelForCausalLM

        with _quiet_loading():
            model = AutoModelForCausalLM.from_pretrained(path, dtype=model.dtype, local_files_only=True)
        model.to(next(iter(model.parameters())).device)
    model.eval()
    return model, tokenizer
