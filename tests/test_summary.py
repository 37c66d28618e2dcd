"""The model summary's FLOPs from XLA's cost analysis, whatever shape the backend returns."""

import pytest

from jaxpcam.training.summary import layer_parameters, step_flops, summary_line


class _Compiled:
    def __init__(self, cost):
        self.cost = cost

    def cost_analysis(self):
        if isinstance(self.cost, Exception):
            raise self.cost
        return self.cost


@pytest.mark.parametrize(
    ("cost", "expected"),
    [
        ({"flops": 6.0e6, "bytes accessed": 1.0}, 6.0e6),
        ([{"flops": 4.0e6}, {"flops": 1.0}], 4.0e6),  # a list, one dict per computation: the program's first
        (None, None),
        ([], None),
        ({"bytes accessed": 1.0}, None),
        ({"flops": -1.0}, None),  # some backends say -1 for "unknown"
        (NotImplementedError("no cost model"), None),
    ],
)
def test_step_flops_takes_any_shape_of_cost_analysis(cost, expected):
    assert step_flops(_Compiled(cost)) == expected


def test_summary_line_lists_the_layers_total_and_flops_per_image():
    params = {"Dense_0": {"kernel": _Shaped((10, 4)), "bias": _Shaped((4,))}, "Dense_1": {"kernel": _Shaped((4, 1))}}
    assert layer_parameters(params) == {"Dense_0": 44, "Dense_1": 4}
    line = summary_line("mlp", params, _Compiled({"flops": 8.0e6}), batch_size=8, num_devices=2)
    assert line.startswith("model mlp: 48 parameters (Dense_0 44, Dense_1 4); 2 MFLOPs per image")
    assert "not reported" in summary_line("mlp", params, _Compiled(None), batch_size=8)


class _Shaped:
    def __init__(self, shape):
        self.shape = shape
