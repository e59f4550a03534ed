"""Stream router: one stream to several destinations by a list of jobs (the twin of
``hw/streams/router.py``)."""

__all__ = ["route"]


def route(jobs, payloads, destinations):
    """What each destination receives: ``jobs`` is a list of ``(dest, beats)``, taken in order,
    each passing the next ``beats`` of ``payloads`` to ``dest``; a job of zero beats passes
    nothing. Returns a list of ``destinations`` lists."""
    out = [[] for _ in range(destinations)]
    position = 0
    for dest, beats in jobs:
        if not 0 <= dest < destinations:
            raise ValueError(f"job destination {dest} outside 0..{destinations - 1}")
        if position + beats > len(payloads):
            raise ValueError(f"jobs ask for {position + beats} payloads, only "
                             f"{len(payloads)} given")
        out[dest].extend(payloads[position:position + beats])
        position += beats
    return out
