"""Expert-aware patch reordering: per-expert queues of (token, score) and the active experts.

One scan over the tokens appends each token to the queues of its chosen experts; the experts
with a non-empty queue are processed in descending order of their queue's length (ties by
ascending expert index), each fetching its weights once.

Why that order: an expert's weights take the same time to fetch whatever its queue, while its
compute grows with the queue. Largest experts first, their long calls hide the fetch of the
experts after them (the fetch runs several experts ahead), and the short, bandwidth-bound experts
come last, where their fetches were already under way: the layer's tail is short.
"""

import numpy as np

__all__ = ["expert_queues"]


def expert_queues(chosen, probs, experts):
    """Queues from the gate's choices.

    Parameters
    ----------
    chosen : int array [tokens][k]
    probs : int array [tokens][experts]
    experts : int

    Returns
    -------
    list of (expert, tokens, scores)
        Active experts by descending queue length, ties by ascending expert index; tokens
        ascending within each queue.
    """
    chosen = np.asarray(chosen)
    if chosen.size and (chosen.min() < 0 or chosen.max() >= experts):
        raise ValueError(f"expert index outside 0..{experts - 1}")
    queues = []
    for e in range(experts):
        tokens = np.nonzero((chosen == e).any(axis=1))[0]
        if tokens.size:
            queues.append((e, tokens, probs[tokens, e]))
    return sorted(queues, key=lambda q: (-len(q[1]), q[0]))
