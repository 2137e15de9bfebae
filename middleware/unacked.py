"""The messages a Redis consumer took and never acknowledged, put back in their queues.

A RedisBroker consumer moves each message it fetches, running or only prefetched, into the set
`<namespace>:__acks__.<broker_id>.<queue>` until it acknowledges it; the message's body stays in
`<namespace>:<queue>.msgs` (dramatiq 2.x, brokers/redis/dispatch.lua). Dramatiq itself moves a
dead consumer's set back only during "maintenance", by the consumer's own clock and by chance.
Here the database decides (the consumer's worker holds no lease: reaper.py), and the move
happens on the next pass of any worker's reaper.

Putting back a message of a consumer that is in fact alive is harmless: the job's start is
guarded, so only one delivery runs it; the consumer's own acknowledgement of its copy then finds
nothing to remove.
"""

from __future__ import annotations

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


def requeue(broker: RedisBroker, broker_ids: list[str]) -> list[str]:
    """Puts every message that these consumers hold, in any queue this broker knows, back in its
    queue; returns the job ids of the messages moved. One round trip. The consumers stay in
    Dramatiq's heartbeats: its own maintenance forgets a dead one once it holds nothing, in
    queues this broker does not know too."""
    if not broker_ids:
        return []
    script = broker.client.register_script(_REQUEUE)
    queues = sorted(broker.get_declared_queues() | broker.get_declared_delay_queues())
    pipeline = broker.client.pipeline(transaction=False)
    for broker_id in broker_ids:
        for queue in queues:
            queue_key = f"{broker.namespace}:{queue}"
            script(
                keys=[f"{broker.namespace}:__acks__.{broker_id}.{queue}", queue_key, f"{queue_key}.msgs"],
                client=pipeline,
            )
    return [Message.decode(body).message_id for bodies in pipeline.execute() for body in bodies]
