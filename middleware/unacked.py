"""The messages a Redis consumer took and never acknowledged, put back in their queues.

A RedisBroker consumer moves each message it fetches, running or only prefetched, into the set
`<namespace>:__acks__.<broker_id>.<queue>` until it acknowledges it; the message's body stays in
`<namespace>:<queue>.msgs` (dramatiq 2.x, brokers/redis/dispatch.lua). Dramatiq itself moves a
dead consumer's set back only during "maintenance", by the consumer's own clock and by chance.
Here the database decides (the consumer's worker has lost its lease), and the move happens on
the next pass of any worker's reaper.

Putting back a message of a consumer that is in fact alive is harmless: the job's start is
guarded, so only one delivery runs it; the consumer's own acknowledgement of its copy then finds
nothing to remove.
"""

from __future__ import annotations

import re

from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker

# KEYS: the consumer's set for one queue, the queue, the queue's bodies. Moves every message
# whose body is still there back to the end of its queue; returns the bodies moved.
_REQUEUE = """
local moved = {}
for _, id in ipairs(redis.call("smembers", KEYS[1])) do
    local body = redis.call("hget", KEYS[3], id)
    if body then
        redis.call("rpush", KEYS[2], id)
        table.insert(moved, body)
    end
end
redis.call("del", KEYS[1])
return moved
"""


def consumers(broker: RedisBroker) -> list[str]:
    """The broker ids that Redis has seen lately (Dramatiq's heartbeats: every consumer's, and
    every sender's)."""
    return [member.decode() for member in broker.client.zrange(f"{broker.namespace}:__heartbeats__", 0, -1)]


def requeue(broker: RedisBroker, broker_id: str) -> list[str]:
    """Puts every message that consumer `broker_id` holds back in its queue, and forgets the
    consumer; returns the job ids of the messages moved."""
    prefix = f"{broker.namespace}:__acks__.{broker_id}."
    script = broker.client.register_script(_REQUEUE)
    moved: list[str] = []
    for key in broker.client.scan_iter(match=re.sub(r"([\\*?\[\]])", r"\\\1", prefix) + "*"):
        queue = key.decode()[len(prefix) :]
        queue_key = f"{broker.namespace}:{queue}"
        for body in script(keys=[key, queue_key, f"{queue_key}.msgs"]):
            moved.append(Message.decode(body).message_id)
    # If the consumer is alive after all, its next fetch puts it back in the heartbeats.
    broker.client.zrem(f"{broker.namespace}:__heartbeats__", broker_id)
    return moved
