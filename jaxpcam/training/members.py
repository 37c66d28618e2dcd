"""Several members (runs of one config that differ only in ``seed`` or ``training.learning_rate``)
trained by one compiled step: the device side of the member loop (training/loop.py).

One member is the single run, with exactly the single run's compiled step (``jit_train_step``),
state and batches: nothing is stacked, so its numbers are those of ``python -m jaxpcam.main``.
Several members take their batches (one from each member's own Grain stream) stacked along a
leading member axis, and one jitted program steps them all, in one of two layouts
(``training.member_layout``):

- one after another (the default): the states stay a tuple of the members' own states, and the
  program runs the single run's ``train_step`` for each member in turn: the same kernels, so
  each member's numbers are its own run's; what is shared is the dispatch, the host loop and
  the compile;
- vmap: the states are stacked too, and a ``jax.vmap`` of the same ``train_step`` updates them
  all at once: batched matrix products and grouped convolutions, which may fill a GPU better
  but round differently from the single run's kernels in the last bits. Training amplifies
  that: the CNN's first steps differ by 1e-7, its metrics after one epoch by 5e-3
  (benchmarks/README.md), so a vmap member is a close relative of its run alone, not its twin.

Nothing random is shared: each member's state was initialised from its own seed, its step key is
``fold_in(its dropout key, its step)``, and its batches come from its own stream (its data seed,
its augment seed); with ``data.placement=device`` each member gathers its own indices. The
learning rate (injected into the optimizer state) is per member, so plateau and step schedules
are too.

A member that must not move this step (it stopped early, failed, or is ahead of the others
after a resume) is held by an ``active`` mask: its new state is its old state (``jnp.where``),
so its step counter, parameters, optimizer state and EMA stay as they were; its batch slot is
filled with another member's batch, which changes nothing. The hold is compiled in only while
someone is held.
"""

import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxpcam.core.errors import UserError
from jaxpcam.core.reporting import log
from jaxpcam.run.keys import MEMBER_KEYS, flat_config
from jaxpcam.training import summary
from jaxpcam.training.dispatch import chunk_of
from jaxpcam.training.parallel import DATA_AXIS
from jaxpcam.training.schedules import step_rate
from jaxpcam.training.setup import Run, compile_train_step
from jaxpcam.training.steps import train_step


def check_members(configs: list) -> None:
    """Members train by one compiled step, so their configs may differ in MEMBER_KEYS only."""
    base = flat_config(configs[0].to_dict())
    for config in configs[1:]:
        other = flat_config(config.to_dict())
        keys = sorted(k for k in base.keys() | other.keys() if base.get(k) != other.get(k) and k not in MEMBER_KEYS)
        if keys:
            raise UserError(
                f"members trained together may differ only in {' and '.join(MEMBER_KEYS)}; "
                f"seed {configs[0].seed} and seed {config.seed} also differ in {', '.join(keys)}"
            )


def member_label(config) -> str:
    """How a member's log lines start when it trains beside others."""
    return f"[seed {config.seed}, lr {config.training.learning_rate:g}] "


def share_resident_data(first: Run, run: Run) -> None:
    """With data.placement=device, a member whose splits hold the same images as the first
    member's (PCAM: the same files; digits split by seed, so differ) drops its own device copy
    and uses the first's: the group's step then gathers every member's indices from one copy."""
    if run is first:
        return
    for name in ("resident_train", "resident_valid"):
        mine, theirs = getattr(run, name), getattr(first, name)
        if mine is None or theirs is None or mine.images.shape != theirs.images.shape:
            continue
        if mine.transforms == theirs.transforms and bool(jnp.array_equal(mine.images, theirs.images)):
            setattr(run, name, theirs)


def _stack(trees: list):
    """Per-member pytrees -> one pytree with a leading member axis (PRNG keys included). The
    first member's tree gives the structure: the members' optimizers are equal but distinct
    objects (static fields), which jax.tree.map would refuse to line up."""

    def stack(*leaves):
        if jax.dtypes.issubdtype(leaves[0].dtype, jax.dtypes.prng_key):
            impl = jax.random.key_impl(leaves[0])
            return jax.random.wrap_key_data(stack(*(jax.random.key_data(k) for k in leaves)), impl=impl)
        return jnp.stack([jnp.asarray(leaf) for leaf in leaves])

    first, treedef = jax.tree.flatten(trees[0])
    others = [jax.tree.leaves(tree) for tree in trees[1:]]
    return jax.tree.unflatten(treedef, [stack(*leaves) for leaves in zip(first, *others, strict=True)])


def _member_step(state, batch, dropout_key, resident, active=None, **static):
    """train_step for one member, held where ``active`` is False (None: every member steps)."""
    new_state, metrics = train_step(state, batch, dropout_key, resident, **static)
    if active is None:
        return new_state, metrics
    return jax.tree.map(lambda new, old: jnp.where(active, new, old), new_state, state), metrics


def _unrolled(member_step, n: int, resident_axis: int | None):
    """The members' steps one after another in one program, each member's state its own pytree
    (a tuple of states): member i runs exactly the single run's kernels on its slice of the
    stacked batch. The barrier orders them and keeps fusions inside one member's step."""

    def step(states, batch, keys, resident, active=None):
        new, rows = [], []
        for i in range(n):
            take = lambda x, i=i: x[i]  # noqa: E731
            mine = resident if resident_axis is None else jax.tree.map(take, resident)
            state, batch_i, _ = jax.lax.optimization_barrier((states[i], jax.tree.map(take, batch), new[-1:]))
            state, metrics = member_step(state, batch_i, keys[i], mine, None if active is None else active[i])
            new.append(state)
            rows.append(metrics)
        return tuple(new), jax.tree.map(lambda *xs: jnp.stack(xs), *rows)

    return step


@dataclasses.dataclass
class Group:
    """The members trained together, and their state on the device (stacked when several)."""

    runs: list[Run]
    state: object  # one TrainState; with several members, each leaf has a leading member axis
    dropout_keys: jax.Array
    resident_train: object  # one ResidentSplit (shared, or stacked when the members' data differ)
    resident_axis: int | None
    unrolled: bool = False  # the members' states as a tuple, their steps one after another

    @classmethod
    def of(cls, runs: list[Run]) -> "Group":
        unrolled = runs[0].config.training.member_layout == "one_after_another"
        if len(runs) == 1:
            run = runs[0]
            return cls(runs, run.state, run.dropout_key, run.resident_train, None)
        if unrolled:
            state = tuple(r.state for r in runs)
        else:
            state = runs[0].parallel.replicate(_stack([r.state for r in runs]))
        keys = runs[0].parallel.replicate(_stack([r.dropout_key for r in runs]))
        residents = [r.resident_train for r in runs]
        if residents[0] is None or all(r is residents[0] for r in residents):
            resident, axis = residents[0], None
        else:
            resident, axis = _stack(residents), 0
        for run in runs:  # the group's copy is the one trained; the members' own references are dropped
            run.state = None
        return cls(runs, state, keys, resident, axis, unrolled)

    @property
    def vectorized(self) -> bool:
        return len(self.runs) > 1

    def member_state(self, i: int):
        """Member ``i``'s train state, as its own run holds it (no member axis)."""
        if self.unrolled:
            return self.state[i]
        return self.state if not self.vectorized else jax.tree.map(lambda x: x[i], self.state)

    def set_learning_rate(self, i: int, lr: float) -> None:
        """Member ``i``'s epoch rate after its schedule's epoch-end update."""
        parallel = self.runs[0].parallel
        if not self.vectorized:
            self.state = self.state.with_learning_rate(parallel.replicate(np.float32(lr)))
            return
        if self.unrolled:
            mine = self.state[i].with_learning_rate(parallel.replicate(np.float32(lr)))
            self.state = (*self.state[:i], mine, *self.state[i + 1 :])
            return
        rates = np.array(jax.device_get(self.state.learning_rate), np.float32)
        rates[i] = np.float32(lr)
        self.state = self.state.with_learning_rate(parallel.replicate(rates))

    def _local_batch(self, active: list[int]) -> dict:
        """The next batch (this process's rows) of each active member's own stream; a held
        member's slot gets a copy of another's: it is not trained on."""
        if not self.vectorized:
            return next(self.runs[active[0]].batches)
        local = {i: next(self.runs[i].batches) for i in active}
        filler = local[active[0]]
        return jax.tree.map(lambda *xs: np.stack(xs), *(local.get(i, filler) for i in range(len(self.runs))))

    def next_batch(self, active: list[int], k: int = 1) -> dict:
        """The next ``k`` steps' global batches (stacked along a leading step axis when k > 1)."""
        parallel = self.runs[0].parallel
        if k == 1 and not self.vectorized:
            return parallel.global_batch(self._local_batch(active))  # the single run's, as always
        local = [self._local_batch(active) for _ in range(k)]
        local = local[0] if k == 1 else jax.tree.map(lambda *xs: np.stack(xs), *local)
        leading = (None,) * ((k > 1) + self.vectorized)
        return jax.make_array_from_process_local_data(NamedSharding(parallel.mesh, P(*leading, DATA_AXIS)), local)

    def compile(self):
        """The group's step, compiled ahead of time per chunk length; called as
        ``step(state, batch, active, k)`` with ``active`` a list of member indices."""
        compiled = {}

        def step(state, batch, active, k=1):
            held = len(active) < len(self.runs)  # a program with the hold only while someone is held
            if (k, held) not in compiled:
                compiled[k, held] = self._compile(k, held)
            args = (state, batch, self.dropout_keys, self.resident_train)
            if not held:
                return compiled[k, held](*args)
            mask = np.zeros(len(self.runs), bool)
            mask[active] = True
            return compiled[k, held](*args, mask)

        return step

    def _static(self) -> dict:
        run = self.runs[0]
        t = run.config.training
        static = {"skip_nonfinite": t.nan_policy == "skip", "task": run.task}
        return {**static, "step_rate": step_rate(t, run.steps_per_epoch), "accum_steps": t.grad_accum_steps}

    def _one_step(self, held: bool):
        """The step of one call over all members (of the single run: its own train_step)."""
        n, axis = len(self.runs), self.resident_axis
        if not self.vectorized:
            return functools.partial(train_step, **self._static())
        member = functools.partial(_member_step, **self._static())
        if self.unrolled:
            return _unrolled(member, n, axis)
        return jax.vmap(member, in_axes=(0, 0, 0, axis, 0) if held else (0, 0, 0, axis))

    def _compile(self, k: int, held: bool):
        if k == 1 and not self.vectorized:
            return compile_train_step(self.runs[0])  # the single run's step, as always
        start, run, n = time.perf_counter(), self.runs[0], len(self.runs)
        one = self._one_step(held)
        args = [self.state, None, self.dropout_keys, self.resident_train]
        if held:
            args.append(jax.ShapeDtypeStruct((n,), np.bool_))
        stepped = jax.jit(one if k == 1 else chunk_of(one, k), donate_argnums=0)
        single = run.parallel.abstract_batch(
            run.batch_size, run.image_shape, run.resident_train is not None, run.augmentations
        )
        leading = (k,) * (k > 1) + (n,) * self.vectorized
        sharding = NamedSharding(run.parallel.mesh, P(*(None,) * len(leading), DATA_AXIS))
        args[1] = jax.tree.map(lambda s: jax.ShapeDtypeStruct((*leading, *s.shape), s.dtype, sharding=sharding), single)
        compiled = stepped.lower(*args).compile()
        how = "one after another" if self.unrolled else "vmap"
        members = f" of {n} members ({how} in one step)" if self.vectorized else ""
        chunk = f", {k} steps per call" if k > 1 else ""
        hold = ", holding some" if held else ""
        log(f"compiled the train step{members}{chunk}{hold} in {time.perf_counter() - start:.1f} s")
        if k == 1 and not held:
            params = self.state[0].params if self.unrolled else jax.tree.map(lambda x: x[0], self.state.params)
            c = run.config
            log(summary.summary_line(c.model.name, params, compiled, n * c.data.batch_size, run.parallel.num_devices))
        return compiled

    def host_metrics(self, dispatched: list) -> list:
        """The step metrics of several dispatches of (metrics, k), on the host: per dispatch, per
        step of it, each member's StepMetrics."""
        fetched = jax.device_get([metrics for metrics, _ in dispatched])
        rows = []
        for m, (_, k) in zip(fetched, dispatched, strict=True):
            steps = [m] if k == 1 else [jax.tree.map(lambda x, j=j: x[j], m) for j in range(k)]
            if not self.vectorized:
                rows.append([[s] for s in steps])
            else:
                rows.append([[jax.tree.map(lambda x, i=i: x[i], s) for i in range(len(self.runs))] for s in steps])
        return rows
