"""Every install route the README names works on a fresh clone, with only a package index of
third-party projects reachable (none of this project's distributions is on an index), and the
README's "Use it" example runs twice in a row in one directory.

The routes are read from the README itself (the indented ``python -m pip install`` lines of
"The two commands"), so the test follows the page.  Each route runs in a fresh venv, in a fresh
copy of the files a clone has, with ``--no-index`` on a wheelhouse of the third-party
distributions, built once per session.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def readme_section(title: str) -> str:
    """The text of the README section headed ``## title``, up to the next section."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def install_routes() -> list:
    """The install commands of the README's "The two commands", as written."""
    lines = readme_section("The two commands").splitlines()
    return [line.strip() for line in lines if line.startswith("    python -m pip install ")]


def route_id(route: str) -> str:
    return route.split("#")[0].strip().removeprefix("python -m pip install ")


def distributions() -> dict:
    """This project's distributions: project name -> its pyproject data."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11 and later

    folders = [ROOT, *sorted(p.parent for p in (ROOT / "plugins").glob("*/pyproject.toml"))]
    projects = {}
    for folder in folders:
        with open(folder / "pyproject.toml", "rb") as f:
            data = tomllib.load(f)
        projects[data["project"]["name"]] = data
    return projects


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def clone_files() -> list:
    """The files a clone of this tree has: what git tracks plus what it would (not ignored)."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git work tree: cannot tell which files a clone has")
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    return [name for name in listed.decode().split("\0") if name and (ROOT / name).is_file()]


def fresh_clone(dest: Path) -> Path:
    """A copy of the files of a clone at *dest* (no build trees, egg-info or caches)."""
    for name in clone_files():
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest / name)
    return dest


def run(args, *, check=True, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, timeout=900, **kwargs)
    if check:
        assert result.returncode == 0, f"{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory) -> Path:
    """Wheels of every third-party distribution any route can need (each distribution with all
    its extras, and the build requirements), without any of this project's own."""
    base = tmp_path_factory.mktemp("wheelhouse")
    clone = fresh_clone(base / "clone")
    projects = distributions()
    requirements = set()
    for data in projects.values():
        requirements.update(data["build-system"]["requires"])
    for name, data in projects.items():
        folder = clone if name == "borgstore" else clone / "plugins" / name.removeprefix("borgstore-backend-")
        extras = ",".join(data["project"].get("optional-dependencies", {}))
        requirements.add(f"{folder}[{extras}]" if extras else str(folder))
    wheels = base / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(wheels), *sorted(requirements)])
    ours = {normalized(name) for name in projects}
    for wheel in wheels.glob("*.whl"):
        if normalized(wheel.name.split("-")[0]) in ours:
            wheel.unlink()
    return wheels


def route_env(venv: Path, wheels: Path) -> dict:
    """The environment of a user whose shell has *venv* activated and whose only package index
    is *wheels*: this machine's pip settings and Python variables left out."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        VIRTUAL_ENV=str(venv),
        PIP_CONFIG_FILE=os.devnull,
        PIP_NO_INDEX="1",
        PIP_FIND_LINKS=str(wheels),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    return env


def installed_distributions(env, cwd) -> dict:
    """Normalized project name -> version, as pip in the venv lists them."""
    freeze = run(["python", "-m", "pip", "list", "--format=freeze"], env=env, cwd=cwd).stdout
    return {normalized(line.split("==")[0]): line.split("==")[-1] for line in freeze.split() if "==" in line}


def listed_backends(listing: str) -> dict:
    """URL scheme -> "distribution version", as 'borgstore plugins' lists the backends."""
    lines = listing.split("nesting strategies:")[0].splitlines()[1:]
    backends = {}
    for line in lines:
        if line.startswith("  ") and not line.startswith("   "):
            scheme, _, rest = line.partition(":")
            backends[scheme.strip()] = " ".join(rest.split()[:2])
    return backends


# the folder of each import package named on the command line
SHOW_PACKAGES = (
    "import importlib, pathlib, sys\n"
    "for name in sys.argv[1:]:\n"
    "    print(pathlib.Path(importlib.import_module(name).__file__).parent)"
)
# the licence file the core's distribution ships
SHOW_LICENCE = (
    "import importlib.metadata as m; print([f for f in m.files('borgstore') if f.name == 'LICENSE'][0].read_text())"
)


@pytest.mark.packaging
@pytest.mark.parametrize("route", install_routes(), ids=route_id)
def test_install_route_works_on_a_fresh_clone(route, wheelhouse, tmp_path):
    """The README's command installs, and the borgstore command then lists every backend that
    route installed with its version, answers --version and runs check where the kit is."""
    clone = fresh_clone(tmp_path / "clone")
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    env = route_env(venv, wheelhouse)
    run(["bash", "-c", route], cwd=clone, env=env)  # as typed in a shell: globs and quotes included
    elsewhere = tmp_path / "elsewhere"  # not the clone: nothing is imported from the source tree by accident
    elsewhere.mkdir()
    installed = installed_distributions(env, elsewhere)
    version = installed["borgstore"]
    assert "borgstore-backend-posixfs" in installed, "the core needs the posixfs plugin"

    listing = run(["python", "-m", "borgstore", "plugins"], env=env, cwd=elsewhere).stdout
    assert "failed to load" not in listing, listing
    # every backend the route installed is listed, with its version, and nothing else
    expected = {f"{name} {installed[name]}" for name in installed if name.startswith("borgstore-backend-")}
    assert set(listed_backends(listing).values()) == expected | {f"borgstore {version}"}, listing
    assert run(["borgstore", "--version"], env=env, cwd=elsewhere).stdout == f"borgstore {version}\n"

    packages = ["borgstore", *(name.replace("-", "_") for name in installed if name.startswith("borgstore-backend-"))]
    where = [
        Path(line) for line in run(["python", "-c", SHOW_PACKAGES, *packages], env=env, cwd=elsewhere).stdout.split()
    ]
    editable = " -e " in f" {route} "
    for package in where:
        assert package.is_relative_to(clone if editable else venv), package
        assert (package / "py.typed").is_file(), f"{package} has no py.typed"
    licence = run(["python", "-c", SHOW_LICENCE], env=env, cwd=elsewhere).stdout
    assert "BSD 3-Clause License" in licence

    check = run(
        ["python", "-m", "borgstore", "check", "memory:", "--only", "operations"], env=env, cwd=elsewhere, check=False
    )
    if "hypothesis" in installed:
        assert check.returncode == 0 and "1 passed, 0 failed" in check.stdout, check.stdout + check.stderr
    else:  # the README says check needs the testing extra: the message says so too
        assert check.returncode == 2 and "testing" in check.stderr, check.stdout + check.stderr

    if "borgstore-backend-sftp" not in installed:
        install_a_missing_backend_as_the_message_says(clone, env, elsewhere)


def install_a_missing_backend_as_the_message_says(clone, env, elsewhere):
    """Opening an sftp: URL names the distribution (the core came from a wheel); imported from
    the clone, it names the clone's folder, and that command installs the backend."""
    opening = "from borgstore.store import Store; Store('sftp://host/store', config={'': {'levels': [0]}})"
    from_wheel = run(["python", "-c", opening], env=env, cwd=elsewhere, check=False)
    assert from_wheel.stderr.rstrip().endswith("install it with: pip install borgstore-backend-sftp"), from_wheel.stderr
    from_clone = run(["python", "-c", opening], env=env, cwd=clone, check=False)  # '' first on sys.path
    command = from_clone.stderr.rstrip().rpartition("install it with: ")[2]
    assert command == f"pip install {clone / 'plugins' / 'sftp'}", from_clone.stderr
    run(["bash", "-c", command], env=env, cwd=elsewhere)
    assert "sftp" in listed_backends(run(["python", "-m", "borgstore", "plugins"], env=env, cwd=elsewhere).stdout)


def test_the_readme_names_the_routes_this_test_runs():
    """The README has a development route, a route for use and one with the testing extra."""
    routes = install_routes()
    assert any(" -e " in route for route in routes), routes
    assert any(" -e " not in route and "plugins/posixfs" in route for route in routes), routes
    assert any("testing" in route and " -e " not in route for route in routes), routes


def test_no_published_dependency_is_a_direct_reference():
    """No distribution's dependencies point at a path or URL (an index would refuse them)."""
    for name, data in distributions().items():
        project = data["project"]
        requirements = list(project.get("dependencies", []))
        for extra in project.get("optional-dependencies", {}).values():
            requirements += extra
        assert not [r for r in requirements if "@" in r or "file:" in r], (name, requirements)


def use_it_block() -> str:
    return re.search(r"```python\n(.*?)^```", readme_section("Use it"), re.DOTALL | re.MULTILINE).group(1)


def test_use_it_example_runs_twice_in_a_row(tmp_path):
    """The README's "Use it" example, run twice in one directory, works both times alike."""
    outputs = []
    for _ in range(2):
        result = run([sys.executable, "-c", use_it_block()], cwd=tmp_path)
        outputs.append(result.stdout)
    assert outputs[0] == outputs[1]
    assert outputs[0] == f"{'0123abcd' * 8} 5\n1\n"
    assert (tmp_path / "example-store").is_dir()
