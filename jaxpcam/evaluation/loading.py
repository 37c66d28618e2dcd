"""A trained model from its run directory alone: config, parameters, normalization statistics,
the training data's intensity profile and the decision threshold chosen by evaluation.

Nothing comes from the code's current defaults, so someone else's run directory evaluates the
same as on the machine that trained it (any device kind: the restore target is built from the
checkpoint's own metadata, on this host's first device).
"""

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from jaxpcam.config.migrate import with_defaults
from jaxpcam.core.errors import UserError
from jaxpcam.core.reporting import log
from jaxpcam.core.task import Task, task_for
from jaxpcam.data import transforms
from jaxpcam.data.normalization import Normalization, normalize
from jaxpcam.data.pcam import IMAGE_SHAPE as PCAM_IMAGE_SHAPE
from jaxpcam.models import create_model
from jaxpcam.run import best, eval_dir, integrity
from jaxpcam.run import checkpoint_items as checkpoint


@dataclasses.dataclass(frozen=True)
class LoadedRun:
    workdir: Path
    step: int
    config: ml_collections.ConfigDict
    params: dict
    normalization: Normalization
    data_profile: dict | None  # None for checkpoints written before profiles were recorded
    apply_fn: object
    ema_decay: float = 0.0  # > 0: ``params`` are the EMA weights the run validated with

    @property
    def weights_note(self) -> str:
        return f", EMA weights (decay {self.ema_decay:g})" if self.ema_decay > 0 else ""

    @property
    def task(self) -> Task:
        return task_for(self.config)

    @property
    def image_shape(self) -> tuple[int, ...]:
        """What the model takes, as recorded at training time (PCAM's shape for older runs)."""
        return tuple((self.data_profile or {}).get("image_shape", PCAM_IMAGE_SHAPE))

    def threshold_path(self, tta: bool = False) -> Path:
        """Where evaluation stores the threshold it chose on valid for this checkpoint with this
        TTA setting (kept per checkpoint: evaluating another never changes this one's)."""
        return eval_dir.checkpoint_threshold_path(self.workdir, tta, self.step)

    def stored_threshold(self, tta: bool = False) -> dict | None:
        """The threshold evaluation chose on the validation split for this checkpoint with this
        TTA setting, if any (never the other setting's)."""
        found = eval_dir.find_threshold(self.workdir, tta, self.step)
        return found[1] if found else None

    def check_tta(self) -> None:
        """--tta needs images every test-time view can take; views the model never trained on warn."""
        for transform in transforms.test_time_transforms():
            problem = transform.view_problem(self.image_shape)
            if problem:
                raise UserError(f"--tta {problem}")
            if transform.from_config(self.config.data) is None:
                log(f"WARNING: --tta on a model trained without data.{transform.config_key}: "
                    f"{transform.untrained_warning}")  # fmt: skip

    def predict_fn(self, tta: bool = False):
        """jitted (uint8 images) -> P(positive) (B,) or class probabilities (B, C) at T = 1; with
        ``tta`` the mean of the probabilities over the test-time views of each image (tta_mean).
        Evaluate and predict go through scores.view_scores_fn, which gives the same at T = 1."""

        if tta:
            self.check_tta()

        def probs(params, norm, images):
            return inference_probabilities(self.apply_fn, self.task, params, norm, images)

        def tta_probs(params, norm, images):
            return tta_mean(lambda x: probs(params, norm, x), images)

        jitted = jax.jit(tta_probs if tta else probs)
        return lambda images: jitted(self.params, self.normalization, images)


def inference_probabilities(
    apply_fn, task: Task, params, norm: Normalization, images: jax.Array, temperature: float = 1.0
) -> jax.Array:
    """uint8 images -> the task's probabilities from logit / ``temperature`` (the export's function)."""
    logits = apply_fn({"params": params}, normalize(images, norm), train=False)
    return task.probabilities(logits if temperature == 1.0 else logits / temperature)


def tta_mean(probs, images: jax.Array) -> jax.Array:
    """Test-time augmentation: the mean of ``probs`` over the test-time views of ``images``
    (transforms.test_time_views; one pass per view, so memory stays that of one batch). The 8
    flips/rotations of a rotated or flipped image are the same 8 images, so its result is the
    same up to rounding."""
    views = transforms.test_time_views(images, jnp)
    total, count = probs(next(views)), 1
    for view in views:
        total, count = total + probs(view), count + 1
    return total / count


def tta_words(tta: bool) -> str:
    views = ", ".join(t.view_words for t in transforms.test_time_transforms())
    return f"with --tta ({views})" if tta else "without --tta"


def _manager(workdir: Path) -> ocp.CheckpointManager:
    folder = workdir.resolve() / "checkpoints"
    if not workdir.is_dir():
        raise UserError(f"--workdir {workdir} is not a folder")
    if not folder.is_dir():
        raise UserError(f"{workdir} is not a run directory: it has no checkpoints/ folder")
    # lightweight: Orbax would read every checkpoint's metrics on opening, and one damaged old
    # checkpoint would then stop the evaluation of a good one.
    options = ocp.CheckpointManagerOptions(read_only=True, create=False, lightweight_initialize=True)
    return ocp.CheckpointManager(folder, options=options, handler_registry=checkpoint.handler_registry())


def _read_json_item(manager: ocp.CheckpointManager, step: int, name: str) -> dict | None:
    try:
        return checkpoint.read_json_item(manager, step, name)
    except integrity.DamagedCheckpoint as err:
        raise UserError(_damaged(manager, step, err)) from None


def _damaged(manager: ocp.CheckpointManager, step: int, reason) -> str:
    return f"checkpoint {step} in {manager.directory} is damaged ({reason}); choose another with --checkpoint STEP"


def select_step(manager: ocp.CheckpointManager, which: str) -> int:
    """'latest', 'best' (by the run's checkpoint.best_metric/best_mode, among epoch-end
    checkpoints) or a step number."""
    steps = manager.all_steps()
    if not steps:
        raise UserError(f"no checkpoint in {manager.directory}")
    if which == "latest":
        return max(steps)
    if which == "best":
        latest_config = _read_json_item(manager, max(steps), "config")
        if latest_config is None:
            raise UserError(_damaged(manager, max(steps), "it has no config item"))
        c = with_defaults(latest_config)["checkpoint"]
        records = [{**(_read_json_item(manager, s, "metrics") or {}), "epoch": s, "step": s} for s in steps]
        chosen = best.best_record(records, c["best_metric"], c["best_mode"])  # epoch here: the step
        if chosen is None:
            raise UserError(f"no epoch-end checkpoint in {manager.directory} has {c['best_metric']}; use latest")
        return chosen["step"]
    try:
        step = int(which)
    except ValueError:
        raise UserError(f"--checkpoint: expected best, latest or a step number, got {which!r}") from None
    if step not in steps:
        raise UserError(f"no checkpoint at step {step} in {manager.directory}; there are {sorted(steps)}")
    return step


def _restore_verified(manager: ocp.CheckpointManager, step: int) -> tuple[dict, dict]:
    """The state (as nested dicts, on this host's first device) and the JSON items of ``step``,
    checked against the checksums the checkpoint carries (if it is new enough to carry them)."""
    damage = integrity.small_item_damage(Path(manager.directory) / str(step))
    if damage:
        raise integrity.DamagedCheckpoint(damage)
    here = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    metadata = manager.metadata(step).item_metadata["state"]  # the optimizer state comes too: Orbax 0.12
    like = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=here), metadata)
    state, items, _ = checkpoint.restore_verified(manager, step, like)
    return state, items


class CheckpointGone(Exception):
    """The checkpoint was removed while it was read (a running training rotates old ones away)."""


def _read_step(workdir: Path, which: str) -> tuple[int, dict, dict, str]:
    """(step, state, JSON items, the checkpoints folder) of the checkpoint ``which`` names."""
    manager = _manager(workdir)
    try:
        step = select_step(manager, which)
        try:
            state, items = _restore_verified(manager, step)
        except Exception as err:  # a checksum mismatch, unreadable files, a truncated array: damaged
            if not (Path(manager.directory) / str(step)).is_dir():
                raise CheckpointGone(step) from None  # not damaged: removed while read
            reason = err if isinstance(err, integrity.DamagedCheckpoint) else integrity.describe_failure(err)
            raise UserError(_damaged(manager, step, reason)) from None
        return step, state, items, str(manager.directory)
    finally:
        manager.close()


def _read_checkpoint(workdir: Path, which: str, tries: int = 3) -> tuple[int, dict, dict, str]:
    """_read_step; 'latest' follows a training that saves a newer one and rotates the one being
    read away; another removed checkpoint is one line saying so, never 'damaged'."""
    for attempt in range(tries):
        try:
            return _read_step(workdir, which)
        except CheckpointGone as gone:
            if which != "latest" or attempt == tries - 1:
                raise UserError(
                    f"checkpoint {gone.args[0]} in {workdir / 'checkpoints'} was removed while it was being read "
                    "(a training running in this run directory keeps only its newest checkpoints): run the "
                    "command again, or name a checkpoint that is kept (--checkpoint best)"
                ) from None
            log(f"checkpoint {gone.args[0]} was removed while being read (the run is training): reading the latest")
    raise AssertionError("unreachable")


def load_run(workdir: Path, which: str = "best") -> LoadedRun:
    step, state, items, folder = _read_checkpoint(Path(workdir), which)
    config = ml_collections.ConfigDict(with_defaults(items["config"]))  # a run of an older version too
    model = create_model(config.model, config.training.dtype)
    norm = Normalization(jnp.asarray(state["normalization"]["mean"]), jnp.asarray(state["normalization"]["std"]))
    ema_decay = config.training.ema_decay
    params = state.get("ema_params") if ema_decay > 0 else state["params"]  # what validation used
    if params is None:
        raise UserError(f"checkpoint {step} in {folder} is damaged (no EMA weights, though its config has "
                        "training.ema_decay > 0); choose another with --checkpoint STEP")  # fmt: skip
    profile = items.get("data_profile") or None
    return LoadedRun(Path(workdir), step, config, params, norm, profile, model.apply, ema_decay)


def check_finite(run: LoadedRun, probs: np.ndarray) -> np.ndarray:
    """A model that diverged gives NaN: never a decision (a NaN is not 'negative')."""
    bad = int(np.sum(~np.isfinite(probs).reshape(len(probs), -1).all(axis=1)))
    if bad:
        raise UserError(
            f"checkpoint {run.step} in {run.workdir} gives non-finite probabilities for {bad} of {len(probs)} "
            "images (the model diverged); evaluate or predict with another --checkpoint"
        )
    return probs


def batched_probs(predict, images_batches, batch_size: int):
    """Runs ``predict`` over uint8 image batches, padding the last one so one shape compiles."""
    for images in images_batches:
        n = len(images)
        if n < batch_size:
            images = np.concatenate([images, np.zeros((batch_size - n, *images.shape[1:]), images.dtype)])
        yield np.asarray(jax.device_get(predict(images)))[:n]
