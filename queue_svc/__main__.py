"""`python -m queue_svc`: run the queue service until SIGTERM."""

from queue_svc.server import create_server
from queue_svc.settings import QueueSettings
from ticketing_common.server import run

if __name__ == "__main__":
    run("queue_svc", QueueSettings, create_server)
