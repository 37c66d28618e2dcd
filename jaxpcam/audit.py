"""``python -m jaxpcam.audit DATA_DIR [--out DIR]``: audit a PCAM folder (see jaxpcam.data.audit).
``python -m jaxpcam.audit --convert SRC DST [--compression gzip|lzf|none]``: rewrite float32 course
copies as uint8, chunked per image, optionally compressed, and compare size and read speed.
"""

import sys
from pathlib import Path

from absl import flags

from jaxpcam import cli
from jaxpcam.data.audit_report import audit_text, run_audit
from jaxpcam.data.convert import convert

FLAGS = cli.command_flags()
_OUT = flags.DEFINE_string(
    "out", None, "Where to write the report (default DATA_DIR/jaxpcam-audit).", flag_values=FLAGS
)
_CONVERT = flags.DEFINE_string(
    "convert", None, "SRC: rewrite SRC as uint8 into DST, written --convert SRC DST.", flag_values=FLAGS
)
_COMPRESSION = flags.DEFINE_enum(
    "compression", "none", ["gzip", "lzf", "none"], "How --convert compresses.", flag_values=FLAGS
)
_LEVEL = flags.DEFINE_integer(
    "level", 4, "The gzip level of --convert --compression=gzip, 1-9.", lower_bound=1, upper_bound=9, flag_values=FLAGS
)
_FOLDER = cli.Arguments(missing="give DATA_DIR to audit, or --convert SRC DST", at_most=1)


def _audit(folder: Path) -> None:
    """DATA_DIR audited, or with --convert, SRC rewritten into DST (``folder``)."""
    if _CONVERT.value is not None:
        compression = None if _COMPRESSION.value == "none" else _COMPRESSION.value
        for line in convert(Path(_CONVERT.value), folder, compression, _LEVEL.value if compression == "gzip" else None):
            print(line)
        return
    out_dir = Path(_OUT.value) if _OUT.value else folder / "jaxpcam-audit"
    print(audit_text(run_audit(folder, out_dir), out_dir))


def main(argv: list[str] | None = None) -> int:
    (folder,) = cli.parse(argv, FLAGS, __doc__, arguments=_FOLDER)
    return cli.run_command(lambda: _audit(Path(folder)))


if __name__ == "__main__":
    sys.exit(main())
