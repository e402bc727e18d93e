"""What the worker, the webhook parser and the tracking poller share, built once from the
``AdapterContext``: configuration, mapping, the state tables' engine, a clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import Engine

from adapters.postal import db, mapping
from adapters.postal.config import PostalConfig
from adapters.postal.mapping import PostalMapping
from hub import adaptertables
from hub.adapters import AdapterContext


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class PostalRuntime:
    cfg: PostalConfig
    mapping: PostalMapping
    engine: Engine
    schemas_dir: Path
    hub_id: str
    clock: Callable[[], datetime] = field(default=_now)

    @classmethod
    def from_context(cls, ctx: AdapterContext) -> PostalRuntime:
        cfg = PostalConfig.from_mapping(ctx.config)
        settings = ctx.settings
        engine = adaptertables.engine_for(ctx.store, cfg.state_url, settings.data_dir, "postal.db")
        db.ensure_schema(engine)
        return cls(
            cfg=cfg,
            mapping=mapping.load(Path(settings.mappings_dir)),
            engine=engine,
            schemas_dir=Path(settings.schemas_dir),
            hub_id=settings.hub_id,
        )
