"""Expert-aware patch reordering: per-expert queues of (token, score) and the active experts.

One scan over the tokens appends each token to the queues of its chosen experts; the experts
with a non-empty queue are processed longest queue first, then the shortest, then the second
longest, the second shortest, and so on (queues ranked by descending length, ties by ascending
expert index, then taken from both ends in turn), each fetching its weights once.

Why that order: an expert's weights take the same time to fetch whatever its queue, while its
compute grows with the queue, so a long expert's calls leave the weight fetch time to run ahead
and a short expert's calls leave the array waiting for weights. Taking the long and the short
ones in turn keeps both busy: each long call hides the fetches of the short experts after it
(the fetch runs several experts ahead), and the layer ends neither on a run of short,
bandwidth-bound experts nor on a long call alone.
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
        Active experts longest and shortest queue in turn (see above); tokens ascending within
        each queue.
    """
    chosen = np.asarray(chosen)
    if chosen.size and (chosen.min() < 0 or chosen.max() >= experts):
        raise ValueError(f"expert index outside 0..{experts - 1}")
    queues = []
    for e in range(experts):
        tokens = np.nonzero((chosen == e).any(axis=1))[0]
        if tokens.size:
            queues.append((e, tokens, probs[tokens, e]))
    ranked = sorted(queues, key=lambda q: (-len(q[1]), q[0]))
    return [ranked[(r // 2) if r % 2 == 0 else len(ranked) - 1 - r // 2]
            for r in range(len(ranked))]
