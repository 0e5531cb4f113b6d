"""Images of the services, built from `containers/<service>` with the Docker SDK.

An image is tagged with the content hash of its (possibly patched) source folder and the
Debian suite of its base (`rig-rtpengine:<hash>-trixie`), so an unchanged service is never
rebuilt, two commits that differ only elsewhere share it, and the suites run side by side.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rig.errors import InfraError
from rig.topology import ImageRecipe
from rig.topology.source import IGNORED, tree_hash
from rig.topology.suite import DEFAULT_SUITE, SUITES, base_image, make_base_hint

DEFAULT_BASE = base_image(DEFAULT_SUITE)
SOURCE_LABEL = "rig.source-hash"
ERROR_TAIL_LINES = 20
REQUIREMENTS = "requirements.txt"
WHEELS_DIR = "wheels"  # the Dockerfile installs from here with `pip install --no-index`
PIP_TIMEOUT_S = 300

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Image:
    service: str
    tag: str
    built: bool  # False when an image of the same sources already existed


def image_tag(service: str, context: Path, suite: str = DEFAULT_SUITE) -> str:
    """The content hash of the context and the suite of the base: rig-kmod:<hash>-bookworm."""
    return f"rig-{service}:{tree_hash(context)}-{suite}"


def own_image_tag(service: str, context: Path, recipe: ImageRecipe) -> str:
    """The tag of a user's build: the context's content, the Dockerfile's name and the build
    arguments, so each commit of their repository gets its own image, built once."""
    digest = hashlib.sha256(tree_hash(context).encode())
    digest.update(json.dumps([recipe.dockerfile, sorted(recipe.args.items())]).encode())
    return f"rig-{service}-own:{digest.hexdigest()[:16]}"


def build_lines(chunks: Iterable[Mapping[str, Any]], progress: Progress) -> list[str]:
    """Follow the engine's build stream; raise InfraError on its error message."""
    lines: list[str] = []
    error = ""
    for chunk in chunks:  # read to the end even after an error, so the connection closes
        if "error" in chunk:
            error = error or str(chunk["error"]).strip()
        for line in str(chunk.get("stream", "")).rstrip().splitlines():
            lines.append(line)
            progress(line)
    if error:
        tail = "\n".join(lines[-ERROR_TAIL_LINES:])
        raise InfraError(f"image build failed: {error}", logs=tail)
    return lines


def download_wheels(requirements: Path, dest: Path) -> None:
    """Fetch the wheels a service needs with the host's pip: builds have no package index."""
    argv = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check",
            "--only-binary=:all:", "-d", str(dest), "-r", str(requirements)]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=PIP_TIMEOUT_S,
                                check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InfraError(f"pip download for {requirements.parent.name}: {exc}") from None
    if result.returncode != 0:
        tail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-5:]
        raise InfraError(f"pip download for {requirements.parent.name} failed",
                         logs="\n".join(tail))


@contextmanager
def build_context(context: Path) -> Iterator[Path]:
    """A throwaway copy of the context, with `wheels/` filled when it has requirements.txt;
    the user's tree is never written to."""
    with tempfile.TemporaryDirectory(prefix="rig-build-") as tmp:
        copy = Path(tmp) / context.name
        shutil.copytree(context, copy, ignore=IGNORED)
        if (copy / REQUIREMENTS).is_file():
            download_wheels(copy / REQUIREMENTS, copy / WHEELS_DIR)
        yield copy


def require_base(client: Any, base: str, suite: str = DEFAULT_SUITE) -> None:
    """InfraError, saying how to make it, when the rig's base of `suite` is missing."""
    from docker.errors import ImageNotFound

    try:
        client.images.get(base)
    except ImageNotFound:
        if base not in {base_image(s) for s in SUITES}:
            return  # another base (debian:trixie-slim): the engine pulls it while building
        raise InfraError(f"base image {base} not found: make it with "
                         f"{make_base_hint(suite)}") from None


def build_image(
    client: Any,
    service: str,
    context: Path,
    base: str | None = None,
    progress: Progress = print,
    suite: str = DEFAULT_SUITE,
) -> Image:
    """Build `containers/<service>` (or a patched copy) on the base of `suite` (default
    rig-base:<suite>; a registry's debian:<suite>-slim works too) unless its tag exists."""
    from docker.errors import ImageNotFound

    if not (context / "Dockerfile").is_file():
        raise InfraError(f"{service}: no Dockerfile in {context}")
    base = base or base_image(suite)
    tag = image_tag(service, context, suite)
    try:
        client.images.get(tag)
        return Image(service, tag, built=False)
    except ImageNotFound:
        pass
    require_base(client, base, suite)
    progress(f"building {tag} from {context.name}/ on {base}")
    with build_context(context) as prepared:
        _build(client, service, prepared, tag, base, progress)
    return Image(service, tag, built=True)


def build_own_image(client: Any, service: str, context: Path, recipe: ImageRecipe,
                    progress: Progress = print) -> Image:
    """The user's build (`build:`): their Dockerfile and arguments on the run's copy of
    their context, unless an image of the same content exists. No rig base is involved."""
    from docker.errors import ImageNotFound

    if not (context / recipe.dockerfile).is_file():
        raise InfraError(f"{service}: no {recipe.dockerfile} in the build context "
                         f"{context.name or '.'}/")
    tag = own_image_tag(service, context, recipe)
    try:
        client.images.get(tag)
        return Image(service, tag, built=False)
    except ImageNotFound:
        pass
    progress(f"building {tag} from {recipe.dockerfile} (the user's build)")
    _build(client, service, context, tag, "", progress, recipe)
    return Image(service, tag, built=True)


def given_image(client: Any, service: str, name: str) -> Image:
    """`image:`: the user's image, which must exist in the engine (the rig never pulls)."""
    from docker.errors import ImageNotFound

    try:
        client.images.get(name)
    except ImageNotFound:
        raise InfraError(f"{service}: image {name} not found in the Docker engine "
                         f"(services.{service}.image is not built by the rig)") from None
    return Image(service, name, built=False)


def _build(client: Any, service: str, context: Path, tag: str, base: str,
           progress: Progress, recipe: ImageRecipe | None = None) -> None:
    from docker.errors import APIError

    own = recipe is not None and recipe.own
    try:
        chunks = client.api.build(
            path=str(context),
            dockerfile=recipe.dockerfile if own and recipe else None,
            tag=tag,
            buildargs=dict(recipe.args) if own and recipe else {"BASE": base},
            network_mode="host",  # apt-get inside the build reaches the Debian mirror
            labels={SOURCE_LABEL: tag.rsplit(":", 1)[1]},
            rm=True,
            forcerm=True,
            decode=True,
        )
        build_lines(chunks, progress)
    except InfraError as exc:
        raise InfraError(f"{service}: {exc}", logs=exc.logs) from None
    except APIError as exc:
        raise InfraError(f"image build of {service} failed: {exc.explanation or exc}") from exc


def build_images(
    client: Any, contexts: Mapping[str, Path], base: str | None = None,
    progress: Progress = print, recipes: Mapping[str, ImageRecipe] | None = None,
) -> dict[str, Image]:
    """One image per service, in order, as its recipe says (default: the rig's build of its
    folder on the base of the recipe's suite); the first failure stops the rest."""
    recipes = recipes or {}
    return {name: image_for(client, name, path, recipes.get(name, ImageRecipe()), base,
                            progress)
            for name, path in contexts.items()}


def image_for(client: Any, service: str, context: Path, recipe: ImageRecipe,
              base: str | None, progress: Progress) -> Image:
    if recipe.image is not None:
        return given_image(client, service, recipe.image)
    if recipe.own:
        return build_own_image(client, service, context, recipe, progress)
    return build_image(client, service, context, base, progress, recipe.suite)


def build_service_images(
    root: Path, services: Sequence[str], base: str | None = None,
    on_image: Callable[[str, str, bool, float], None] = lambda *shown: None,
    suite: str = DEFAULT_SUITE,
) -> list[Image]:
    """`rig images`: build the named services of `root` (default: every folder with a
    Dockerfile) on the base of `suite`; `on_image(service, tag, built, seconds)` after each
    one."""
    import time

    from rig.errors import UsageError
    from rig.topology.docker import connect

    if not root.is_dir():
        raise UsageError("no containers/ folder here: run `rig images` from the rig checkout")
    if suite not in SUITES:
        raise UsageError(f"--suite {suite!r}: no such Debian suite (allowed: {', '.join(SUITES)})")
    available = sorted(p.parent.name for p in root.glob("*/Dockerfile"))
    unknown = sorted(set(services) - set(available))
    if unknown:
        raise UsageError(f"no such service: {', '.join(unknown)} "
                         f"(available: {', '.join(available)})")
    client = connect()
    built = []
    try:
        for service in services or available:
            started = time.monotonic()
            image = build_image(client, service, root / service, base, suite=suite)
            on_image(service, image.tag, image.built, time.monotonic() - started)
            built.append(image)
    finally:
        client.close()
    return built
