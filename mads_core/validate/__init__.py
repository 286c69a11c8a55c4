"""Downstream validation: fine-tune on each core set (TRL/peft) and score it on held-out tasks."""
