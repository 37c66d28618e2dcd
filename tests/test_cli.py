"""Every command follows one convention (jaxpcam/cli.py): --help and -h print its usage, naming
its flags, with exit code 0; a mistake on the command line is one error: line and exit code 2."""

import importlib
import os
import subprocess
import sys

import pytest
from absl import flags
from ml_collections import config_flags

from conftest import REPO
from jaxpcam import cli
from jaxpcam.cli import help_requested

# What each command's usage must name (its documented flags and arguments).
COMMANDS = {
    "jaxpcam.main": ("--config:", "--config.KEY=VALUE", "--workdir:", "--[no]start_fresh:", "--num_processes:"),
    "jaxpcam.sweep": ("--config:", "--config.KEY=VALUE", "--[no]list:", "--index:", "--[no]all:", "--sweep_dir:"),
    "jaxpcam.evaluate": ("--workdir:", "--split:", "--checkpoint:", "--[no]tta:", "--slice:", "--batch_size:"),
    "jaxpcam.predict": ("--workdir:", "--input:", "--output:", "--checkpoint:", "--[no]overwrite:", "--[no]tta:"),
    "jaxpcam.export": ("--workdir:", "--checkpoint:", "--output:", "--[no]overwrite:"),
    "jaxpcam.report": ("RUN_DIRS_OR_GLOBS...", "--metrics:", "--at:", "--champion:", "--output:", "--[no]overwrite:"),
    "jaxpcam.audit": ("DATA_DIR", "--out:", "--convert:", "--compression:", "--level:"),
}


@pytest.mark.parametrize("flag", ["--help", "-h"])
@pytest.mark.parametrize("module", sorted(COMMANDS))
def test_every_command_prints_its_usage_and_exits_0(module, flag, capsys):
    with pytest.raises(SystemExit) as ended:
        importlib.import_module(module).main([flag])
    assert ended.value.code == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"usage: python -m {module} ") and err == ""
    for name in COMMANDS[module]:
        assert name in out, f"{module} {flag}: {name} missing from\n{out}"
    listed = out.partition("\nflags:\n")[2]
    assert "--verbosity" not in listed.split("--helpfull")[0]  # the command's own flags, not absl's


MISTAKES = [  # a command, its arguments, and the start of its one error line
    ("jaxpcam.evaluate", ["--workdir", "w", "--bogus=1"], "error: Unknown command line flag 'bogus'"),
    ("jaxpcam.evaluate", ["--workdir", "w", "--split", "tset"], "error: --split=tset: value should be one of"),
    ("jaxpcam.evaluate", ["--workdir", "w", "--dark_quantile", "1"], "error: --dark_quantile must be in (0, 1)"),
    ("jaxpcam.evaluate", ["--split", "test"], "error: --workdir is required"),
    ("jaxpcam.predict", ["--workdir", "w", "--output", "p.csv"], "error: --input is required"),
    ("jaxpcam.export", ["--workdir", "w", "extra"], "error: unexpected arguments: extra"),
    ("jaxpcam.export", ["--workdir"], "error: Missing value for flag --workdir"),
    ("jaxpcam.report", ["--metrics", "val_loss"], "error: give the run directories"),
    ("jaxpcam.report", ["runs", "--at", "last"], "error: --at=last: value should be one of <best|final>"),
    ("jaxpcam.audit", [], "error: give DATA_DIR to audit, or --convert SRC DST"),
    ("jaxpcam.audit", ["a", "b"], "error: unexpected arguments: b"),
    ("jaxpcam.audit", ["--convert", "a", "b", "--level", "x"], "error: --level=x: invalid literal for int()"),
    ("jaxpcam.main", ["--config", "configs/mlp.py", "extra"], "error: unexpected arguments: extra"),
    ("jaxpcam.main", ["--config", "configs/mlp.py", "--workdir="], "error: --workdir is empty"),
    ("jaxpcam.sweep", ["--config", "configs/sweep_mlp.py"], "error: choose one of --list, --index I, --all"),
    (  # ml_collections would train hidden_units (16, 64): a tuple given twice is refused
        "jaxpcam.main",
        ["--config", "configs/mlp.py", "--config.model.hidden_units=(16,)", "--config.model.hidden_units", "(64,)"],
        "error: --config.model.hidden_units is given more than once: give a tuple once",
    ),
    ("jaxpcam.sweep", ["--list"], "error: --config is required: e.g. python -m jaxpcam.sweep --config configs/sw"),
]


@pytest.mark.parametrize(("module", "argv", "message"), MISTAKES)
def test_a_command_line_mistake_is_one_error_line_and_exit_code_2(module, argv, message, capsys):
    with pytest.raises(SystemExit) as ended:
        importlib.import_module(module).main(argv)
    assert ended.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(message) and err.count("\n") == 1, err


def test_a_command_parses_each_command_line_afresh(tmp_path, capsys):
    """In one process (as the tests run commands), a flag of an earlier call is not kept."""
    from jaxpcam import audit

    with pytest.raises(SystemExit):
        audit.main(["x", "--out", "o", "--bogus"])
    assert audit.main([str(tmp_path / "missing")]) == 2
    assert audit.FLAGS.out is None and capsys.readouterr().err.endswith(
        f"error: {tmp_path / 'missing'} is not a folder\n"
    )


def test_help_and_a_bad_flag_answer_without_importing_jax():
    """Why the commands defer their library imports: jax takes seconds to import."""
    script = (
        "import importlib, sys\n"
        "for name in sys.argv[1:]:\n"
        "    for argv in (['--help'], ['--bogus']):\n"
        "        try:\n"
        "            importlib.import_module(name).main(argv)\n"
        "        except SystemExit:\n"
        "            pass\n"
        "print(sorted(m for m in ('jax', 'sklearn', 'orbax') if m in sys.modules))\n"
    )
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, "-c", script, *COMMANDS], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stdout.splitlines()[-1] == "[]", result.stderr[-2000:]


def test_python_m_runs_the_command(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, "-m", "jaxpcam.main", "-h"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert (result.returncode, result.stderr) == (0, "") and result.stdout.startswith("usage: python -m jaxpcam.main ")


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


DOC = "``python -m jaxpcam.main --config FILE``\n\nTrains.\n"


def _flag_values() -> flags.FlagValues:
    flag_values = cli.command_flags()
    config_flags.DEFINE_config_file("config", None, "the config file", flag_values=flag_values)
    flags.DEFINE_string("workdir", None, "the run directory", flag_values=flag_values)
    flags.DEFINE_bool("start_fresh", False, "archive and start over", flag_values=flag_values)
    flags.DEFINE_integer("every", 5, "how often", flag_values=flag_values)
    return flag_values


@pytest.mark.parametrize("flag", ["-h", "--help", "-?", "--helpshort"])
def test_help_wins_over_a_config_file_that_does_not_load(flag, capsys):
    with pytest.raises(SystemExit) as ended:
        cli.parse(["--config=/nonexistent/config.py", flag], _flag_values(), DOC)
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
        cli.parse(["--helpfull"], _flag_values(), DOC)
    assert ended.value.code == 0
    out = capsys.readouterr().out
    assert "--workdir" in out and "--flagfile" in out


@pytest.mark.parametrize("argv", [[], ["--config.seed=3"], ["--workdir=runs/x"]])
def test_a_missing_config_is_one_line_saying_how_to_give_it(argv, capsys):
    """absl said "Unknown command line flag 'config.seed'" or "--config must have a value other
    than None"."""
    with pytest.raises(SystemExit) as ended:
        cli.parse(argv, _flag_values(), DOC, required=("config",))
    assert ended.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --config is required: e.g. ") and err.count("\n") == 1
    assert "--config configs/mlp.py, then --config.KEY=VALUE" in err


def test_a_scalar_key_given_twice_takes_the_last(capsys):
    """Launch scripts set a default (--config.data.num_workers=6) that the user's own override follows."""
    from jaxpcam import main

    argv = ["--config", "configs/mlp.py", "--config.seed=1", "--config.seed=2"]
    cli.parse(argv, main.FLAGS, main.__doc__, required=("config",))
    assert main.FLAGS["config"].value.seed == 2
