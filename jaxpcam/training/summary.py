"""The model summary logged as training starts: parameters per top-level module and in total,
and the train step's floating-point operations per image from XLA's cost analysis of the
compiled step (forward, backward and optimizer update; what XLA counts, e.g. a multiply-add as 2)."""

from jaxpcam.training.state import count_params


def layer_parameters(params) -> dict[str, int]:
    """Parameters per top-level module (Flax's names, e.g. Dense_0), in the model's order."""
    return {name: count_params(sub) for name, sub in params.items()}


def step_flops(compiled) -> float | None:
    """The FLOPs XLA counts for one call of a compiled step, or None when the backend does not
    say: ``cost_analysis()`` may return a dict, a list of dicts (one per computation, older JAX
    and some backends; the first is the program) or None, or raise."""
    try:
        cost = compiled.cost_analysis()
    except Exception:  # not implemented on this backend
        return None
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else None
    flops = cost.get("flops") if isinstance(cost, dict) else None
    return float(flops) if isinstance(flops, int | float) and flops > 0 else None


def _si(value: float) -> str:
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.3g} {prefix}"
    return f"{value:.3g} "


def summary_line(model_name: str, params, compiled, batch_size: int, num_devices: int = 1) -> str:
    """One line: the layers with their parameter counts, the total, and FLOPs per image. The
    compiled step is the program one device runs (data parallel: its shard of the batch)."""
    images_per_device = batch_size // num_devices
    layers = layer_parameters(params)
    shown = ", ".join(f"{name} {count:,}" for name, count in layers.items())
    flops = step_flops(compiled)
    per_image = (
        f"{_si(flops / images_per_device)}FLOPs per image per train step (forward, backward, update; XLA cost analysis)"
        if flops
        else "FLOPs per image: not reported by this backend's cost analysis"
    )
    return f"model {model_name}: {sum(layers.values()):,} parameters ({shown}); {per_image}"
