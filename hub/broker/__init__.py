"""The hub's RabbitMQ layer: topology (what exists), publisher (confirmed, pipelined), consumer
(idempotent receiver with retry tiers and parking). See docs/architecture.md, "Broker"."""

from hub.broker.consumer import Consumer, ConsumerStats
from hub.broker.destinations import Destination
from hub.broker.messages import Delivery, Outgoing
from hub.broker.names import Names
from hub.broker.processed import MemoryProcessedIds, ProcessedIds
from hub.broker.publisher import Publisher, PublishFailed
from hub.broker.topology import Topology

__all__ = [
    "Consumer",
    "ConsumerStats",
    "Delivery",
    "Destination",
    "MemoryProcessedIds",
    "Names",
    "Outgoing",
    "ProcessedIds",
    "PublishFailed",
    "Publisher",
    "Topology",
]
