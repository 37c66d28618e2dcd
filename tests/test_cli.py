"""Every command answers --help and -h with its usage, naming its main flags, and exit code 0."""

import importlib
import os
import subprocess
import sys

import pytest
from absl import flags
from ml_collections import config_flags

from conftest import REPO
from jaxpcam.cli import help_requested, parse_flags

# argparse commands: in this process (each has main(argv)). What the usage must name.
ARGPARSE_COMMANDS = {
    "jaxpcam.evaluate": ("--workdir", "--split", "--checkpoint", "--tta"),
    "jaxpcam.predict": ("--workdir", "--input", "--output", "--checkpoint"),
    "jaxpcam.export": ("--workdir", "--checkpoint", "--output", "--overwrite"),
    "jaxpcam.report": ("runs", "--metrics", "--champion", "--output"),
    "jaxpcam.audit": ("data_dir", "--out", "--convert", "--compression"),
}
# absl commands: in a subprocess each (both define --config in absl's one global flag registry,
# and their usage is their __main__ module's docstring).
ABSL_COMMANDS = {
    "jaxpcam.main": ("--config:", "--config.KEY=VALUE", "--workdir:", "--[no]start_fresh:", "--num_processes:"),
    "jaxpcam.sweep": ("--config:", "--config.KEY=VALUE", "--[no]list:", "--index:", "--[no]all:", "--sweep_dir:"),
}


@pytest.mark.parametrize("flag", ["--help", "-h"])
@pytest.mark.parametrize("module", sorted(ARGPARSE_COMMANDS))
def test_argparse_commands_print_their_usage_and_exit_0(module, flag, capsys):
    with pytest.raises(SystemExit) as ended:
        importlib.import_module(module).main([flag])
    assert ended.value.code == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"usage: python -m {module} ") and err == ""
    for name in ARGPARSE_COMMANDS[module]:
        assert name in out, f"{module} {flag}: {name} missing from\n{out}"


@pytest.mark.parametrize("flag", ["--help", "-h"])
@pytest.mark.parametrize("module", sorted(ABSL_COMMANDS))
def test_absl_commands_print_their_usage_and_exit_0(module, flag):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, "-m", module, flag], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert (result.returncode, result.stderr) == (0, ""), result.stderr[-2000:]
    assert result.stdout.startswith(f"``python -m {module} --config ")  # the module's docstring
    listed = result.stdout.partition("\nflags:\n")[2]
    for name in ABSL_COMMANDS[module]:
        assert name in result.stdout, f"{module} {flag}: {name} missing from\n{result.stdout}"
    assert "--verbosity" not in listed.split("--helpfull")[0]  # the command's own flags, not absl's


@pytest.mark.parametrize(
    ("argv", "wanted"),
    [
        (["-h"], "short"),
        (["--config=c.py", "--help"], "short"),
        (["-?"], "short"),
        (["--helpshort"], "short"),
        (["--helpfull"], "full"),
        (["--config=c.py"], None),
        (["--", "-h"], None),  # after '--' it is an argument, not a flag
        (["--help=false"], None),
    ],
)
def test_help_requested(argv, wanted):
    assert help_requested(argv) == wanted


def _flag_values() -> flags.FlagValues:
    flag_values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "the config file", flag_values=flag_values)
    flags.DEFINE_string("workdir", None, "the run directory", flag_values=flag_values)
    flags.DEFINE_bool("start_fresh", False, "archive and start over", flag_values=flag_values)
    flags.DEFINE_integer("every", 5, "how often", flag_values=flag_values)
    return flag_values


@pytest.mark.parametrize("flag", ["-h", "--help", "-?", "--helpshort"])
def test_help_wins_over_a_config_file_that_does_not_load(flag, capsys):
    with pytest.raises(SystemExit) as ended:
        parse_flags(["command", "--config=/nonexistent/config.py", flag], _flag_values())
    assert ended.value.code == 0
    out, err = capsys.readouterr()
    assert err == ""
    listed = out.partition("\nflags:\n")[2].splitlines()
    assert listed[:4] == [  # in the order they were defined; defaults only where they say something
        "  --config: the config file",
        "  --workdir: the run directory",
        "  --[no]start_fresh: archive and start over",
        "  --every: how often (default: '5')",
    ]


def test_helpfull_lists_absls_own_flags_too(capsys):
    with pytest.raises(SystemExit) as ended:
        parse_flags(["command", "--helpfull"], _flag_values())
    assert ended.value.code == 0
    out = capsys.readouterr().out
    assert "--workdir" in out and "--flagfile" in out


@pytest.mark.parametrize("argv", [["command"], ["command", "--config.seed=3"], ["command", "--workdir=runs/x"]])
def test_a_missing_config_is_one_line_saying_how_to_give_it(argv, capsys):
    """absl said "Unknown command line flag 'config.seed'" or "--config must have a value other
    than None"."""
    with pytest.raises(SystemExit) as ended:
        parse_flags(argv, _flag_values())
    assert ended.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --config is required: e.g. ") and err.count("\n") == 1
    assert "--config configs/mlp.py, then --config.KEY=VALUE" in err
