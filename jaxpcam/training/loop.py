"""train_and_evaluate: one flat loop over steps, with small predicates for "sync metrics now",
"checkpoint now", "the epoch ends: validate" and "stop requested" (big_vision's train.py shape).

The loop trains a group of members (train_members): runs of one config that differ only in
``seed`` or ``training.learning_rate``, one compiled step for all (training/members.py), each
member keeping its own books and run directory (training/bookkeeping.py). A single run is the
group of one, trained by the single run's own step. Everything the loop reads is built once by
training/setup.py; the jitted steps are in steps.py, the epoch-end validation in validation.py.
The loop keeps every promise of the README: bit-exact resume, SIGTERM honoured within a bounded
time (preemption.py), metrics.jsonl lines only once a committed checkpoint covers them, data-wait
accounting, a log line every training.log_every_steps steps.
"""

import contextlib
import functools
import signal
import time
from pathlib import Path

import jax
import ml_collections

from jaxpcam.config.checks import validate as validate_config
from jaxpcam.core.errors import ConfigChanged, RunFailed, RunInUse, Stopped, UserError
from jaxpcam.core.reporting import log, log_prefix
from jaxpcam.core.runtime import apply_run_settings
from jaxpcam.run import best
from jaxpcam.run import lock as workdir_lock
from jaxpcam.run.record import read_metrics
from jaxpcam.training import bookkeeping, checkpoint, early_stopping, memory
from jaxpcam.training.bookkeeping import Member, Tally
from jaxpcam.training.members import Group, check_members, member_label, share_resident_data
from jaxpcam.training.parallel import any_process, is_primary
from jaxpcam.training.preemption import RunAhead, StopRequest
from jaxpcam.training.setup import close, prepare


def default_workdir(config: ml_collections.ConfigDict) -> Path:
    return Path("runs") / config.experiment_name / f"seed{config.seed}"


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: Path, start_fresh: bool = False) -> dict:
    """Trains ``config`` in ``workdir``, resuming from its latest checkpoint; returns a summary."""
    return train_members([config], [workdir], start_fresh)[0]


def train_members(configs: list, workdirs: list[Path], start_fresh: bool = False) -> list:
    """Trains each config in its workdir, all of them by one compiled step (as many as fit the
    device together; the rest in later groups), each resuming from its own latest checkpoint.
    Returns each member's summary; with several members, a member whose training failed (a
    non-finite loss) gets its RunFailed instead, and one whose run directory refused it (another
    process trains there; it holds another config's run) its RunInUse or ConfigChanged, and the
    others go on."""
    for config in configs:
        validate_config(config)
    check_members(configs)
    if len(set(workdirs)) < len(workdirs):
        raise UserError("members trained together need a run directory each; two were given the same")
    run_settings = apply_run_settings(configs[0].training)  # before the first JAX computation
    for workdir in workdirs:
        try:
            workdir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"cannot create the run directory {workdir}: {err.strerror or err}") from None
    pairs, outcomes = list(zip(configs, workdirs, strict=True)), []
    while len(outcomes) < len(pairs):
        outcomes += _train_group(pairs[len(outcomes) :], start_fresh, run_settings, alone=len(pairs) == 1)
    return outcomes


# What refuses one member's run directory alone (another process trains there; it holds a run of
# another config): beside others that member is left out, as a sweep without --vectorize skips
# that point; alone it is the command's answer.
MEMBER_REFUSALS = (RunInUse, ConfigChanged)


def _train_group(pairs: list, start_fresh: bool, run_settings: dict, alone: bool) -> list:
    """Trains the first of ``pairs`` (config, workdir) that fit the device together; returns the
    outcomes of the pairs it took, in order (a member refused: its MEMBER_REFUSALS error)."""
    with contextlib.ExitStack() as stack:
        runs, taken, fit = [], [], len(pairs)
        for config, workdir in pairs:
            try:
                with log_prefix("" if alone else member_label(config)):
                    run = _enter(stack, config, workdir, start_fresh, run_settings)
            except MEMBER_REFUSALS as refusal:
                if alone:
                    raise
                taken.append(refusal)  # its outcome: the caller (the sweep) reports it
                continue
            runs.append(run)
            taken.append(run)
            share_resident_data(runs[0], run)
            if len(runs) == 1 and (left := len(pairs) - len(taken) + 1) > 1:  # this one and those after it
                fit = memory.members_that_fit(run, left)
            if len(runs) == fit:
                break
        labels = [""] if alone else [member_label(r.config) for r in runs]
        now = time.perf_counter()
        members = [Member.start(i, run, now, label) for i, (run, label) in enumerate(zip(runs, labels, strict=True))]
        if members:
            with StopRequest(min(m.step for m in members)) as stop:
                _train(members, stop)
    outcomes = {id(m.run): _outcome(m) for m in members}
    return [outcomes.get(id(t), t) for t in taken]


def _enter(stack: contextlib.ExitStack, config, workdir: Path, start_fresh: bool, run_settings: dict):
    """One member's run, prepared in its held run directory, closed (and the lock released) with
    ``stack``; if it is refused, nothing of it is held."""
    with contextlib.ExitStack() as member:
        member.enter_context(_workdir_held(workdir))
        run = _prepare(config, workdir, start_fresh, run_settings)
        member.callback(close, run)
        stack.enter_context(member.pop_all())
    return run


def _outcome(m: Member):
    if m.run.restored is not None and m.run.restored.step == m.step:
        m.log(early_stopping.nothing_to_do(m.step, m.run.steps_per_epoch, m.progress, m.run.config))
    return m.failure or _summary(m.run.workdir, m.run.config.checkpoint, m.label)


def _prepare(config, workdir: Path, start_fresh: bool, run_settings: dict):
    """setup.prepare, in a run directory this process holds: a killed run's partial checkpoint
    saves are removed first, and any this start-up leaves (a full disk) on its way out."""
    checkpoint.remove_partial_saves(workdir)  # a killed run's: this run holds the lock, none writes here
    try:
        return prepare(config, workdir, start_fresh, run_settings)
    except BaseException:
        checkpoint.remove_partial_saves(workdir)
        raise


@contextlib.contextmanager
def _workdir_held(workdir: Path):
    """Process 0 holds the workdir's lock for the job; a refusal stops every process."""
    with contextlib.ExitStack() as stack:
        refusal = None
        if is_primary():
            try:
                stack.enter_context(workdir_lock.held(workdir))
            except (UserError, OSError) as err:
                refusal = err if isinstance(err, UserError) else UserError(f"cannot lock {workdir}: {err}")
        if any_process(refusal is not None):
            raise refusal or UserError(f"process 0 of this job could not lock {workdir}; see its log")
        yield


# Small predicates: when to do what.


def _time_to_sync(pending: int, config) -> bool:
    return pending >= config.training.log_every_steps


def _time_to_checkpoint(step: int, config) -> bool:
    every = config.checkpoint.every_steps
    return bool(every) and step % every == 0


def _stop_requested(stop: StopRequest, at_sync_point: bool) -> bool:
    """With several processes all must stop at the same step, so the flag is agreed on (one tiny
    all-gather) only at agreement points: about every preemption.AGREE_SECONDS, and epoch ends."""
    if jax.process_count() == 1:
        return stop.requested
    return at_sync_point and stop.agree()


def _active(members: list[Member]) -> list[Member]:
    """The members that take the next step: the unfinished ones furthest behind (after a resume
    a member may be ahead of the others; it waits, held, until they catch up)."""
    todo = [m for m in members if not m.finished]
    lowest = min((m.step for m in todo), default=None)
    return [m for m in todo if m.step == lowest]


def _chunk(active: list[Member]) -> int:
    """How many steps the next call runs: up to training.steps_per_dispatch, cut at the next
    point where the loop acts (sync, checkpoint, epoch end, the run's end)."""
    m, c = active[0], active[0].run.config
    spe, every = m.run.steps_per_epoch, c.checkpoint.every_steps
    k = min(c.training.steps_per_dispatch, spe - m.step % spe, m.run.total_steps - m.step)
    k = min([k, *(c.training.log_every_steps - len(a.pending) for a in active)])
    return max(1, min(k, every - m.step % every) if every else k)


def _train(members: list[Member], stop: StopRequest) -> None:
    """The step loop. Metrics come to the host once per sync."""
    if not _active(members):
        return  # a rerun of finished runs, or of ones that stopped early: nothing to compile or do
    group = Group.of([m.run for m in members])
    step_fn, dispatched = group.compile(), []
    ahead = RunAhead()  # a stop waits for the call in flight, not for a queue of them
    try:
        while active := _active(members):
            k, indices = _chunk(active), [m.index for m in active]
            before = time.perf_counter()
            batch = group.next_batch(indices, k)
            waited = time.perf_counter() - before
            group.state, metrics = step_fn(group.state, batch, indices, k)
            dispatched.append((metrics, k))
            ahead.dispatched(metrics)
            for m in active:
                m.tally.wait += waited
                m.step += k
                m.pending += [(len(dispatched) - 1, j) for j in range(k)]
            if _after_step(group, members, active, dispatched, stop):
                raise _stopped(stop, active[0].step)
    finally:
        for m in members:
            bookkeeping.wait_for_saves(m.run)
            bookkeeping.publish_committed(m)


def _after_step(group: Group, members: list, active: list[Member], dispatched: list, stop: StopRequest) -> bool:
    """Syncs, checkpoints and ends the epoch of the members that just stepped (all at the same
    step); returns True when a stop was requested (each of them has then saved)."""
    c, step = active[0].run.config, active[0].step
    epoch_ends = step % active[0].run.steps_per_epoch == 0
    sync = any(_time_to_sync(len(m.pending), c) for m in active)
    agree = stop.agreement_due(step)
    stop_now = not epoch_ends and _stop_requested(stop, agree)  # read once: a signal may land any time
    save_mid_epoch = not epoch_ends and (stop_now or _time_to_checkpoint(step, c))
    if sync or epoch_ends or save_mid_epoch:
        _sync(group, members, dispatched)
    going = [m for m in active if not m.finished]  # not failed in the sync just now
    for m in going:
        if save_mid_epoch:
            bookkeeping.save(m.run, group.member_state(m.index), m.schedule, m.tally.progress(m.progress))
    if epoch_ends:
        _end_epochs(group, going)
    if epoch_ends:
        stop_now = _stop_requested(stop, at_sync_point=True)  # arrived in the last step or validation
    if stop_now:
        for m in active:
            bookkeeping.wait_for_saves(m.run)
    return stop_now


def _sync(group: Group, members: list[Member], dispatched: list) -> None:
    """Brings every member's pending step metrics to the host (one transfer) and takes them in."""
    fetched = group.host_metrics(dispatched)
    now = time.perf_counter()
    for m in members:
        if not m.pending:
            continue
        host = [fetched[d][j][m.index if group.vectorized else 0] for d, j in m.pending]
        m.pending = []
        try:
            bookkeeping.sync(m, host, now)
        except RunFailed as failure:
            if not group.vectorized:
                raise
            m.finished, m.failure = True, failure  # the others go on; this one is held from now on
            m.log(f"failed: {failure}")
        bookkeeping.publish_committed(m)
    dispatched.clear()  # every member's pending metrics are on the host now


def _end_epochs(group: Group, members: list[Member]) -> None:
    """Ends the epoch of each member, one after another (Orbax's saves are not thread-safe: two
    started from two threads collided on a temporary folder).

    The members share one clock: their next epoch starts when the last of them has validated and
    saved, and each one's epoch-end time is the group's. Otherwise the first member's img/s would
    carry the others' validations and saves, the last member's none, and its ETA would leave them out."""
    steps_ended = time.perf_counter()
    for m in members:
        _end_epoch(group, m, functools.partial(group.set_learning_rate, m.index), steps_ended)
    now = time.perf_counter()
    for m in members:
        m.pace.validation_seconds = now - steps_ended
        m.pace.window_start, m.pace.window_step = now, m.step
        m.tally = Tally([], 0, m.step, start=now)


def _end_epoch(group: Group, m: Member, set_learning_rate, steps_ended: float) -> None:
    record = bookkeeping.end_epoch(m, group.member_state(m.index), set_learning_rate, steps_ended)
    m.unpublished.append(record)
    if record.get("stopped_early") or m.step >= m.run.total_steps:
        m.finished = True


def _stopped(stop: StopRequest, step: int) -> Stopped:
    code = 128 + getattr(signal, stop.signal_name)
    message = f"{stop.signal_name}: saved checkpoint at step {step}; run the same command again to resume"
    return Stopped(message, code)


def _summary(workdir: Path, c: ml_collections.ConfigDict, label: str = "") -> dict:
    records = read_metrics(workdir)
    chosen = best.best_record(records, c.best_metric, c.best_mode)
    if chosen:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in chosen.items() if k.startswith("val_") and v is not None)
        log(f"{label}best epoch {chosen['epoch']} by {c.best_metric}: {shown}")
    log(f"{label}run directory: {workdir.resolve()}  (view: tensorboard --logdir {workdir})")
    return {"workdir": str(workdir), "epochs": len(records), "best": chosen, "last": records[-1] if records else None}
