"""Translation between queue protos and domain objects, nothing else."""

from __future__ import annotations

import datetime as dt

from google.protobuf import duration_pb2, timestamp_pb2
from ticketing.queue.v1 import queue_pb2

from queue_svc.domain import Entry, EntryState, Stats

STATE_TO_PROTO = {
    EntryState.PRE_QUEUE: queue_pb2.QUEUE_ENTRY_STATE_PRE_QUEUE,
    EntryState.WAITING: queue_pb2.QUEUE_ENTRY_STATE_WAITING,
    EntryState.ADMITTED: queue_pb2.QUEUE_ENTRY_STATE_ADMITTED,
    EntryState.EXPIRED: queue_pb2.QUEUE_ENTRY_STATE_EXPIRED,
    EntryState.LEFT: queue_pb2.QUEUE_ENTRY_STATE_LEFT,
}


def timestamp(value: dt.datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def duration(value: dt.timedelta) -> duration_pb2.Duration:
    out = duration_pb2.Duration()
    out.FromTimedelta(value)
    return out


def entry_to_proto(entry: Entry) -> queue_pb2.QueueEntry:
    out = queue_pb2.QueueEntry(
        event_id=entry.event_id,
        user_id=entry.user_id,
        state=STATE_TO_PROTO[entry.state],
        position=entry.position,
        queue_length=entry.queue_length,
        open_time=timestamp(entry.open_time),
    )
    if entry.estimated_wait is not None:
        out.estimated_wait.CopyFrom(duration(entry.estimated_wait))
    if entry.join_time is not None:
        out.join_time.CopyFrom(timestamp(entry.join_time))
    if entry.admission_expire_time is not None:
        out.admission.token = entry.admission_token
        out.admission.expire_time.CopyFrom(timestamp(entry.admission_expire_time))
    return out


def stats_to_proto(stats: Stats) -> queue_pb2.QueueStats:
    return queue_pb2.QueueStats(
        event_id=stats.event_id,
        paused=stats.pacing.paused,
        admission_rate_per_minute=stats.pacing.rate_per_minute,
        max_active_users=stats.pacing.max_active,
        waiting=stats.waiting,
        active=stats.active,
        admitted_last_minute=stats.admitted_last_minute,
        admitted_total=stats.admitted_total,
        open_time=timestamp(stats.open_time),
    )
