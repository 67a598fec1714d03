"""`python -m cdc_worker`: run the CDC worker until SIGTERM."""

from cdc_worker.server import create_server
from cdc_worker.settings import CdcSettings
from ticketing_common.server import run

if __name__ == "__main__":
    run("cdc_worker", CdcSettings, create_server)
