"""Validate: does the subset train a better model? Fine-tune per method × budget × seed, score held-out tasks."""

from __future__ import annotations

import time

import streamlit as st

from mads_core.cli import parse_budget
from mads_core.validate import report
from mads_core.validate.command import fmt_seconds
from mads_core.validate.grid import GridSpec, run_grid
from mads_core.validate.stats import lower_is_better
from mads_core.validate.tasks import HELDOUT_TASKS
from mads_core.validate.train import TrainSettings
from mads_core.views import plots
from pages import _common as ui

ui.page_setup(__file__)

st.title("Validate: does the subset train a better model?")
st.info(
    "**What this shows and what it does not.** Each cell fine-tunes the target model (LoRA) on one "
    "method's subset with the same training settings, then scores it on evals-registry tasks that are "
    "not in the pool and on a held-out split of the pool that no method could select. At demo scale "
    "(the bundled 135M model, a 718-sample pool, a few optimizer steps per cell on CPU) differences are "
    "small and seed noise is large: a result here says whether *this* small run separates the methods, "
    "not whether MADS helps a 3B model on 50K samples. Every number is shown with its spread over seeds; "
    "a gap is called real only when a paired test over seeds says it exceeds seed noise.",
    icon=":material/science:",
)

s = ui.settings()
ds = ui.dataset(s)
fp = ui.require_fingerprints(ds, s)

g0, t0 = GridSpec(), TrainSettings()
with st.expander("Grid and training settings (the same for every cell)", expanded=False):
    c1, c2, c3 = st.columns(3)
    methods = c1.multiselect("Methods", ui.session.METHODS, default=list(g0.methods), key="w_val_methods",
                             format_func=plots.method_label)
    budgets_text = c2.text_input("Budgets (fractions or counts)", ",".join(str(b) for b in g0.budgets),
                                 key="w_val_budgets")
    n_seeds = c3.number_input("Seeds", 1, 10, len(g0.seeds), key="w_val_seeds",
                              help="Training seeds (LoRA init, training order); random also draws its subset.")
    c1, c2, c3, c4 = st.columns(4)
    steps = c1.number_input("Optimizer steps per cell", 1, 10_000, t0.steps, key="w_val_steps",
                            help="Same steps for every cell: cells differ in which samples they saw, not in compute.")
    batch = c2.number_input("Batch size", 1, 512, t0.batch_size, key="w_val_batch")
    lr = c3.number_input("Learning rate", 1e-6, 1e-2, t0.learning_rate, format="%.0e", key="w_val_lr")
    per_task = c4.number_input("Items per held-out task", 1, 50, g0.eval_per_task, key="w_val_per_task")
    st.caption("Held-out tasks (evals registry, not in the pool): "
               + ", ".join(f"{t} ({c})" for t, c in HELDOUT_TASKS.items()))

with ui.guard("Settings"):
    budgets = tuple(parse_budget(b) for b in budgets_text.split(",") if b.strip())
    if not budgets or not methods:
        raise ValueError("choose at least one method and one budget")
    grid = GridSpec(methods=tuple(methods), budgets=budgets, seeds=tuple(range(int(n_seeds))),
                    eval_per_task=int(per_task))
    settings = TrainSettings(steps=int(steps), batch_size=int(batch), learning_rate=float(lr))
emb = ui.embeddings(ds) if "kcenter-embed" in methods or "kmeans-embed" in methods else None

n_cells = len(budgets) * len(methods) * len(grid.seeds) + 1 + len(grid.seeds)
command = (f"python -m mads_core evaluate --data {s.data.cli_data()} "
           f"--methods {','.join(methods)} --budgets {','.join(str(b) for b in budgets)} "
           f"--seeds {int(n_seeds)} --steps {int(steps)} "
           f"--train-batch-size {int(batch)} --lr {float(lr):g} --eval-per-task {int(per_task)} --out grid.csv")
st.caption(f"{n_cells} cells. The same grid from the command line: `{command}`")

run = st.button("Run the grid (missing cells only)", type="primary", icon=":material/play_arrow:",
                help="Trains and scores every cell not in the cache; on 2 CPU cores the default grid takes "
                     "about 12 minutes (measured). Finished cells are kept if you stop.")
with ui.guard("Validation"):
    if run:
        with st.status("Fine-tuning and scoring…", expanded=True) as status:
            bar = st.progress(0.0)
            line = st.empty()
            start = time.perf_counter()

            def progress(event: dict) -> None:
                bar.progress(event["done"] / event["total"])
                line.write(f"{event['done']}/{event['total']} · {event['label']}: {event['status']} · "
                           f"elapsed {fmt_seconds(event['elapsed_s'])} · ETA {fmt_seconds(event['eta_s'])}")

            result = run_grid(ds, grid, settings, fingerprints=fp, embeddings=emb, progress=progress)
            status.update(label=f"Grid done in {fmt_seconds(time.perf_counter() - start)} "
                                f"({result.trainer_runs} trainings)", state="complete")
    else:
        result = run_grid(ds, grid, settings, fingerprints=fp, embeddings=emb, cached_only=True)

cells = result.cells
if cells.empty:
    st.warning(f"No cell of this grid is cached yet ({result.meta['n_planned']} planned). Press **Run the grid**.")
    st.stop()
if result.meta["missing"]:
    st.warning(f"{result.meta['missing']} of {result.meta['n_planned']} cells are not computed yet; "
               "showing the cached ones.")

metrics = report.metrics_of(cells)
metric = st.radio("Score", metrics, horizontal=True, format_func=lambda m: report.METRIC_LABELS.get(m, m),
                  key="w_val_metric")
ui.chart(report.figure(cells, metric), name="validate")
if metric.endswith("_acc"):
    chance = cells[metric.replace("_acc", "_chance")].mean()
    st.caption(f"Chance level (majority answer per task, item-weighted): {chance:.3f}.")
st.subheader("Mean ± seed sd (n seeds)")
st.dataframe(report.wide_table(cells, metric), width="stretch")
st.caption("`base` is the model before fine-tuning: deterministic, no seed spread. "
           f"{'Lower' if lower_is_better(metric) else 'Higher'} is better.")

st.subheader("Paired differences across seeds")
paired = report.paired_tables(cells)
if paired.empty:
    st.caption("Paired differences need at least 2 seeds per method.")
else:
    shown = paired[paired["metric"] == metric]
    for _, row in shown.iterrows():
        st.markdown(f"- **{row['budget']}** — {row['statement']}")
    st.dataframe(shown.drop(columns=["statement"]), width="stretch", hide_index=True)

c1, c2 = st.columns(2)
c1.download_button("Cells (CSV)", cells.to_csv(index=False).encode(), "validate_cells.csv", "text/csv")
c2.download_button("Paired differences (CSV)", paired.to_csv(index=False).encode(), "validate_paired.csv",
                   "text/csv")
