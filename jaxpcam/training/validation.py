"""The epoch-end pass over the validation split: mean loss and the task's metrics."""

import dataclasses

import numpy as np

from jaxpcam.core.task import Task
from jaxpcam.data import pipeline as pipeline_lib
from jaxpcam.training.parallel import DataParallel, to_host
from jaxpcam.training.placement import ResidentSplit
from jaxpcam.training.state import TrainState
from jaxpcam.training.steps import jit_eval_step


@dataclasses.dataclass(frozen=True)
class EvalResult:
    loss: float
    metrics: dict[str, float]


def evaluate(
    state: TrainState,
    split,
    batch_size: int,
    num_workers: int,
    parallel: DataParallel,
    task: Task,
    resident: ResidentSplit | None = None,
) -> EvalResult:
    """Mean loss (float64 sum over real examples) and metrics over every record of ``split``;
    each process reads its rows of each batch (or, with ``resident``, only their indices), and
    every process gets the same numbers. Outputs come to the host once, after the last batch."""
    outputs = []
    batch_size = parallel.eval_batch_size(pipeline_lib.eval_batch_size(batch_size, len(split)))
    rows = parallel.local_rows(batch_size)
    local_batches = pipeline_lib.eval_dataset(
        split, batch_size=batch_size, num_workers=num_workers, rows=rows, images=resident is None
    )
    for local in local_batches:
        batch = parallel.global_batch(local)
        outputs.append((jit_eval_step(state, batch, resident, task=task), batch["mask"]))
    outputs = to_host(outputs)
    losses = np.concatenate([out.loss[mask] for out, mask in outputs])
    probs = np.concatenate([out.probs[mask] for out, mask in outputs])
    return EvalResult(float(losses.astype(np.float64).mean()), task.metrics(split.labels, probs))
