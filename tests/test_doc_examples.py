"""Every Python code block in README.md, CONTRIBUTING.md and docs/ runs as written.

The blocks of one file run in order in one fresh interpreter, so a later block may use what an
earlier one defined, as a reader going down the page would.  Each file runs in a scratch working
directory.  A block meant as an excerpt, not to be run, is fenced as ``text``, not ``python``.
"""

import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)


def python_blocks(path: pathlib.Path) -> list:
    return FENCE.findall(path.read_text(encoding="utf-8"))


WITH_BLOCKS = [path for path in DOCUMENTS if python_blocks(path)]


def test_the_docs_have_python_examples():
    """The README and the docs do show code (so the test below checks something)."""
    names = {path.name for path in WITH_BLOCKS}
    assert {"README.md", "writing-a-backend.md", "middleware.md"} <= names


@pytest.mark.parametrize("path", WITH_BLOCKS, ids=lambda path: path.name)
def test_python_blocks_run_as_written(path, tmp_path):
    """Each block runs without error, in page order; a failure names the block."""
    blocks = python_blocks(path)
    script = "\n".join(
        f"print('--- block {number} of {len(blocks)}', flush=True)\n"
        + f"exec(compile({block!r}, {f'{path.name} block {number}'!r}, 'exec'))"
        for number, block in enumerate(blocks, 1)
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{path.name}:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    assert f"--- block {len(blocks)} of {len(blocks)}" in result.stdout
