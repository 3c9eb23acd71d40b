"""envkit's own built images: list them, and remove those nothing needs any more.

A build context is tagged by its content (``envkit.images``): ``envkit/<blueprint>-<folder>:<hash>``.
Every change to a context makes a new tag and leaves the old one behind, so a day of edits leaves
dozens. An image is envkit's when its tag is in the ``envkit/`` namespace and its label
``io.envkit.context-hash`` (set when envkit builds it) holds the tag's hash; images of other tools,
pulled images and images committed from containers are never touched.

``prune`` keeps, per repository (one blueprint's one build context), the newest tag, and every image a
container uses, in any state and of any tool; it removes the other tags. ``all_tags`` removes the
newest ones too (the next ``up`` builds them again). Removing a tag removes the image with its last tag.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from envkit import labels as L
from envkit.backends.base import Backend
from envkit.blueprint.model import Blueprint
from envkit.errors import Conflict, EngineError
from envkit.images import image_tag

__all__ = ["BuiltImage", "PruneResult", "built_images", "prune", "repositories_of"]

NAMESPACE = "envkit/"


@dataclass(frozen=True)
class BuiltImage:
    tag: str  # repository:tag
    image_id: str
    created: datetime
    size: int  # bytes, shared layers counted in full
    in_use: bool  # a container (any state, any tool) uses the image
    newest: bool  # the newest tag of its repository
    image_tags: tuple[str, ...]  # every tag of the image (it goes with the last)

    @property
    def repository(self) -> str:
        return self.tag.rsplit(":", 1)[0]


@dataclass(frozen=True)
class PruneResult:
    removed: list[BuiltImage] = field(default_factory=list)  # with dry_run: what would be
    kept: list[BuiltImage] = field(default_factory=list)
    failed: list[tuple[BuiltImage, str]] = field(default_factory=list)

    @property
    def freed(self) -> int:
        """Bytes freed, at most: the images whose every tag went."""
        gone = {i.tag for i in self.removed}
        return sum(i.size for i in {i.image_id: i for i in self.removed}.values() if set(i.image_tags) <= gone)


def repositories_of(bp: Blueprint) -> set[str]:
    """The image repositories a blueprint's build contexts are tagged in."""
    return {image_tag(bp.name, s.build).rsplit(":", 1)[0] for s in bp.services.values() if s.build is not None}


def _envkits(tag: str, labels: dict[str, str]) -> bool:
    repository, _, version = tag.rpartition(":")
    digest = labels.get(L.CONTEXT_HASH, "")
    return repository.startswith(NAMESPACE) and "/" not in repository[len(NAMESPACE):] and bool(version) \
        and digest.startswith(version)


def built_images(backend: Backend, repositories: Iterable[str] | None = None) -> list[BuiltImage]:
    """envkit's built images on the engine (of ``repositories`` only, when given), by repository then
    newest first."""
    wanted = set(repositories) if repositories is not None else None
    rows = []
    for image in backend.list_images({L.CONTEXT_HASH: None}):
        mine = [t for t in image.tags if _envkits(t, dict(image.labels))]
        for tag in mine:
            if wanted is None or tag.rsplit(":", 1)[0] in wanted:
                rows.append((tag, image))
    rows.sort(key=lambda r: (r[0].rsplit(":", 1)[0], -r[1].created.timestamp(), r[0]))
    out: list[BuiltImage] = []
    seen: set[str] = set()
    for tag, image in rows:
        repository = tag.rsplit(":", 1)[0]
        out.append(BuiltImage(tag, image.id, image.created, image.size, image.containers > 0,
                              repository not in seen, image.tags))
        seen.add(repository)
    return out


def prune(backend: Backend, *, all_tags: bool = False, dry_run: bool = False,
          repositories: Iterable[str] | None = None) -> PruneResult:
    """Remove envkit's built images that nothing uses: older tags (``all_tags``: every tag). With
    ``dry_run``, only say which."""
    result = PruneResult()
    for image in built_images(backend, repositories):
        if image.in_use or (image.newest and not all_tags):
            result.kept.append(image)
            continue
        if dry_run:
            result.removed.append(image)
            continue
        try:
            backend.remove_image(image.tag)
        except Conflict:  # a container was made from it since the listing
            result.kept.append(image)
        except EngineError as exc:
            result.failed.append((image, str(exc).splitlines()[0]))
        else:
            result.removed.append(image)
    return result
