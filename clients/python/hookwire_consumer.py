"""A hookwire consumer: reads envelopes from hookwire's PUSH sockets,
drops repeats by id within a bounded window, and acknowledges what it
has processed on routes with ``--ack-endpoint``. Needs pyzmq only.

    consumer = Consumer("tcp://127.0.0.1:5555", ack="tcp://127.0.0.1:5556")
    for batch in consumer.batches():
        store(batch)            # acked when the next batch is asked for

Several hookwire nodes may share a consumer: it binds and each node
connects to it; ``ack`` then maps each node's ``--node-id`` to its ack
endpoint (an id carries the node that issued it).
"""

import collections
import json

import zmq

__all__ = ["Consumer", "node_of"]


def node_of(event_id):
    """The ``--node-id`` of the hookwire node that issued ``event_id``."""
    return (int(event_id) >> 18) & 0xF


class Consumer:
    """Reads envelopes, one frame (``frames="json"``) or two
    (``"key+json"``); binds ``endpoint`` (or connects to it, or to each of
    a list, with ``bind=False``); acks to ``ack``: an endpoint, or a dict
    ``{node_id: endpoint}``; ``None`` for routes without acks."""

    def __init__(self, endpoint, ack=None, frames="json", bind=True,
                 window=100_000, context=None):
        if frames not in ("json", "key+json"):
            raise ValueError("frames must be 'json' or 'key+json'")
        self.context = context or zmq.Context.instance()
        self.frames = frames
        self.pull = self.context.socket(zmq.PULL)
        self.pull.linger = 0
        for ep in [endpoint] if isinstance(endpoint, str) else endpoint:
            (self.pull.bind if bind else self.pull.connect)(ep)
        if isinstance(ack, str):
            ack = {None: ack}
        self.acks = {}
        for node, ep in (ack or {}).items():
            push = self.context.socket(zmq.PUSH)
            push.linger = 5000
            push.connect(ep)
            self.acks[node] = push
        self.window = window
        self.seen = set()
        self.order = collections.deque()
        self.pending = []
        self.repeats = 0
        self.bad = 0

    def _seen(self, event_id):
        if event_id in self.seen:
            return True
        self.seen.add(event_id)
        self.order.append(event_id)
        if len(self.order) > self.window:
            self.seen.discard(self.order.popleft())
        return False

    def recv(self, timeout=None):
        """The next new envelope (a dict), or ``None`` after ``timeout``
        seconds. Its id is acked with the next :meth:`ack`, repeats too."""
        ms = None if timeout is None else int(timeout * 1000)
        while self.pull.poll(ms):
            frames = self.pull.recv_multipart()
            try:
                event = json.loads(frames[-1])
                event_id = event["id"]
            except (ValueError, KeyError, TypeError):
                self.bad += 1
                continue
            self.pending.append(event_id)
            if self._seen(event_id):
                self.repeats += 1
                continue
            return event
        return None

    def batches(self, size=500, timeout=0.05):
        """Yields lists of new envelopes (up to ``size``, or what came
        within ``timeout`` seconds of the first); the previous batch is
        acked when the next is asked for, so ack follows processing."""
        while True:
            batch = [self.recv()]
            while len(batch) < size:
                event = self.recv(timeout)
                if event is None:
                    break
                batch.append(event)
            yield batch
            self.ack()

    def ack(self):
        """Acknowledges every id received so far (one message per node)."""
        if not self.acks or not self.pending:
            self.pending.clear()
            return
        by_node = collections.defaultdict(list)
        for event_id in self.pending:
            node = node_of(event_id) if None not in self.acks else None
            by_node[node].append(event_id)
        for node, ids in by_node.items():
            push = self.acks.get(node)
            if push is not None:
                push.send_string(" ".join(ids))
        self.pending.clear()

    def close(self):
        self.ack()
        for push in self.acks.values():
            push.close()
        self.pull.close()
