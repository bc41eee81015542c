"""A 404 for an unknown model that helps: the closest installed names, and the pull command when
the catalog has the model (or one close to it). The wire shape stays each dialect's own; only the
message text grows."""

from __future__ import annotations

import difflib
import logging

from deskml.container import Services
from deskml.core.errors import ModelNotFound

log = logging.getLogger("deskml.api")


def _installed(services: Services) -> dict[str, str]:
    """Every name a request may use for a model here (aliases too), mapped to the name listings show."""
    pool: dict[str, str] = {}
    registry = services.registry
    for entry in registry.list():
        pool[entry.name] = entry.name
        pool.setdefault(entry.name.split(":")[0], entry.name)
    for package in registry.packages:
        if any(e.name == package.name for e in registry.list()):
            for alias in package.aliases:
                pool.setdefault(alias, package.name)
    for spec in services.service_manager.available():
        pool.setdefault(spec.name, spec.name)
        for alias in spec.aliases:
            pool.setdefault(alias.lower(), spec.name)
    for routed in services.inference.routed_models():
        pool.setdefault(routed.name, routed.name)
    return pool


def model_hint(name: str, services: Services, limit: int = 3) -> str:
    """The text to add to "model 'NAME' not found", or '' when there is nothing useful to say."""
    wanted = name.strip().lower()
    pool = _installed(services)
    close: list[str] = []
    for match in difflib.get_close_matches(wanted, list(pool), n=limit * 3, cutoff=0.6):
        if pool[match] not in close:
            close.append(pool[match])
    close = close[:limit]
    hint = f"did you mean {' or '.join(close)}?" if close else ""
    pull = ""
    catalog = services.hub.catalog
    if catalog is not None:
        entry = catalog.get(name)
        if entry is not None:
            pull = f"{entry.name} is in the catalog: deskml pull {entry.name}"
        else:
            here = set(pool.values())
            pullable = [n for n in catalog.suggest(name, limit) if n not in here]
            if pullable:
                pull = f"{'or pull' if close else 'pull'} one from the catalog: deskml pull {pullable[0]}" + (
                    f" (or {', '.join(pullable[1:])})" if pullable[1:] else "")
    if not hint and not pull:
        return "`deskml list` shows the installed models, `deskml search WORD` the catalog"
    return " ".join(p for p in (hint, pull) if p)


def with_hints(exc: ModelNotFound, services: Services) -> ModelNotFound:
    """`exc` with the hint added to its message (once; a failure to build one leaves it as it was)."""
    if exc.message != f"model '{exc.name}' not found":
        return exc  # already explained by whoever raised it
    try:
        hint = model_hint(exc.name, services)
    except Exception:  # a broken store or catalog must not turn a 404 into a 500
        log.debug("no hint for %r", exc.name, exc_info=True)
        return exc
    if hint:
        exc.message = f"{exc.message}; {hint}"
        exc.args = (exc.message,)
    return exc
