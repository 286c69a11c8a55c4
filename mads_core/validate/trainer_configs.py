"""Ready-to-run LLaMA-Factory and axolotl configs next to an exported subset (training at full scale).

For an export ``<dir>/<stem>.<ext>`` this writes:

- ``<stem>.messages.jsonl`` — the same samples, rank order, as OpenAI-style
  ``{"messages": [{"role", "content"}, ...]}`` (whatever the input format was), the one layout
  both tools read without a converter. Roles beyond system/user/assistant are mapped as in
  ``mads_core.validate.chat`` (tool_call → assistant, tools → system, tool → user).
- ``dataset_info.json`` — LLaMA-Factory's dataset registry for ``<dir>`` (an existing file is
  merged: the entry named ``<stem>`` is added or replaced), ``formatting: sharegpt`` with the
  OpenAI role/content tags (LLaMA-Factory ``data/README.md``).
- ``<stem>.llamafactory.yaml`` — ``llamafactory-cli train <stem>.llamafactory.yaml``: SFT, LoRA on
  all linear layers, the same hyperparameters as ``TrainSettings`` (epochs rule).
- ``<stem>.axolotl.yaml`` — ``axolotl train <stem>.axolotl.yaml``: the file as a local JSON
  dataset, ``type: chat_template``, loss on assistant turns (``roles_to_train``), LoRA.

``base_model`` defaults to a placeholder the user edits (the selection model is often not the
one to train); ``template`` for LLaMA-Factory must match the model family (``llama3``, ``qwen``…).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from mads_core.validate.chat import ROLE_FOR_TEMPLATE
from mads_core.validate.train import TrainSettings

BASE_MODEL_PLACEHOLDER = "path/or/hub-id/of/the/model/to/train"


def _messages(turns: Any) -> list[dict[str, str]]:
    return [{"role": ROLE_FOR_TEMPLATE.get(t[0], t[0]), "content": t[1]} for t in turns]


def _write(path: Path, text: str) -> None:
    from mads_core.data.export import write_atomic

    write_atomic(path, text.encode("utf-8"))


def write_trainer_configs(dataset: Any, rows: Any, data_path: str | Path, *, base_model: str | None = None,
                          settings: TrainSettings | None = None, epochs: float = 3.0,
                          template: str = "default") -> dict[str, Path]:
    """Write the messages file, LLaMA-Factory registry + YAML and axolotl YAML beside ``data_path``.

    ``rows``: dataset rows of the subset in rank order. Returns {kind: path}. Deterministic
    (sorted keys, no timestamps).
    """
    settings = settings or TrainSettings()
    data_path = Path(data_path)
    folder, stem = data_path.parent, data_path.name.split(".")[0]
    messages_path = folder / f"{stem}.messages.jsonl"
    lines = [json.dumps({"id": dataset.ids[int(i)], "messages": _messages(dataset.turns[int(i)])},
                        ensure_ascii=False, sort_keys=True) for i in rows]
    _write(messages_path, "".join(line + "\n" for line in lines))

    info_path = folder / "dataset_info.json"
    info: dict[str, Any] = {}
    if info_path.is_file():
        try:
            loaded = json.loads(info_path.read_text(encoding="utf-8"))
            info = loaded if isinstance(loaded, dict) else {}
        except ValueError as exc:
            raise ValueError(f"{info_path}: not valid JSON ({exc}); move it away to write a new one") from None
    info[stem] = {
        "file_name": messages_path.name,
        "formatting": "sharegpt",
        "columns": {"messages": "messages"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                 "assistant_tag": "assistant", "system_tag": "system"},
    }
    _write(info_path, json.dumps(info, indent=2, sort_keys=True, ensure_ascii=False) + "\n")

    model = base_model or BASE_MODEL_PLACEHOLDER
    lf = {
        "model_name_or_path": model,
        "stage": "sft",
        "do_train": True,
        "finetuning_type": "lora",
        "lora_target": "all",
        "lora_rank": settings.lora_r,
        "lora_alpha": settings.lora_alpha,
        "lora_dropout": settings.lora_dropout,
        "dataset": stem,
        "dataset_dir": ".",
        "template": template,
        "cutoff_len": max(settings.max_length, 1024),
        "output_dir": f"saves/{stem}-lora",
        "per_device_train_batch_size": settings.batch_size,
        "gradient_accumulation_steps": settings.grad_accum,
        "learning_rate": settings.learning_rate,
        "num_train_epochs": epochs,
        "lr_scheduler_type": "cosine",
        "warmup_ratio": 0.03,
        "bf16": True,
        "logging_steps": 10,
        "save_strategy": "epoch",
        "report_to": "none",
        "seed": 0,
    }
    lf_path = folder / f"{stem}.llamafactory.yaml"
    _write(lf_path, "# llamafactory-cli train " + lf_path.name + "  (run in this folder; set model and template)\n"
           + yaml.safe_dump(lf, sort_keys=False))

    ax = {
        "base_model": model,
        "datasets": [{"path": f"./{messages_path.name}", "ds_type": "json", "type": "chat_template",
                      "field_messages": "messages", "roles_to_train": ["assistant"]}],
        "chat_template": "tokenizer_default",
        "adapter": "lora",
        "lora_r": settings.lora_r,
        "lora_alpha": settings.lora_alpha,
        "lora_dropout": settings.lora_dropout,
        "lora_target_linear": True,
        "sequence_len": max(settings.max_length, 1024),
        "micro_batch_size": settings.batch_size,
        "gradient_accumulation_steps": settings.grad_accum,
        "num_epochs": epochs,
        "learning_rate": settings.learning_rate,
        "optimizer": "adamw_torch",
        "lr_scheduler": "cosine",
        "warmup_ratio": 0.03,
        "bf16": "auto",
        "train_on_inputs": False,
        "output_dir": f"./outputs/{stem}-lora",
        "seed": 0,
    }
    ax_path = folder / f"{stem}.axolotl.yaml"
    _write(ax_path, "# axolotl train " + ax_path.name + "  (run in this folder; set base_model)\n"
           + yaml.safe_dump(ax, sort_keys=False))
    return {"messages": messages_path, "dataset_info": info_path, "llamafactory": lf_path, "axolotl": ax_path}
