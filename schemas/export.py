"""Write the JSON Schema of every event, for producers and consumers in other languages."""

from __future__ import annotations

import json
from pathlib import Path

from schemas.events import ALL_EVENTS


def export_json_schemas(directory: Path) -> list[Path]:
    """Write ``<EventName>.schema.json`` for every event into ``directory``; return the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for model in ALL_EVENTS:
        schema = model.model_json_schema()
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        path = directory / f"{model.__name__}.schema.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
