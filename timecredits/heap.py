"""Keep the cyclic garbage collector off the objects a long-running process makes at start-up."""
from __future__ import annotations

import gc


def freeze_startup_heap() -> None:
    """Collect once, then move every surviving object into the permanent generation.

    Why: a started API process holds ~140,000 objects (FastAPI, SQLAlchemy, pydantic models, the OpenAPI
    schema) that live as long as it does. Under load, short-lived request objects promoted to the oldest
    generation trigger a full collection every so often, and each one would walk all of them with the event
    loop stopped and nothing to collect, a pause every request in flight waits out. Frozen objects
    are not walked, so a full collection covers only what was made since. A worker is the same: each batch
    promotes thousands of objects, and every few batches a full collection would walk faust, aiokafka,
    SQLAlchemy and pydantic's start-up objects with them.
    """
    gc.collect()
    gc.freeze()
